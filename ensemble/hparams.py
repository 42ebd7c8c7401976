"""The hyperparameters of one training job: a typed record, light to import (no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

PREDICT_BATCH_SIZE = 128  # predict.batch_size's default, as the schema has it (a test holds the two equal)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model (and so the checkpoint key). Units in comments."""

    backbone: str
    weights: str = "none"  # none | imagenet | path of a state-dict file
    hidden: tuple[int, ...] = ()  # widths of the head's hidden layers; (4096,) is the write-up's head
    dropout: float = 0.0  # after each hidden layer
    image_size: int | None = field(default=None, metadata={"type": int})  # px; None: the backbone's own
    head_epochs: int = 10  # phase 1: backbone frozen, only the head trains (0: no such phase)
    epochs: int = 9  # phase 2: the whole network trains
    top_stage_epochs: int = 0  # phase 2's first n epochs train the last stage and the head only (of ``epochs``)
    batch_size: int = 32
    lr: float = 1e-3  # peak rate of the head (phase 1), reached after warmup
    finetune_lr_scale: float = 1.0  # phase 2 head rate = lr * finetune_lr_scale
    lr_groups: int = 1  # phase 2 parameter groups, head to stem (1: one rate for all)
    lr_ratio: float = 1.0  # phase 2: group i from the head trains at lr * finetune_lr_scale * lr_ratio**i
    cycle_epochs: int | None = field(default=None, metadata={"type": int})  # SGDR first cycle; None: plain cosine
    cycle_mult: float = 1.0  # SGDR: each cycle is this many times longer than the one before
    cycle_decay: float = 1.0  # SGDR: each cycle's peak rate is this times the one before
    snapshots: bool = False  # keep the model at the end of each phase-2 cycle; predictions average them
    patience: int = 0  # early stopping: judgements without a better val loss (cycle ends with SGDR, else epochs)
    augment: str = "light"  # none | light | standard | heavy | timm (ensemble.transforms)
    mixup: float = 0.0  # MixUp alpha (0: off)
    cutmix: float = 0.0  # CutMix alpha (0: off); with both on, each batch picks one
    label_smoothing: float = 0.1  # share of each target spread over all classes
    optimizer: str = "nadamw"  # any of timm.optim.list_optimizers(): nadamw, adamw, sgd (Nesterov), lamb, ...
    momentum: float = 0.9  # of the optimizers that have one (sgd, momentum, ...)
    weight_decay: float = 0.05  # on weights only: none on norms and biases
    layer_decay: float | None = field(default=None, metadata={"type": float})  # phase 2: layer i of n at decay**(n-i)
    freeze_stages: int = 0  # phase 2: the first n stages (the stem one of them) stay frozen
    ema: float = 0.0  # decay of an EMA of the weights (timm ModelEmaV3, warming up); 0: off
    clip_grad: float | None = field(default=None, metadata={"type": float})  # max global gradient norm; None: off
    warmup_epochs: float = 1.0
    keep: str = "last"  # last | best (lowest validation loss; optimistic out-of-fold score)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    seed: int = 0

    @property
    def total_epochs(self) -> int:
        return self.head_epochs + self.epochs

    @property
    def full_start(self) -> int:
        """The 0-based epoch from which the whole network trains (after the head and top-stage epochs)."""
        return self.head_epochs + self.top_stage_epochs

    @property
    def full_epochs(self) -> int:
        """The whole-network epochs: phase 2's, less its top-stage epochs."""
        return self.epochs - self.top_stage_epochs

    def cycle_ends(self) -> list[int]:
        """Epochs (1-based, over both phases) that end a whole-network cycle; the last epoch always does."""
        from ensemble.schedule import cycle_bounds

        return [self.full_start + end
                for _, end in cycle_bounds(self.full_epochs, self.cycle_epochs, self.cycle_mult)]

    def judged(self, epoch: int) -> bool:
        """Whether early stopping and snapshots look at the end of 1-based ``epoch`` (a restart raises the
        loss for a while, so with SGDR only cycle ends are judged)."""
        if epoch <= self.full_start:
            return False
        return self.cycle_epochs is None or epoch in self.cycle_ends()

    def phase(self, epoch: int) -> str:
        """The step of the schedule a 0-based epoch (counted over both phases) belongs to: ``head`` (the
        backbone frozen), ``top`` (the backbone's last stage and the head: gradual unfreezing, as ULMFiT's,
        Howard & Ruder, arXiv:1801.06146) or ``full`` (the whole network). Each has its own optimizer and
        warmup + cosine."""
        if epoch < self.head_epochs:
            return "head"
        return "top" if epoch < self.full_start else "full"


def should_stop(config: TrainConfig, history: list[dict]) -> bool:
    """Early stopping: ``patience`` judgements in a row (see ``TrainConfig.judged``) without a new best loss."""
    if config.patience <= 0:
        return False
    losses = [h["val_loss"] for h in history if config.judged(h["epoch"])]
    return bool(losses) and len(losses) - 1 - min(range(len(losses)), key=losses.__getitem__) >= config.patience
