"""The demo end to end: seconds and max RSS per rule (Snakemake's benchmark: files), and the share of wall time
that is scheduling, process start-up and imports rather than compute.

    python benchmarks/pipeline_overhead.py [--repeats 3] [--cores 2]

Each round runs the README's demo (`snakemake --cores N` with the repository's config.yaml) from scratch in a
fresh folder under results/benchmarks/, then measures, interleaved with the runs:
- process start-up + imports of a job: `python -c "import <what a torch job imports>"` and the same for the
  light jobs (pandas, the package), each job charged the probe of its kind;
- idle time: wall time when no job was running (Snakemake's start-up, DAG building, scheduling between jobs),
  from the job start and finish times in Snakemake's log.
Non-compute share = (idle + sum of the jobs' start-up and imports) / wall.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pandas as pd
from _bench import REPO, interleaved, print_table, spread, timed

TORCH_RULES = {"train", "predict", "refit", "predict_refit", "lr_find", "features", "cache"}
PROBES = {"torch": "import ensemble.cli, ensemble.train, ensemble.predict, ensemble.features",
          "light": "import ensemble.cli, ensemble.finalize, ensemble.blend, ensemble.submission"}


def _probe(kind: str) -> float:
    return timed(lambda: subprocess.run([sys.executable, "-c", PROBES[kind]], check=True, cwd=REPO))


def _busy_seconds(log: Path) -> tuple[float, list[tuple[datetime, datetime]]]:
    """Seconds during which at least one job ran, from the job start/finish stamps of a Snakemake log."""
    text = log.read_text()
    stamp = r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]"
    starts, ends = {}, {}
    for m in re.finditer(stamp + r"\n(?:localrule|rule) (\w+):\n(?:.*\n)*?\s+jobid: (\d+)", text):
        starts[m[3]] = datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y")
    for m in re.finditer(stamp + r"\nFinished jobid: (\d+)", text):
        ends[m[2]] = datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y")
    intervals = sorted((starts[j], ends[j]) for j in starts if j in ends)
    busy, current = 0.0, None
    for a, b in intervals:
        if current is None or a > current[1]:
            if current:
                busy += (current[1] - current[0]).total_seconds()
            current = [a, b]
        else:
            current[1] = max(current[1], b)
    if current:
        busy += (current[1] - current[0]).total_seconds()
    return busy, intervals


def _demo(work: Path, cores: int) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    started = time.perf_counter()
    done = subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", str(cores)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    rows = []
    for tsv in sorted((work / "results" / "demo" / "benchmarks").rglob("*.tsv")) + [
            work / "logs" / "benchmarks" / "demo_data.tsv"]:
        parts = tsv.relative_to(work).parts  # results/demo/benchmarks/<rule>[/...].tsv, or logs/benchmarks/...
        rule = parts[3].removesuffix(".tsv") if parts[0] == "results" else "demo_data"
        b = pd.read_csv(tsv, sep="\t").iloc[0]
        rows.append({"rule": rule, "s": float(b["s"]), "max_rss_mb": float(b["max_rss"])})
    busy, _ = _busy_seconds(max((work / ".snakemake" / "log").glob("*.log")))
    return {"wall": wall, "jobs": pd.DataFrame(rows), "busy": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    a = parser.parse_args()
    work = REPO / "results" / "benchmarks" / "demo-run"
    runs: list[dict] = []

    def demo() -> float:
        runs.append(_demo(work, a.cores))
        return runs[-1]["wall"]

    probes = interleaved({"demo": demo, "torch": lambda: _probe("torch"), "light": lambda: _probe("light")},
                         a.repeats)
    torch_probe, light_probe = (pd.Series(probes[k]).median() for k in ("torch", "light"))
    per_rule = defaultdict(lambda: {"jobs": 0, "s": [], "rss": []})
    shares, idles, startups = [], [], []
    for run in runs:
        jobs = run["jobs"]
        startup = sum(torch_probe if r in TORCH_RULES else light_probe for r in jobs["rule"])
        idle = max(0.0, run["wall"] - run["busy"])
        shares.append(100 * (idle + startup) / run["wall"])
        idles.append(idle)
        startups.append(startup)
        for rule, group in jobs.groupby("rule"):
            per_rule[rule]["jobs"] = len(group)
            per_rule[rule]["s"].append(group["s"].sum())
            per_rule[rule]["rss"].append(group["max_rss_mb"].max())
    print_table(f"The demo per rule ({a.repeats} runs, --cores {a.cores}): seconds summed over the rule's jobs "
                "and the largest max RSS, median (min-max)", ["rule", "jobs", "seconds", "max RSS MB"],
                [[rule, v["jobs"], spread(v["s"]), spread(v["rss"], "{:.0f}")]
                 for rule, v in sorted(per_rule.items(), key=lambda kv: -pd.Series(kv[1]["s"]).median())])
    print_table("Where the demo's wall time goes, median (min-max)", ["", "seconds or %"],
                [["wall time", spread(probes["demo"])],
                 ["start-up + imports, torch job (probe)", spread(probes["torch"], "{:.2f}")],
                 ["start-up + imports, light job (probe)", spread(probes["light"], "{:.2f}")],
                 ["jobs' start-up + imports, summed", spread(startups)],
                 ["idle: no job running (Snakemake start-up, DAG, scheduling)", spread(idles)],
                 ["non-compute share of wall time (%)", spread(shares)]])


if __name__ == "__main__":
    main()
