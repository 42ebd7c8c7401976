"""The hyperparameters of one training job: a typed record, light to import (no torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (and so the checkpoint key). Units in comments."""

    backbone: str
    weights: str = "none"  # none | imagenet | path of a state-dict file
    hidden: tuple[int, ...] = (4096,)  # widths of the head's hidden layers
    dropout: float = 0.0  # after each hidden layer
    image_size: int = 224  # px, square crops
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.05  # peak rate, reached after warmup
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    keep: str = "last"  # last | best (lowest validation loss; optimistic out-of-fold score)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    seed: int = 0
