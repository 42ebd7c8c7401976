"""A fake SLURM on one machine, for running the Snakemake SLURM executor without a cluster.

The executables beside this file (sbatch, squeue, sacct, scancel, sinfo, scontrol, srun, sacctmgr, sshare)
all land in `main()`. Put this folder first on PATH and jobs really run:

- `sbatch` records the job in $FAKE_SLURM_DIR/jobs/<id>.json as PENDING, prints its id (`--parsable`: the id
  alone, else `Submitted batch job <id>`) and starts the batch script in the background, in a session of
  its own (so `scancel` can kill the whole job), with the job's working directory (-D), output file (-o,
  with %j/%x/%u/%N/%% filled in), the submitting environment (--export=ALL) and the variables SLURM gives
  a job: SLURM_JOB_ID, SLURM_CPUS_PER_TASK, SLURM_GPUS, ... When GPUs are requested (--gpus=[type:]N,
  --gres=gpu[:type]:N) CUDA_VISIBLE_DEVICES is 0..N-1, as SLURM sets it with ConstrainDevices=yes: every
  job numbers its own GPUs from 0. Without GPUs the submitter's value is left as it is.
  The record turns RUNNING, then COMPLETED (exit 0) or FAILED, with the exit code.
- `sacct` and `squeue` answer from those records in the format asked (`--format`, `--parsable2`,
  `--noheader`, `--name`, `-j`), `scancel` kills a job's session and marks it CANCELLED.
- `srun` runs its command in place (inside a job it is a job step on the job's own resources).
- `sinfo`, `scontrol show config|job`, `sacctmgr` and `sshare` answer what the executor asks of them.

Unknown sbatch/srun options are an error (as on a real cluster), so a change in what the executor submits
shows up in the tests. Array jobs (--array) are not supported.

Every call is appended to $FAKE_SLURM_LOG (default $FAKE_SLURM_DIR/calls.jsonl) as one JSON object per
line: {"cmd", "argv", "cwd", "time", "job" (sbatch), "env" (SLURM_JOB_ID, CUDA_VISIBLE_DEVICES)}.

Environment: FAKE_SLURM_DIR (required: state folder), FAKE_SLURM_LOG, FAKE_SLURM_ACCOUNTS (comma-separated
accounts that sacctmgr/sshare report; empty: the executor skips its account check), FAKE_SLURM_PARTITIONS
(what sinfo lists, the default marked `*`; default `debug*,gpu`), FAKE_SLURM_PENDING_SECONDS (how long a
job stays PENDING; default 0). Standard library only; any Python 3.8+ runs it.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

NODE = "fakenode"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}
SHORT_STATES = {"PENDING": "PD", "RUNNING": "R", "COMPLETED": "CD", "FAILED": "F", "CANCELLED": "CA"}

# Options that take a value, by long name; short aliases map to the long name.
SBATCH_VALUE = {"account", "partition", "time", "job-name", "output", "error", "chdir", "cpus-per-task",
                "ntasks", "nodes", "mem", "mem-per-cpu", "mem-per-gpu", "comment", "export", "gpus", "gres",
                "cpus-per-gpu", "ntasks-per-gpu", "ntasks-per-node", "gpus-per-node", "gpus-per-task", "qos",
                "reservation", "clusters", "constraint", "exclude", "nodelist", "array", "wrap", "dependency",
                "mail-type", "mail-user", "time-min", "signal", "licenses", "begin", "tmp", "distribution",
                "cpu-freq", "gpu-bind", "threads-per-core", "open-mode", "input"}
SBATCH_FLAGS = {"parsable", "requeue", "no-requeue", "exclusive", "hold", "quiet", "verbose", "wait",
                "test-only", "overcommit", "oversubscribe", "no-kill", "contiguous"}
SBATCH_SHORT = {"A": "account", "p": "partition", "t": "time", "J": "job-name", "o": "output", "e": "error",
                "D": "chdir", "c": "cpus-per-task", "n": "ntasks", "N": "nodes", "G": "gpus", "q": "qos",
                "M": "clusters", "C": "constraint", "x": "exclude", "w": "nodelist", "a": "array",
                "d": "dependency", "L": "licenses", "b": "begin", "m": "distribution", "i": "input",
                "H": "hold", "Q": "quiet", "v": "verbose", "W": "wait", "O": "overcommit", "s": "oversubscribe",
                "k": "no-kill"}
SRUN_VALUE = SBATCH_VALUE | {"cpu-bind", "jobid", "mpi", "het-group"}
SRUN_FLAGS = SBATCH_FLAGS | {"overlap", "unbuffered", "label", "pty", "exact", "kill-on-bad-exit"}
SRUN_SHORT = {**SBATCH_SHORT, "l": "label", "u": "unbuffered", "K": "kill-on-bad-exit"}


class SlurmError(Exception):
    """An error the real command would print as `<cmd>: error: ...` with a non-zero exit status."""


# --- state -------------------------------------------------------------------------------------------------

def state_dir() -> Path:
    folder = os.environ.get("FAKE_SLURM_DIR")
    if not folder:
        raise SlurmError("FAKE_SLURM_DIR is not set (the fake SLURM keeps its job records there)")
    path = Path(folder)
    (path / "jobs").mkdir(parents=True, exist_ok=True)
    return path


def log_call(cmd: str, argv: list[str], **extra) -> None:
    path = os.environ.get("FAKE_SLURM_LOG") or str(state_dir() / "calls.jsonl")
    record = {"cmd": cmd, "argv": argv, "cwd": os.getcwd(), "time": time.time(),
              "env": {k: os.environ[k] for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES") if k in os.environ},
              **extra}
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(record) + "\n")


def next_job_id() -> int:
    with open(state_dir() / "next_id", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        job_id = int(f.read().strip() or 1000)
        f.seek(0)
        f.truncate()
        f.write(str(job_id + 1))
    return job_id


def job_path(job_id) -> Path:
    return state_dir() / "jobs" / f"{job_id}.json"


def read_job(job_id) -> dict | None:
    try:
        return json.loads(job_path(job_id).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_job(job: dict) -> None:
    path = job_path(job["id"])
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(job))
    os.replace(tmp, path)


def update_job(job_id, **changes) -> dict:
    with open(state_dir() / "jobs.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        job = read_job(job_id)
        if job["state"] == "CANCELLED" and changes.get("state") not in (None, "CANCELLED"):
            return job  # scancel has the last word
        job.update(changes)
        write_job(job)
    return job


def all_jobs() -> list[dict]:
    jobs = (read_job(p.stem) for p in sorted((state_dir() / "jobs").glob("*.json")))
    return [j for j in jobs if j is not None]


# --- option parsing ----------------------------------------------------------------------------------------

def parse_options(args: list[str], value_opts: set, flag_opts: set, short: dict,
                  strict: bool = True) -> tuple[dict, list[str]]:
    """{long option: value (True for flags)} and the arguments after the options (script or command)."""
    opts: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return opts, args[i + 1:]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name in value_opts:
                if not eq:
                    i += 1
                    if i == len(args):
                        raise SlurmError(f"option '--{name}' requires an argument")
                    value = args[i]
                opts[name] = value
            elif name in flag_opts and not eq:
                opts[name] = True
            elif strict:
                raise SlurmError(f"unrecognized option '{arg}'")
        elif arg.startswith("-") and len(arg) > 1 and not arg[1].isdigit():
            letters = arg[1:]
            for k, letter in enumerate(letters):
                name = short.get(letter)
                if name is None:
                    if strict:
                        raise SlurmError(f"invalid option -- '{letter}'")
                    continue
                if name in value_opts:
                    value = letters[k + 1:]
                    if not value:
                        i += 1
                        if i == len(args):
                            raise SlurmError(f"option requires an argument -- '{letter}'")
                        value = args[i]
                    opts[name] = value
                    break
                opts[name] = True
        else:
            return opts, args[i:]
        i += 1
    return opts, []


def gpu_count(opts: dict) -> int:
    """GPUs asked for by --gpus=[type:]N or --gres=gpu[:type][:N] (0 if none)."""
    if opts.get("gpus"):
        return int(str(opts["gpus"]).rsplit(":", 1)[-1])
    for gres in str(opts.get("gres") or "").split(","):
        parts = gres.split(":")
        if parts[0] == "gpu":
            return int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return 0


def fill_pattern(pattern: str, job: dict) -> str:
    table = {"j": str(job["id"]), "J": str(job["id"]), "x": job["name"], "u": getpass.getuser(), "N": NODE,
             "A": str(job["id"]), "a": "4294967294", "%": "%"}
    return re.sub(r"%(\d*)([jJxuNAa%])", lambda m: table[m[2]], pattern)


# --- sbatch and the job runner ---------------------------------------------------------------------------

def sbatch(args: list[str]) -> int:
    opts, rest = parse_options(args, SBATCH_VALUE, SBATCH_FLAGS, SBATCH_SHORT)
    if "array" in opts:
        raise SlurmError("the fake sbatch does not support --array")
    if "wrap" in opts:
        if rest:
            raise SlurmError("script arguments not permitted with --wrap option")
        script = f"#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{opts['wrap']}\n"
    else:
        source = rest[0] if rest else "/dev/stdin"
        script = sys.stdin.read() if source in ("-", "/dev/stdin") else Path(source).read_text()
    if not script.startswith("#!"):
        raise SlurmError("This does not look like a batch script.  The first line must start with #! "
                         "followed by the path to an interpreter.")
    export = str(opts.get("export", "ALL"))
    if export.split(",")[0] not in ("ALL", "NIL"):
        raise SlurmError(f"the fake sbatch only supports --export=ALL[,VAR=value...], got {export!r}")
    workdir = str(Path(opts.get("chdir") or os.getcwd()).resolve())
    job_id = next_job_id()
    job = {"id": job_id, "name": opts.get("job-name") or Path(rest[0] if rest else "wrap").name,
           "comment": opts.get("comment", ""), "account": opts.get("account", ""),
           "partition": opts.get("partition", "debug"), "state": "PENDING", "exit_code": "0:0",
           "workdir": workdir, "cpus": int(opts.get("cpus-per-task") or opts.get("cpus-per-gpu") or 1),
           "gpus": gpu_count(opts), "mem": opts.get("mem", ""), "time_limit": opts.get("time", ""),
           "submit": time.time(), "start": None, "end": None, "pid": None}
    output = fill_pattern(str(opts.get("output") or "slurm-%j.out"), job)
    error = fill_pattern(str(opts["error"]), job) if opts.get("error") else None
    job["output"] = str(Path(workdir, output))
    job["error"] = str(Path(workdir, error)) if error else None
    script_path = state_dir() / "jobs" / f"{job_id}.sh"
    script_path.write_text(script)
    script_path.chmod(0o755)

    env = dict(os.environ)
    for assignment in export.split(",")[1:]:
        name, _, value = assignment.partition("=")
        env[name] = value
    env.update({"SLURM_JOB_ID": str(job_id), "SLURM_JOBID": str(job_id), "SLURM_JOB_NAME": job["name"],
                "SLURM_SUBMIT_DIR": os.getcwd(), "SLURM_SUBMIT_HOST": NODE, "SLURM_CLUSTER_NAME": "fake",
                "SLURM_JOB_PARTITION": job["partition"], "SLURM_JOB_ACCOUNT": job["account"],
                "SLURM_JOB_NUM_NODES": "1", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": NODE,
                "SLURM_NODELIST": NODE, "SLURMD_NODENAME": NODE, "SLURM_NTASKS": str(opts.get("ntasks") or 1),
                "SLURM_CPUS_PER_TASK": str(job["cpus"]), "SLURM_CPUS_ON_NODE": str(job["cpus"])})
    if job["gpus"]:
        devices = ",".join(str(i) for i in range(job["gpus"]))
        env.update({"SLURM_GPUS": str(opts.get("gpus") or job["gpus"]), "SLURM_JOB_GPUS": devices,
                    "CUDA_VISIBLE_DEVICES": devices, "GPU_DEVICE_ORDINAL": devices})
    job["env"] = env
    write_job(job)
    log_call("sbatch", args, job=job_id)
    subprocess.Popen([sys.executable, os.path.abspath(__file__), "_run", str(job_id)], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     close_fds=True, env=dict(os.environ))
    cluster = f";{opts['clusters']}" if opts.get("clusters") else ""
    print(f"{job_id}{cluster}" if opts.get("parsable") else f"Submitted batch job {job_id}")
    return 0


def run_job(job_id: str) -> int:
    """The background side of sbatch: run the batch script and record how it ended."""
    job = read_job(job_id)
    time.sleep(float(os.environ.get("FAKE_SLURM_PENDING_SECONDS") or 0))
    job = update_job(job_id, state="RUNNING", start=time.time(), pid=os.getpid())
    if job["state"] == "CANCELLED":
        return 0
    Path(job["output"]).parent.mkdir(parents=True, exist_ok=True)
    with open(job["output"], "a") as out:
        err = open(job["error"], "a") if job["error"] else out
        try:
            done = subprocess.run([str(state_dir() / "jobs" / f"{job_id}.sh")], cwd=job["workdir"],
                                  env=job["env"], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        finally:
            if err is not out:
                err.close()
    rc = done.returncode
    exit_code = f"{rc}:0" if rc >= 0 else f"0:{-rc}"
    update_job(job_id, state="COMPLETED" if rc == 0 else "FAILED", exit_code=exit_code, end=time.time())
    return 0


# --- queries -----------------------------------------------------------------------------------------------

def elapsed(job: dict) -> str:
    if not job.get("start"):
        return "00:00:00"
    seconds = int((job.get("end") or time.time()) - job["start"])
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def field_value(job: dict, field: str) -> str:
    key = field.lower()
    values = {
        "jobid": job["id"], "jobidraw": job["id"], "jobname": job["name"], "state": job["state"],
        "exitcode": job["exit_code"], "account": job["account"], "partition": job["partition"],
        "nodelist": NODE if job.get("start") else "None assigned", "reason": "None", "elapsed": elapsed(job),
        "alloccpus": job["cpus"], "ncpus": job["cpus"], "reqmem": job["mem"], "timelimit": job["time_limit"],
        "comment": job["comment"], "user": getpass.getuser(), "workdir": job["workdir"],
        "alloctres": f"cpu={job['cpus']}" + (f",gres/gpu={job['gpus']}" if job["gpus"] else ""),
        "submit": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(job["submit"])),
    }
    return str(values.get(key, ""))


def matching_jobs(opts: dict) -> list[dict]:
    jobs = all_jobs()
    if opts.get("name"):
        names = set(str(opts["name"]).split(","))
        jobs = [j for j in jobs if j["name"] in names]
    if opts.get("jobs"):
        wanted = str(opts["jobs"]).split(",")
        if all("." in w for w in wanted):
            return []  # job steps: the fake records none
        ids = {w.split("_")[0] for w in wanted if "." not in w}
        jobs = [j for j in jobs if str(j["id"]) in ids]
    return jobs


SACCT_VALUE = {"jobs", "name", "format", "user", "starttime", "endtime", "clusters", "state", "partition",
               "account"}
SACCT_FLAGS = {"allocations", "parsable2", "parsable", "noheader", "allusers", "brief", "long", "allclusters",
               "duplicates"}
SACCT_SHORT = {"j": "jobs", "o": "format", "u": "user", "S": "starttime", "E": "endtime", "M": "clusters",
               "s": "state", "r": "partition", "A": "account", "X": "allocations", "P": "parsable2",
               "p": "parsable", "n": "noheader", "a": "allusers", "b": "brief", "l": "long",
               "L": "allclusters", "D": "duplicates"}


def sacct(args: list[str]) -> int:
    # The executor's account guess runs `sacct -nu USER -o Account%256 | tail -1` without a shell, so the
    # pipe arrives as arguments: parse leniently, as the positional rest is ignored.
    opts, _ = parse_options(args, SACCT_VALUE, SACCT_FLAGS, SACCT_SHORT, strict=False)
    fields = [f.split("%")[0] for f in str(opts.get("format") or "JobID,JobName,Partition,Account,AllocCPUS,"
                                                   "State,ExitCode").split(",")]
    sep = "|" if (opts.get("parsable2") or opts.get("parsable")) else " "
    lines = [] if opts.get("noheader") else [sep.join(fields)]
    for job in matching_jobs(opts):
        lines.append(sep.join(field_value(job, f) for f in fields) + ("|" if opts.get("parsable") else ""))
    if lines:
        print("\n".join(lines))
    return 0


SQUEUE_VALUE = {"format", "states", "name", "jobs", "user", "clusters", "partition", "Format"}
SQUEUE_FLAGS = {"noheader", "me", "all", "array", "long"}
SQUEUE_SHORT = {"o": "format", "t": "states", "n": "name", "j": "jobs", "u": "user", "M": "clusters",
                "p": "partition", "O": "Format", "h": "noheader", "a": "all", "r": "array", "l": "long"}


def squeue(args: list[str]) -> int:
    opts, _ = parse_options(args, SQUEUE_VALUE, SQUEUE_FLAGS, SQUEUE_SHORT)
    fmt = str(opts.get("format") or "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R")
    states = str(opts.get("states") or "").upper().split(",")
    jobs = matching_jobs(opts)
    if "ALL" not in states:
        wanted = {s for s in states if s} or {"PENDING", "RUNNING"}
        wanted |= {long for long, short in SHORT_STATES.items() if short in wanted}
        jobs = [j for j in jobs if j["state"] in wanted]
    codes = {"i": "JobIdRaw", "A": "JobIdRaw", "j": "JobName", "T": "State", "P": "Partition", "u": "User",
             "M": "Elapsed", "N": "NodeList", "a": "Account", "C": "AllocCPUS", "k": "Comment", "R": "NodeList"}
    headers = {"i": "JOBID", "A": "JOBID", "j": "NAME", "T": "STATE", "t": "ST", "P": "PARTITION",
               "u": "USER", "M": "TIME", "N": "NODELIST", "D": "NODES", "R": "NODELIST(REASON)", "a": "ACCOUNT",
               "C": "CPUS", "k": "COMMENT"}

    def render(job: dict | None) -> str:
        def one(m: re.Match) -> str:
            code = m[2]
            if job is None:
                return headers.get(code, code)
            if code == "t":
                return SHORT_STATES.get(job["state"], job["state"][:2])
            if code == "D":
                return "1"
            return field_value(job, codes.get(code, ""))
        return re.sub(r"%\.?-?(\d*)([a-zA-Z])", one, fmt)

    lines = ([] if opts.get("noheader") else [render(None)]) + [render(j) for j in jobs]
    if lines:
        print("\n".join(lines))
    return 0


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (Linux /proc). A job's processes may leave its session (Snakemake
    starts shell commands in a session of their own), so killing the session is not enough; SLURM kills the
    job's cgroup, the fake kills the process tree."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def kill_job(pid: int) -> None:
    """SIGTERM to the job's processes, then SIGKILL to what is left half a second later (SLURM waits KillWait)."""
    tree = descendants(pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for member in tree:
            try:
                os.kill(member, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGTERM:
            time.sleep(0.5)
            tree = list(dict.fromkeys(tree + [m for t in tree for m in descendants(t)]))


def scancel(args: list[str]) -> int:
    ids = [a for a in args if not a.startswith("-")]
    unknown = []
    for job_id in ids:
        job = read_job(job_id.split("_")[0])
        if job is None:
            unknown.append(job_id)
            continue
        if job["state"] in TERMINAL:
            continue
        update_job(job["id"], state="CANCELLED", exit_code="0:15", end=time.time())
        if job.get("pid"):
            kill_job(job["pid"])
    if unknown:
        raise SlurmError(f"Kill job error on job id {','.join(unknown)}: Invalid job id specified")
    return 0


def sinfo(args: list[str]) -> int:
    opts, _ = parse_options(args, {"format", "partition", "Format"},
                            {"noheader", "summarize", "all", "long"},
                            {"o": "format", "p": "partition", "O": "Format", "h": "noheader", "s": "summarize",
                             "a": "all", "l": "long"}, strict=False)
    partitions = [p for p in (os.environ.get("FAKE_SLURM_PARTITIONS") or "debug*,gpu").split(",") if p]
    fmt = str(opts.get("format") or "%P %a %l %D %t %N")
    headers = {"P": "PARTITION", "R": "PARTITION", "a": "AVAIL", "l": "TIMELIMIT", "D": "NODES", "t": "STATE",
               "N": "NODELIST", "G": "GRES", "c": "CPUS"}

    def render(partition: str | None) -> str:
        def one(m: re.Match) -> str:
            code = m[2]
            if partition is None:
                return headers.get(code, code)
            return {"P": partition, "R": partition.rstrip("*"), "a": "up", "l": "infinite", "D": "1",
                    "t": "idle", "N": NODE, "G": "gpu:4", "c": str(os.cpu_count())}.get(code, "")
        return re.sub(r"%\.?-?(\d*)([a-zA-Z])", one, fmt)

    lines = ([] if opts.get("noheader") else [render(None)]) + [render(p) for p in partitions]
    print("\n".join(lines))
    return 0


def scontrol(args: list[str]) -> int:
    if args[:2] == ["show", "config"]:
        print("Configuration data as of fake\nClusterName             = fake\nMaxArraySize            = 1001\n"
              "MinJobAge               = 300 sec\nSLURM_VERSION           = 23.11.0-fake")
        return 0
    if args[:2] == ["show", "job"] and len(args) > 2:
        job = read_job(args[2])
        if job is None:
            raise SlurmError("Invalid job id specified")
        print(f"JobId={job['id']} JobName={job['name']} JobState={job['state']} ExitCode={job['exit_code']} "
              f"Partition={job['partition']} Account={job['account']} NumCPUs={job['cpus']} "
              f"TRES=cpu={job['cpus']},gres/gpu={job['gpus']} WorkDir={job['workdir']} StdOut={job['output']}")
        return 0
    raise SlurmError(f"the fake scontrol answers only 'show config' and 'show job ID', not {' '.join(args)!r}")


def accounts(args: list[str]) -> int:
    for account in (os.environ.get("FAKE_SLURM_ACCOUNTS") or "").split(","):
        if account.strip():
            print(account.strip())
    return 0


def srun(args: list[str]) -> int:
    opts, command = parse_options(args, SRUN_VALUE, SRUN_FLAGS, SRUN_SHORT)
    if not command:
        raise SlurmError("No command given to execute.")
    env = dict(os.environ)
    if not env.get("SLURM_JOB_ID"):  # outside an allocation srun makes one; here: just an id
        env["SLURM_JOB_ID"] = env["SLURM_JOBID"] = str(next_job_id())
    env["SLURM_STEP_ID"] = "0"
    if opts.get("cpus-per-task"):
        env["SLURM_CPUS_PER_TASK"] = str(opts["cpus-per-task"])
    gpus = gpu_count(opts)
    if gpus and not env.get("CUDA_VISIBLE_DEVICES"):
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(gpus))
    if opts.get("chdir"):
        os.chdir(opts["chdir"])
    sys.stdout.flush()
    os.execvpe(command[0], command, env)
    return 127  # not reached


COMMANDS = {"sbatch": sbatch, "sacct": sacct, "squeue": squeue, "scancel": scancel, "sinfo": sinfo,
            "scontrol": scontrol, "srun": srun, "sacctmgr": accounts, "sshare": accounts}


def main(cmd: str, args: list[str]) -> int:
    try:
        if cmd == "_run":
            return run_job(args[0])
        if cmd != "sbatch":  # sbatch logs itself, with the job id
            log_call(cmd, args)
        return COMMANDS[cmd](args)
    except SlurmError as e:
        print(f"{cmd}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
