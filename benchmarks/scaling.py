"""Scaling: wall time and memory of one fold on generated sets of 1k, 2k, 4k and 8k labelled images (64 px).

    python benchmarks/scaling.py [--sizes 1000 2000 4000 8000] [--repeats 3] [--epochs 2] [--threads 2] [--equal-steps]

Each set is the built-in demo generator's (64 px, 10 classes), cached once (73 px squares). One fold's
training job (`python -m ensemble train --cache ...`, ResNet-18 at 64 px, k = 5) runs as its own process
while this script samples /proc/<pid>/status every 20 ms: the peak resident set (VmHWM), and anonymous memory
(RssAnon: heap, not the memory-mapped cache), both its peak and its level while the fold trains (median and
95th percentile of the samples from half-way to 90% of the job's wall time; the first seconds are imports and
set-up). Sizes run interleaved, `--repeats` rounds. The last table fits each against the number of images: the
slope is the memory a fold needs per 1,000 more images.

Why the level beside the peak: RssAnon moves by 10-30 MB from batch to batch (allocator arenas, oneDNN scratch),
and the peak is the largest of those swings, so a longer job draws more of them and peaks higher at the same
level. Measured: 1,000 images for 8 epochs peaked at 731-746 MB, 8,000 images for 1 epoch (the same number
of steps) at 707-708 MB, with the same training level (~690 MB). `--equal-steps` runs that control: each
size trains for `--epochs` x (largest size / its size) epochs, so every job takes the same number of steps.
`MALLOC_ARENA_MAX=1 python benchmarks/scaling.py --threads 1` is the least noisy.
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
        hwm, anon = 0, []  # VmHWM is the kernel's own peak; RssAnon's is the largest sample
        while proc.poll() is None:
            status = _status(proc.pid)
            hwm = max(hwm, status.get("VmHWM", 0))
            if "RssAnon" in status:
                anon.append((time.perf_counter() - started, status["RssAnon"] / 1024))
            time.sleep(0.02)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(proc.stderr.read()[-3000:])
    training = np.array([mb for t, mb in anon if 0.5 * wall <= t <= 0.9 * wall])
    return {"wall": wall, "rss_mb": hwm / 1024, "anon_mb": max(mb for _, mb in anon),
            "anon_median": float(np.median(training)), "anon_p95": float(np.percentile(training, 95))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--equal-steps", action="store_true",
                        help="the same number of training steps at every size (smaller sets train more epochs)")
    a = parser.parse_args()
    epochs = {n: a.epochs * (round(max(a.sizes) / n) if a.equal_steps else 1) for n in a.sizes}
    data = {n: _data(n) for n in a.sizes}
    records: dict[int, list[dict]] = {n: [] for n in a.sizes}

    def variant(n: int):
        def run() -> float:
            records[n].append(_fold(data[n], epochs[n], a.threads))
            return records[n][-1]["wall"]
        return run

    interleaved({f"{n} images": variant(n) for n in a.sizes}, a.repeats)
    columns = {"wall": ("wall s", "{:.1f}"), "rss_mb": ("peak RSS MB", "{:.0f}"),
               "anon_mb": ("peak RssAnon MB", "{:.1f}"), "anon_median": ("RssAnon training, median MB", "{:.1f}"),
               "anon_p95": ("RssAnon training, p95 MB", "{:.1f}")}
    rows = [[n, int(n * 0.8), epochs[n], *[spread([r[key] for r in records[n]], fmt)
                                           for key, (_, fmt) in columns.items()]] for n in a.sizes]
    print_table(f"One fold (k = 5, ResNet-18 64 px, {a.threads} threads, cached 73 px squares"
                f"{', the same number of steps at every size' if a.equal_steps else ''}); "
                f"{a.repeats} interleaved rounds, median (min-max)",
                ["labelled images", "training images", "epochs", *[title for title, _ in columns.values()]], rows)
    thousands = np.array(a.sizes, dtype=float) / 1000

    def slope(key: str) -> float:
        return float(np.polyfit(thousands, [np.median([r[key] for r in records[n]]) for n in a.sizes], 1)[0])

    print_table("Growth per 1,000 more labelled images (least-squares slope of the medians over the sizes)",
                ["", "per 1,000 images"],
                [[f"{columns[key][0].removesuffix(' MB').removesuffix(' s')} ({'s' if key == 'wall' else 'MB'})",
                  f"{slope(key):.2f}"] for key in ("anon_mb", "anon_median", "anon_p95", "rss_mb", "wall")])


if __name__ == "__main__":
    main()
