"""Datasets of images (files, or rows of the decode-once cache) and the loaders that feed them to a model.

Datasets yield uint8 image tensors; the model normalises whole batches itself (``ensemble.models``), on the
device, so a CUDA loader moves a quarter of the bytes fp32 would and no worker spends time on arithmetic.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ensemble.cache import CacheRows, ImageCache
from ensemble.layout import Layout, load_rgb

Images = Sequence[Path] | CacheRows  # image files, or rows of a cached split


class ImageFiles(Dataset):
    """(transformed image, target) pairs from a list of files; target -1 where unknown (test images)."""

    def __init__(self, paths: Sequence[Path], targets: Sequence[int] | None, transform: Callable):
        self.paths = list(paths)
        self.targets = list(targets) if targets is not None else [-1] * len(self.paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(load_rgb(self.paths[i])), self.targets[i]


class CachedImages(Dataset):
    """(transformed image, target) pairs from rows of a cached split, memory-mapped on first use in each
    process (the dataset pickles as a path, so worker processes never copy the array)."""

    def __init__(self, source: CacheRows, targets: Sequence[int] | None, transform: Callable):
        self.source, self.transform = source, transform
        self.targets = list(targets) if targets is not None else [-1] * len(source)
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.source)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self._array is None:
            self._array = np.load(self.source.array, mmap_mode="r")
        # PIL, like the files: its crops and resizes of small images cost a fraction of torch's per-image ops
        stored = self._array[self.source.rows[i], :, :self.source.widths[i]]  # (side, width, 3)
        image = Image.fromarray(np.ascontiguousarray(stored))
        if self.source.portrait[i]:
            image = image.transpose(Image.Transpose.TRANSPOSE)  # portrait photos are stored transposed
        return self.transform(image), self.targets[i]


def source(layout: Layout, cache: ImageCache | None, split: str, ids: list[str]) -> Images:
    """Where a split's images are read from: the decode-once cache when there is one, else the files."""
    if cache is not None:
        return cache.rows(split, ids)
    image = layout.train_image if split == "train" else layout.test_image
    return [image(i) for i in ids]


def image_dataset(images: Images, targets: Sequence[int] | None, transform: Callable) -> Dataset:
    """The dataset for files or cache rows."""
    if isinstance(images, CacheRows):
        return CachedImages(images, targets, transform)
    return ImageFiles(images, targets, transform)


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
