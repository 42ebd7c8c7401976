"""The demo end to end: seconds and max RSS per rule (Snakemake's benchmark: files), and the share of wall time
that is scheduling, process start-up and imports rather than compute.

    python benchmarks/pipeline_overhead.py [--repeats 3] [--cores 2]

Each round runs the README's demo (`snakemake --cores N` with the repository's config.yaml) from scratch in a
fresh folder under results/benchmarks/, then measures, interleaved with the runs:
- each job's interval: it ends when Snakemake writes its benchmark file (the file's mtime) and starts the
  benchmark's seconds before that;
- each job's start-up: `python -c "import <what the job's verb imports>"`, probed per rule (every torch job
  imports the same);
- a job computes from the end of its start-up to its end.
Non-compute share = the part of the demo's wall time (from launching Snakemake to its exit) during which no
job was computing: Snakemake's start-up, DAG building and scheduling between jobs, and start-ups not hidden
behind another job's compute. With one job at a time this is idle time + the sum of the jobs' start-ups.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
from _bench import REPO, interleaved, print_table, spread, timed

# What each rule's verb imports before it works (its module-level and in-function imports), probed per rule
TORCH = "ensemble.train, ensemble.predict, ensemble.features"
PROBES = {"train": TORCH, "predict": TORCH, "refit": TORCH, "predict_refit": TORCH, "lr_find": TORCH,
          "features": TORCH,
          "demo_data": "ensemble.demo_data", "check_inputs": "ensemble.inputs", "provenance": "ensemble.provenance",
          "cache": "ensemble.cache", "folds": "ensemble.folds, ensemble.layout, sklearn.model_selection",
          "average": "ensemble.combine", "blend": "ensemble.combine, scipy.optimize",
          "postprocess": "ensemble.finalize",
          "plots": "ensemble.plots, matplotlib.pyplot", "submit": "ensemble.tables, ensemble.submission",
          "score": "ensemble.scoring, ensemble.layout"}


def _imports(rule: str) -> str:
    if rule not in PROBES:
        raise SystemExit(f"no start-up probe for rule {rule!r}: add what its verb imports to PROBES")
    return PROBES[rule]


def _probe(modules: str) -> float:
    return timed(lambda: subprocess.run([sys.executable, "-c", f"import ensemble.cli, {modules}"], check=True,
                                        cwd=REPO))


def _union(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the (start, end) intervals."""
    covered, current = 0.0, None
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if current is None or a > current[1]:
            if current:
                covered += current[1] - current[0]
            current = [a, b]
        else:
            current[1] = max(current[1], b)
    if current:
        covered += current[1] - current[0]
    return covered


def _demo(work: Path, cores: int) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    launched = time.time()
    done = subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", str(cores)],
                          capture_output=True, text=True)
    exited = time.time()
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    rows = []
    for tsv in sorted((work / "results" / "demo" / "benchmarks").rglob("*.tsv")) + [
            work / "logs" / "benchmarks" / "demo_data.tsv"]:
        parts = tsv.relative_to(work).parts  # results/demo/benchmarks/<rule>[/...].tsv, or logs/benchmarks/...
        rule = parts[3].removesuffix(".tsv") if parts[0] == "results" else "demo_data"
        job = pd.read_csv(tsv, sep="\t").iloc[0]
        end = tsv.stat().st_mtime - launched
        rows.append({"rule": rule, "s": float(job["s"]), "start": end - float(job["s"]), "end": end,
                     "max_rss_mb": float(job["max_rss"])})
    return {"wall": exited - launched, "jobs": pd.DataFrame(rows)}


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

    kinds = sorted(set(PROBES.values()), key=list(PROBES.values()).index)  # each distinct import set once
    probes = interleaved({"demo": demo, **{m: (lambda m=m: _probe(m)) for m in kinds}}, a.repeats)
    startup = {m: pd.Series(probes[m]).median() for m in kinds}
    per_rule = defaultdict(lambda: {"jobs": 0, "s": [], "rss": []})
    shares, idles, startups, hidden = [], [], [], []
    for run in runs:
        jobs = run["jobs"].assign(startup=lambda d: [startup[_imports(r)] for r in d["rule"]])
        busy = _union(list(zip(jobs["start"], jobs["end"])))
        computing = _union(list(zip(jobs["start"] + jobs["startup"], jobs["end"])))
        idles.append(run["wall"] - busy)
        startups.append(jobs["startup"].sum())
        hidden.append(jobs["startup"].sum() - (busy - computing))
        shares.append(100 * (run["wall"] - computing) / run["wall"])
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
                 *[[f"start-up + imports, {'/'.join(r for r in PROBES if PROBES[r] == m)} job (probe)",
                    spread(probes[m], "{:.2f}")] for m in kinds],
                 ["jobs' start-up + imports, summed", spread(startups)],
                 ["... of which hidden behind another job's compute", spread(hidden)],
                 ["idle: no job running (Snakemake start-up, DAG, scheduling)", spread(idles)],
                 ["non-compute share of wall time: no job computing (%)", spread(shares)]])


if __name__ == "__main__":
    main()
