"""What making the data's content part of the DAG costs: hashing every image once, then every dry run.

    python benchmarks/fingerprint.py [--images 20000] [--kb 30] [--repeats 3]

Writes a data set in the Kaggle layout under results/benchmarks/fingerprint/ (``--images`` training files of
``--kb`` KB of random bytes each, plus a tenth as many test files: the stamps hash bytes and never decode, so
random bytes cost what JPEGs do), then times:
- the first hash: ``python -m ensemble fingerprint`` with an empty hash store (every byte read once);
- ``snakemake -n`` once hashed, with the stamps in place: the workflow loads, stats every file, finds the
  stored hashes valid and builds the DAG (the issue's target: under 5 s on 20,000 files);
- the same dry run after one image changed (one file re-hashed, its split's rules planned).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from _bench import REPO, print_table, spread

ROOT = REPO / "results" / "benchmarks" / "fingerprint"


def make_data(root: Path, n_train: int, n_test: int, kb: int) -> None:
    classes = [f"c{i}" for i in range(10)]
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_train):
        (root / "train" / f"t{i:06d}.jpg").write_bytes(os.urandom(kb * 1024))
        rows.append(f"t{i:06d},{classes[i % 10]}")
    (root / "labels.csv").write_text("id,breed\n" + "\n".join(rows) + "\n")
    test = [f"s{i:06d}" for i in range(n_test)]
    for name in test:
        (root / "test" / f"{name}.jpg").write_bytes(os.urandom(kb * 1024))
    (root / "sample_submission.csv").write_text(
        "id," + ",".join(classes) + "\n" + "".join(f"{t}," + ",".join(["0.1"] * 10) + "\n" for t in test))


def seconds(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--kb", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    shutil.rmtree(ROOT, ignore_errors=True)
    data = ROOT / "data"
    make_data(data, a.images, a.images // 10, a.kb)
    (ROOT / "config.yaml").write_text(yaml.safe_dump({
        "run": "bench", "data": {"dir": str(data), "answers": None}, "folds": {"k": 5},
        "models": {"r18": {"backbone": "resnet18", "image_size": 224}}, "train": {"device": "cpu"}}))
    stamps = ROOT / "results/bench/inputs"
    first = seconds([sys.executable, "-m", "ensemble", "fingerprint", "--data", str(data), "--store",
                     str(ROOT / "results/.data-hashes.json"), "--threads", "2", "--out-train",
                     str(stamps / "train.json"), "--out-test", str(stamps / "test.json")], ROOT)
    dry = [seconds(["snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "2"], ROOT)
           for _ in range(a.repeats)]
    changed = []
    for r in range(a.repeats):
        (data / "train" / "t000000.jpg").write_bytes(os.urandom(a.kb * 1024))
        changed.append(seconds(["snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "2"], ROOT))
    n = a.images + a.images // 10
    print_table(f"Data stamps: {n:,} files of {a.kb} KB ({n * a.kb / 1024:,.0f} MB), 2 cores", ["step", "seconds"], [
        ["first hash (python -m ensemble fingerprint, empty store)", f"{first:.1f}"],
        ["snakemake -n, hashed, nothing changed", spread(dry, "{:.2f}")],
        ["snakemake -n after one image changed", spread(changed, "{:.2f}")],
    ])


if __name__ == "__main__":
    main()
