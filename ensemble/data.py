"""Datasets of image files and the loaders that feed them to a model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ensemble.layout import load_rgb


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


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, workers: int, device: torch.device,
                generator: torch.Generator | None = None, drop_last: bool = False) -> DataLoader:
    """A loader with pinned memory on CUDA; ``generator`` fixes shuffling and worker seeds."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      pin_memory=device.type == "cuda", generator=generator, drop_last=drop_last,
                      persistent_workers=False)
