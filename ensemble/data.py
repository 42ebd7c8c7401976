"""Datasets of images (files, or rows of the decode-once cache) and the loaders that feed them to a model.

Datasets yield uint8 image tensors; the model normalises whole batches itself (``ensemble.models``), on the
device, so a CUDA loader moves a quarter of the bytes fp32 would and no worker spends time on arithmetic.

Random augmentation does not depend on the loader's worker count: with ``seed`` set (per epoch, by training),
each sample's transform draws from torch's and Python's generators seeded from (seed, sample index), in a
fork of the process's own generators, so 0 workers and 8 give the same pixels, and the main process's stream
(dropout, MixUp) is the same either way.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ensemble.cache import CacheRows, ImageCache
from ensemble.folds import split
from ensemble.layout import ID, LABEL, Layout, load_rgb, read_classes, read_table

Images = Sequence[Path] | CacheRows  # image files, or rows of a cached split


def sample_seed(seed: int, index: int) -> int:
    """The seed of one sample's random transform: a function of (seed, index) alone."""
    return (seed * 1_000_003 + index * 7919 + 1) % (1 << 63)


def seeded(transform: Callable, image, seed: int):
    """``transform(image)`` drawing from torch's CPU generator and Python's seeded with ``seed``, leaving the
    caller's generators as they were (state saved and restored directly: ``torch.random.fork_rng`` costs
    15 times as much per image)."""
    torch_state, python_state = torch.default_generator.get_state(), random.getstate()
    torch.default_generator.manual_seed(seed)
    random.seed(seed)  # timm's crops draw from Python's generator
    try:
        return transform(image)
    finally:
        torch.default_generator.set_state(torch_state)
        random.setstate(python_state)


class _Transformed(Dataset):
    """What both datasets share: targets, the transform and its per-sample seeding (``seed`` None: draw from
    the process's generators)."""

    def __init__(self, n: int, targets: Sequence[int] | None, transform: Callable, seed: int | None):
        self.targets = list(targets) if targets is not None else [-1] * n
        self.transform, self.seed = transform, seed

    def _transform(self, image, i: int) -> torch.Tensor:
        return self.transform(image) if self.seed is None else seeded(self.transform, image,
                                                                     sample_seed(self.seed, i))


class ImageFiles(_Transformed):
    """(transformed image, target) pairs from a list of files; target -1 where unknown (test images)."""

    def __init__(self, paths: Sequence[Path], targets: Sequence[int] | None, transform: Callable,
                 seed: int | None = None):
        self.paths = list(paths)
        super().__init__(len(self.paths), targets, transform, seed)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._transform(load_rgb(self.paths[i]), i), self.targets[i]


class _MappedRows:
    """Rows of a cached split (``self.source``), memory-mapped on first use in each process: the dataset
    pickles as a path, so worker processes never copy the array."""

    source: CacheRows
    _array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.source)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def _row(self, i: int) -> np.ndarray:
        """Stored row ``i``, (side, MAX_ASPECT * side, 3), valid up to ``self.source.widths[i]``."""
        if self._array is None:
            self._array = np.load(self.source.array, mmap_mode="r")
        return self._array[self.source.rows[i]]


class CachedImages(_MappedRows, _Transformed):
    """(transformed image, target) pairs from rows of a cached split."""

    def __init__(self, source: CacheRows, targets: Sequence[int] | None, transform: Callable,
                 seed: int | None = None):
        self.source = source
        super().__init__(len(source), targets, transform, seed)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        # PIL, like the files: its crops and resizes of small images cost a fraction of torch's per-image ops
        stored = self._row(i)[:, :self.source.widths[i]]  # (side, width, 3)
        image = Image.fromarray(np.ascontiguousarray(stored))
        if self.source.portrait[i]:
            image = image.transpose(Image.Transpose.TRANSPOSE)  # portrait photos are stored transposed
        return self._transform(image, i), self.targets[i]


class CachedRows(_MappedRows, Dataset):
    """((stored row, width, portrait), target) from rows of a cached split, untransformed: the loader only
    slices the memory-mapped array, and ``ensemble.batch_augment`` crops and flips whole batches on the device."""

    def __init__(self, source: CacheRows, targets: Sequence[int]):
        self.source, self.targets = source, list(targets)

    def __getitem__(self, i: int):
        row = torch.from_numpy(np.array(self._row(i)))  # a copy: (side, 2 side, 3)
        return (row, self.source.widths[i], self.source.portrait[i]), self.targets[i]


def source(layout: Layout, cache: ImageCache | None, split: str, ids: list[str]) -> Images:
    """Where a split's images are read from: the decode-once cache when there is one, else the files."""
    if cache is not None:
        return cache.rows(split, ids)
    image = layout.train_image if split == "train" else layout.test_image
    return [image(i) for i in ids]


def image_dataset(images: Images, targets: Sequence[int] | None, transform: Callable,
                  seed: int | None = None) -> Dataset:
    """The dataset for files or cache rows; ``seed``: each sample's random transform seeded from (seed,
    index), whatever the worker count (set it again per epoch)."""
    if isinstance(images, CacheRows):
        return CachedImages(images, targets, transform, seed)
    return ImageFiles(images, targets, transform, seed)


def loader_workers(requested: int | str, device: torch.device) -> int:
    """``auto``: on CUDA, up to 8 worker processes (the CPU prepares while the GPU computes); on the CPU
    none, since the model's own threads use the cores and the cache makes preparing an image cheap."""
    if requested != "auto":
        return int(requested)
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, workers: int, device: torch.device,
                generator: torch.Generator | None = None, drop_last: bool = False) -> DataLoader:
    """A loader with pinned memory on CUDA and workers kept alive between epochs; ``generator`` fixes
    shuffling and worker seeds."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      pin_memory=device.type == "cuda", generator=generator, drop_last=drop_last,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)


@dataclass
class FoldData:
    """Images (files, or rows of the decode-once cache) and integer targets of one fold's training and
    validation sets."""

    classes: list[str]
    train_ids: list[str]
    train_images: Images
    train_targets: list[int]
    val_images: Images
    val_targets: list[int]
    val_ids: list[str] = field(default_factory=list)


def fold_data(data_dir: Path, folds_csv: Path, fold: int | None, cache: ImageCache | None = None) -> FoldData:
    """One fold's training and validation images (cache rows when there is a cache); ``fold`` None: every
    labelled image, no validation set."""
    layout = Layout(data_dir)
    classes = read_classes(layout.sample_submission_csv)
    index = {c: i for i, c in enumerate(classes)}
    table = read_table(folds_csv)
    train, val = split(table, fold) if fold is not None else (table, table.iloc[:0])
    return FoldData(classes, train[ID].tolist(), source(layout, cache, "train", train[ID].tolist()),
                    train[LABEL].map(index).tolist(), source(layout, cache, "train", val[ID].tolist()),
                    val[LABEL].map(index).tolist(), val[ID].tolist())
