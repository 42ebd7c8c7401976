"""Train and eval transforms (torchvision.transforms.v2), built from the backbone's preprocessing.

Eval: resize the shorter side to size / crop_pct, centre-crop ``size``; crop_pct is the backbone's own.
Train: random resized crop (scale 0.35-1, so most of the subject stays in view) and horizontal flip;
no vertical flips, since photos have an up.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

TRAIN_SCALE = (0.35, 1.0)


def _to_tensor(mean: tuple[float, ...], std: tuple[float, ...]) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def train_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """Augmenting transform for training images."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=TRAIN_SCALE, antialias=True),
        v2.RandomHorizontalFlip(),
        *_to_tensor(mean, std),
    ])


def eval_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...], crop_pct: float) -> v2.Compose:
    """Deterministic transform for validation and test images."""
    return v2.Compose([
        v2.Resize(round(size / crop_pct), antialias=True),
        v2.CenterCrop(size),
        *_to_tensor(mean, std),
    ])
