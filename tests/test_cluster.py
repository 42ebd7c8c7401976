"""The cluster profiles: a dry run with each, and a real run of the DAG through the SLURM executor.

No cluster is needed: tests/fake_slurm/ holds fake SLURM commands that run each job on this machine and
answer sacct/squeue about it (see fakeslurm.py there), and the Kubernetes dry run asks a local stand-in for
S3 that holds nothing, so nothing leaves the machine. The SLURM run takes one to two minutes on 2 cores: each
job starts Snakemake twice (the batch step, then `srun` per rule), and the executor polls sacct at growing
intervals (1 s after a submission, then 10 s more each time nothing finished). It is mostly asleep, so it runs
in the background from the end of collection on (see SlurmRun and conftest.py).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO

from ensemble.submission import validate_submission

PROFILES = REPO / "workflow" / "profiles"
FAKE_SLURM = Path(__file__).resolve().parent / "fake_slurm"
RUN = "cluster"
CONFIG = {
    "run": RUN,
    "data": {"dir": "data/demo", "answers": "data/demo/test_labels.csv"},
    "demo": {"classes": 3, "train": 36, "test": 9, "size": 32},
    "folds": {"k": 2},
    "models": {"r18": {"backbone": "resnet18", "hidden": [8], "image_size": 32, "head_epochs": 0, "epochs": 1,
                       "batch_size": 12}},
    "train": {"device": "auto"},  # auto declares one GPU per training job, which a CPU-only machine still runs
}


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """Snakemake on the repository's Snakefile in `workdir` (cores and executor come from the profile)."""
    return ["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]


def outside_a_job(env: dict) -> dict:
    """`env` without SLURM's job variables: Snakemake started here is not inside a job."""
    return {k: v for k, v in env.items() if not k.startswith("SLURM_")}


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(snakemake_command(workdir, *args), cwd=workdir, env=outside_a_job(env or os.environ),
                          capture_output=True, text=True, timeout=timeout)


def make_workdir(folder: Path) -> Path:
    """`folder`, made, with CONFIG as its config.yaml."""
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    return folder


@pytest.fixture
def workdir(tmp_path) -> Path:
    return make_workdir(tmp_path / "work")


class EmptyS3(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint without buckets: every request is 404, which is all a dry run from scratch needs."""

    def _not_found(self):
        body = b"" if self.command == "HEAD" else b"<Error><Code>NoSuchBucket</Code></Error>"
        self.send_response(404)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET = do_PUT = do_POST = do_DELETE = _not_found

    def log_message(self, *args):
        pass


@pytest.fixture
def empty_s3() -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EmptyS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def plan(output: str) -> dict[str, int]:
    """{rule: count} of a dry run's job table."""
    table = output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def resources_of(output: str, rule: str) -> str:
    """The `resources:` line of the first job of `rule` in a dry run's output."""
    return re.search(rf"^ *rule {rule}:\n(?: +.*\n)*? +resources: (.*)$", output, re.M)[1]


def test_default_profile_plans_a_local_run_without_gpu_limits(workdir):
    done = snakemake(workdir, "--workflow-profile", str(PROFILES / "default"), "--dry-run")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "workflow specific profile" in out and "Shell command:" in out  # printshellcmds from the profile
    assert plan(out)["train"] == 2 and plan(out)["predict"] == 2
    assert "gpu=1" in resources_of(out, "train")  # declared, but nothing caps it: CPU runs go ahead


def test_slurm_profile_plans_one_gpu_job_per_fold(workdir):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    done = snakemake(workdir, "--profile", str(PROFILES / "slurm"), "--dry-run")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert plan(out)["train"] == 2
    train = resources_of(out, "train")
    assert "gpu=1" in train and "slurm_partition=YOUR-GPU-PARTITION" in train and "runtime=240" in train
    assert "slurm_account=YOUR-ACCOUNT" in resources_of(out, "folds")
    assert len(re.findall(r"Group job fold\b", out)) == 2  # train + predict of a fold: one job, one GPU


def test_kubernetes_profile_plans_every_file_in_s3_and_gpu_pods(workdir, empty_s3):
    pytest.importorskip("snakemake_executor_plugin_kubernetes")
    pytest.importorskip("snakemake_storage_plugin_s3")
    env = {**os.environ, "SNAKEMAKE_STORAGE_S3_ACCESS_KEY": "fake", "SNAKEMAKE_STORAGE_S3_SECRET_KEY": "fake",
           "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    done = snakemake(workdir, "--profile", str(PROFILES / "kubernetes"), "--dry-run",
                     "--storage-s3-endpoint-url", empty_s3, env=env)
    out = done.stdout + done.stderr
    # common.smk's unflagged() works around snakemake/snakemake#3027 (expand() refusing storage-flagged paths)
    assert done.returncode == 0, out[-3000:]
    assert plan(out)["train"] == 2
    assert "output: s3://YOUR-BUCKET/ensemble/results/cluster/folds/folds.csv (send to storage)" in out
    # pods see only declared inputs: the rules that read images declare the image folders
    cache = re.search(r"^ *rule cache:\n(?: +.*\n)*? +input: (.*)$", out, re.M)[1]
    assert "s3://YOUR-BUCKET/ensemble/data/demo/train (retrieve from storage)" in cache
    train = resources_of(out, "train")
    assert "gpu=1" in train and "gpu_manufacturer=nvidia" in train


def sbatch_calls(log: Path) -> list[dict]:
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [c for c in calls if c["cmd"] == "sbatch"]


class SlurmRun:
    """The DAG through the SLURM profile and the fake SLURM commands, run in the background from collection on.

    It runs one to two minutes, with the two cores about half busy (its jobs: about 100 core-seconds); the rest
    is the executor asleep between status polls, which is why conftest.py starts it early and the test only
    waits for it. It reports through files in its folder (the output, the exit status, the process group), so a
    pytest-xdist worker other than the one that started it can wait on it and stop it."""

    def __init__(self, root: Path):
        self.root, self.workdir, self.state = root, root / "work", root / "slurm"
        self.log, self.status, self.group = root / "snakemake.log", root / "returncode", root / "pgid"
        self.env = outside_a_job({
            **os.environ, "PATH": f"{FAKE_SLURM}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_DIR": str(self.state),
            "FAKE_SLURM_ACCOUNTS": "your-account",  # the profile's placeholder passes the account check
            "ENSEMBLE_GPU_LOCK_DIR": str(root / "gpu-locks")})  # as on a node: one folder for its jobs

    def start(self):
        """The demo data (made here rather than by a job: a shorter first queue round), then the DAG, in a
        process group of their own; the exit status lands in a file when they end."""
        make_workdir(self.workdir)
        demo = CONFIG["demo"]
        data = [sys.executable, "-m", "ensemble", "demo-data", "--out", str(self.workdir / "data/demo"), "--classes",
                str(demo["classes"]), "--train", str(demo["train"]), "--test", str(demo["test"]), "--size",
                str(demo["size"]), "--seed", "0"]
        dag = snakemake_command(self.workdir, f"results/{RUN}/submission/submission.csv", "--profile",
                                str(PROFILES / "slurm"), "--slurm-init-seconds-before-status-checks", "1",
                                "--seconds-between-status-checks", "1", "--set-threads", "train=1", "predict=1",
                                "lr_find=1", "check_inputs=1")
        part, status = shlex.quote(f"{self.status}.part"), shlex.quote(str(self.status))
        script = f"{shlex.join(data)} && {shlex.join(dag)}; echo $? > {part} && mv {part} {status}"
        with self.log.open("w") as log:  # the starting worker keeps the process, so that it is reaped
            self.process = subprocess.Popen(["sh", "-c", script], cwd=self.workdir, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.group.write_text(str(self.process.pid))

    def wait(self, timeout: int) -> tuple[int, str]:
        """(exit status, output) of the demo data and Snakemake."""
        deadline = time.monotonic() + timeout
        while not self.status.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the SLURM run did not end in {timeout} s:\n{self.log.read_text()[-3000:]}")
            time.sleep(1)
        return int(self.status.read_text()), self.log.read_text()

    def stop(self):
        """Kill Snakemake if it still runs, cancel its fake jobs, and remove the folder (again: a no-op)."""
        if self.group.exists() and not self.status.exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(self.group.read_text()), signal.SIGKILL)
        jobs = self.state / "jobs"
        running = [p.stem for p in jobs.glob("*.json") if json.loads(p.read_text())["state"] in ("PENDING", "RUNNING")]
        if running:
            subprocess.run(["scancel", *running], env=self.env, timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.mark.background.with_args(SlurmRun)
def test_slurm_executor_runs_the_dag_with_one_gpu_per_fold_job(background):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    pytest.importorskip("snakemake_executor_plugin_slurm_jobstep")
    run, state, env = background, background.state, background.env
    returncode, output = run.wait(timeout=540)
    assert returncode == 0, output[-4000:]

    results = run.workdir / "results" / RUN
    sample = pd.read_csv(run.workdir / "data/demo/sample_submission.csv", dtype={"id": str})
    validate_submission(pd.read_csv(results / "submission/submission.csv", dtype={"id": str}), sample)

    calls = sbatch_calls(state / "calls.jsonl")
    trained = {}
    for call in calls:
        args = call["argv"]
        assert "--parsable" in args and "-A" in args and args[args.index("-A") + 1] == "YOUR-ACCOUNT"
        folds = re.findall(r"'train:member=r18,fold=(\d+)'", next(a for a in args if a.startswith("--wrap=")))
        if folds:
            assert len(folds) == 1, "one fold per job"
            assert "--gpus=1" in args and args[args.index("-p") + 1] == "YOUR-GPU-PARTITION", args
            trained[int(folds[0])] = call["job"]
        else:
            assert not any(a.startswith(("--gpus", "--gres")) for a in args), args  # CPU steps hold no GPU
    assert sorted(trained) == [0, 1]

    states = subprocess.run(["sacct", "-X", "--parsable2", "--noheader", "--format=JobIdRaw,State"], env=env,
                            capture_output=True, text=True, check=True).stdout.split()
    assert states and all(s.endswith("|COMPLETED") for s in states), states
    steps = [c for c in map(json.loads, (state / "calls.jsonl").read_text().splitlines()) if c["cmd"] == "srun"]
    for fold, job in trained.items():
        in_job = [c["env"] for c in steps if c["env"].get("SLURM_JOB_ID") == str(job)]
        assert len(in_job) == 2 and all(e["CUDA_VISIBLE_DEVICES"] == "0" for e in in_job)  # train, predict
        metrics = json.loads((results / f"train/r18/fold{fold}/metrics.json").read_text())
        assert metrics["gpu_slot"] == "0", metrics  # the GPU SLURM gave the job (CUDA_VISIBLE_DEVICES=0)
        assert metrics["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # device: auto
