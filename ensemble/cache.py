"""Decode once: every image of a data set decoded a single time, stored resized for training to read.

Decoding a JPEG and resizing it costs milliseconds per image; cropping an already-resized uint8 array costs a
fraction of that. Training reads each image every epoch, in every fold and for every model, so the cache stage
decodes each original once: its shorter side resized to ``side`` px (the eval resize of the training size,
``round(size / 0.875)``), centre-cropped to a ``side`` x ``side`` square, stored in one uint8 array per split
(``train.npy`` in labels.csv order, ``test.npy`` in sample_submission order, each ``(N, side, side, 3)``) with
its ids beside it (``train_ids.txt``, ``test_ids.txt``). Training memory-maps the arrays, so memory stays flat
as the data grows and worker processes share the page cache instead of holding copies.

The cached square equals the eval pipeline's input exactly when the backbone's eval crop ratio is 0.875 (the
torchvision ResNets, most timm nets): the eval centre crop of the cache is the eval centre crop of the
original. Views that look beyond that square (``five_crop`` corners, ``scale:`` below 1) see the square only.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ensemble.layout import Layout, load_rgb, read_labels, read_sample_ids

log = logging.getLogger(__name__)
EVAL_CROP = 0.875
SPLITS = ("train", "test")


def cache_side(image_size: int) -> int:
    """Side (px) of the cached squares for a training size: the eval resize at crop ratio 0.875."""
    return round(image_size / EVAL_CROP)


def decode_square(path: Path, side: int) -> np.ndarray:
    """(side, side, 3) uint8: the image decoded, its shorter side resized to ``side``, centre-cropped.

    PIL alone, with torchvision's arithmetic for a PIL image (``Resize(side)``: the longer side becomes
    ``int(side * long / short)``, bilinear; ``CenterCrop``: offsets ``int(round(excess / 2))``), so the cache
    equals the eval transform's input (a test holds the two equal on every shape it tries) while the cache's
    worker processes never import torch: on the demo that import was most of the job."""
    image = load_rgb(path)
    width, height = image.size
    longer = int(side * max(width, height) / min(width, height))
    size = (side, longer) if width <= height else (longer, side)
    if size != image.size:
        image = image.resize(size, resample=Image.BILINEAR)
    left, top = int(round((size[0] - side) / 2.0)), int(round((size[1] - side) / 2.0))
    return np.asarray(image.crop((left, top, left + side, top + side)), dtype=np.uint8)


def write_split(paths: list[Path], out: Path, side: int, workers: int = 1, progress_every: int = 2000) -> None:
    """Decode ``paths`` into one (N, side, side, 3) uint8 .npy at ``out``, written in place of any old one only
    when complete (a killed job leaves no half-written cache)."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), side, side, 3))
    started = time.perf_counter()
    try:
        with ProcessPoolExecutor(max(1, workers)) as pool:
            for i, square in enumerate(pool.map(partial(decode_square, side=side), paths, chunksize=16)):
                array[i] = square
                if (i + 1) % progress_every == 0:
                    log.info("%s: %d/%d images (%.0f/s)", out.name, i + 1, len(paths),
                             (i + 1) / (time.perf_counter() - started))
        array.flush()
        del array
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("%s: %d images of %d px in %.1f s", out, len(paths), side, time.perf_counter() - started)


def build_cache(data_dir: Path, out_dir: Path, side: int, workers: int = 1) -> None:
    """The cache of a data set in the Kaggle layout: both splits and their ids."""
    layout = Layout(Path(data_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = {"train": read_labels(layout.labels_csv)["id"].tolist(),
           "test": read_sample_ids(layout.sample_submission_csv)}
    image = {"train": layout.train_image, "test": layout.test_image}
    for split in SPLITS:
        write_split([image[split](i) for i in ids[split]], out_dir / f"{split}.npy", side, workers)
        (out_dir / f"{split}_ids.txt").write_text("".join(f"{i}\n" for i in ids[split]))


@dataclass(frozen=True)
class CacheRows:
    """Some rows of a cached split: what a dataset needs to read them (a path, not the array)."""

    array: Path
    rows: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.rows)


class ImageCache:
    """A cache folder written by ``build_cache``: rows of either split by image id."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._index: dict[str, dict[str, int]] = {}

    def rows(self, split: str, ids: list[str]) -> CacheRows:
        if split not in self._index:
            names = (self.root / f"{split}_ids.txt").read_text().split()
            self._index[split] = {name: i for i, name in enumerate(names)}
        index = self._index[split]
        missing = [i for i in ids if i not in index]
        if missing:
            raise ValueError(f"{self.root}: {len(missing)} id(s) not in the {split} cache, e.g. {missing[0]!r}; "
                             "the cache was built from other data - delete it and rerun")
        return CacheRows(self.root / f"{split}.npy", tuple(index[i] for i in ids))

    @property
    def side(self) -> int:
        return int(np.load(self.root / "train.npy", mmap_mode="r").shape[1])
