"""Scaling: wall time and memory of one fold on generated sets of 1k, 2k, 4k and 8k labelled images (64 px).

    python benchmarks/scaling.py [--sizes 1000 2000 4000 8000] [--repeats 2] [--epochs 1] [--threads 2]

Each set is the built-in demo generator's (64 px, 10 classes), cached once (73 px squares). One fold's
training job (`python -m ensemble train --cache ...`, ResNet-18 at 64 px, k = 5) runs as its own process
while this script samples /proc/<pid>/status every 20 ms for the peak resident set (VmHWM) and peak anonymous
memory (RssAnon: heap, not the memory-mapped cache). Sizes run interleaved, `--repeats` rounds. The last
table fits RssAnon against the number of images: its slope is the memory a fold needs per 1,000 more images.
Peak RssAnon moves by tens of MB from run to run with 2 threads (allocator arenas, oneDNN scratch); for the
slope, `MALLOC_ARENA_MAX=1 python benchmarks/scaling.py --threads 1` is the least noisy.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _bench import REPO, interleaved, print_table, spread


def _data(n: int) -> Path:
    out = REPO / "results" / "benchmarks" / f"scale-{n}"
    if not (out / "labels.csv").exists():
        subprocess.run([sys.executable, "-m", "ensemble", "demo-data", "--out", str(out), "--train", str(n),
                        "--test", "100", "--size", "64"], check=True, cwd=REPO)
    cache = out / "cache-73px"
    if not (cache / "train.npy").exists():
        subprocess.run([sys.executable, "-m", "ensemble", "cache", "--data", str(out), "--side", "73",
                        "--threads", "2", "--out", str(cache)], check=True, cwd=REPO)
    folds = out / "folds.csv"
    if not folds.exists():
        subprocess.run([sys.executable, "-m", "ensemble", "folds", "--labels", str(out / "labels.csv"), "--k", "5",
                        "--seed", "42", "--out", str(folds)], check=True, cwd=REPO)
    return out


def _status(pid: int) -> dict[str, int]:
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "RssAnon"):
                fields[key] = int(value.split()[0])  # kB
    except (FileNotFoundError, ProcessLookupError):
        pass
    return fields


def _fold(data: Path, epochs: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cmd = [sys.executable, "-m", "ensemble", "train", "--data", str(data), "--folds", str(data / "folds.csv"),
               "--fold", "0", "--cache", str(data / "cache-73px"), "--backbone", "resnet18", "--image-size", "64",
               "--epochs", str(epochs), "--batch-size", "64", "--device", "cpu", "--threads", str(threads),
               "--workers", "0", "--checkpoint", str(out / "c.pt"), "--out-model", str(out / "m.pt"),
               "--out-history", str(out / "h.csv"), "--out-metrics", str(out / "x.json")]
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak = {"VmHWM": 0, "RssAnon": 0}
        while proc.poll() is None:
            for key, value in _status(proc.pid).items():
                peak[key] = max(peak[key], value)
            time.sleep(0.02)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(proc.stderr.read()[-3000:])
    return {"wall": wall, "rss_mb": peak["VmHWM"] / 1024, "anon_mb": peak["RssAnon"] / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args()
    data = {n: _data(n) for n in a.sizes}
    records: dict[int, list[dict]] = {n: [] for n in a.sizes}

    def variant(n: int):
        def run() -> float:
            records[n].append(_fold(data[n], a.epochs, a.threads))
            return records[n][-1]["wall"]
        return run

    interleaved({f"{n} images": variant(n) for n in a.sizes}, a.repeats)
    rows = []
    for n in a.sizes:
        rs = records[n]
        rows.append([n, int(n * 0.8), spread([r["wall"] for r in rs]), spread([r["rss_mb"] for r in rs], "{:.0f}"),
                     spread([r["anon_mb"] for r in rs], "{:.1f}")])
    print_table(f"One fold (k = 5, ResNet-18 64 px, {a.epochs} epoch(s), {a.threads} threads, cached 73 px squares); "
                f"{a.repeats} interleaved rounds, median (min-max)",
                ["labelled images", "training images", "wall s", "peak RSS MB", "peak RssAnon MB"], rows)
    sizes = np.array(a.sizes, dtype=float)
    anon = np.array([np.median([r["anon_mb"] for r in records[n]]) for n in a.sizes])
    wall = np.array([np.median([r["wall"] for r in records[n]]) for n in a.sizes])
    anon_slope = np.polyfit(sizes / 1000, anon, 1)[0]
    wall_slope = np.polyfit(sizes / 1000, wall, 1)[0]
    print_table("Growth per 1,000 more labelled images (least-squares slope over the sizes)", ["", "per 1,000 images"],
                [["peak RssAnon (MB)", f"{anon_slope:.2f}"], ["wall (s)", f"{wall_slope:.1f}"]])


if __name__ == "__main__":
    main()
