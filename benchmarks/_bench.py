"""Shared by the benchmark scripts: interleaved repeats, tables of median and spread, data to measure on.

This machine is shared and noisy, so every benchmark runs its variants interleaved (A B C, A B C, ...) and
reports the median with the min and max of the repeats, never a single run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DOGS10 = REPO.parent / "shared" / "data" / "dogs10"
sys.path.insert(0, str(REPO))


def interleaved(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each variant once per round, ``repeats`` rounds; each call returns its own measurement."""
    results: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):
        for name, run in variants.items():
            results[name].append(run())
            print(f"  round {r + 1}/{repeats} {name}: {results[name][-1]:.4g}", file=sys.stderr, flush=True)
    return results


def summary(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    """A GitHub-markdown table on stdout."""
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    med, lo, hi = summary(values)
    return f"{fmt.format(med)} ({fmt.format(lo)}-{fmt.format(hi)})"


def photo_set(out: Path, n: int | None = None, longer: int = 500) -> Path:
    """A data set in the Kaggle layout with photos of Kaggle's typical size (longer side ``longer`` px, JPEG
    quality 90): dogs10's photos enlarged when it is present, else smooth synthetic images."""
    if (out / "labels.csv").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train").mkdir(parents=True)
    (tmp / "test").mkdir()
    if DOGS10.exists():
        for split in ("train", "test"):
            for src in sorted((DOGS10 / split).glob("*.jpg"))[:n]:
                with Image.open(src) as im:
                    scale = longer / max(im.size)
                    im.convert("RGB").resize((round(im.width * scale), round(im.height * scale)),
                                             Image.BICUBIC).save(tmp / split / src.name, quality=90)
        for name in ("labels.csv", "sample_submission.csv"):
            shutil.copy(DOGS10 / name, tmp / name)
        if n is not None:
            import pandas as pd

            kept = {p.stem for p in (tmp / "train").glob("*.jpg")}
            labels = pd.read_csv(DOGS10 / "labels.csv", dtype=str)
            labels[labels["id"].isin(kept)].to_csv(tmp / "labels.csv", index=False)
            tests = {p.stem for p in (tmp / "test").glob("*.jpg")}
            sample = pd.read_csv(DOGS10 / "sample_submission.csv", dtype={"id": str})
            sample[sample["id"].isin(tests)].to_csv(tmp / "sample_submission.csv", index=False)
    else:
        synthetic_set(tmp, n_train=n or 400, n_test=(n or 400) // 5, size=(longer, longer * 3 // 4), classes=10)
    os.replace(tmp, out)
    return out


def synthetic_set(out: Path, *, n_train: int, n_test: int, size: tuple[int, int], classes: int,
                  seed: int = 0) -> Path:
    """Smooth synthetic photos (gradients and a blob whose colour depends on the class) in the Kaggle layout."""
    rng = np.random.default_rng(seed)
    names = [f"class{c}" for c in range(classes)]
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "test").mkdir(exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rows = []
    for i in range(n_train + n_test):
        c = i % classes
        base = rng.uniform(0, 255, 3)
        img = (base + 60 * np.sin(xx[..., None] / rng.uniform(20, 80) + rng.uniform(0, 6, 3))).clip(0, 255)
        cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0.1, 0.3) * h
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = np.array([c * 25, 255 - c * 25, 128])
        split = "train" if i < n_train else "test"
        Image.fromarray(img.astype(np.uint8)).save(out / split / f"img{i:06d}.jpg", quality=90)
        if split == "train":
            rows.append(f"img{i:06d},{names[c]}")
    (out / "labels.csv").write_text("id,breed\n" + "\n".join(rows) + "\n")
    test_ids = [f"img{i:06d}" for i in range(n_train, n_train + n_test)]
    uniform = ",".join([f"{1 / classes:.6f}"] * classes)
    (out / "sample_submission.csv").write_text("id," + ",".join(names) + "\n" +
                                              "".join(f"{t},{uniform}\n" for t in test_ids))
    return out


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
