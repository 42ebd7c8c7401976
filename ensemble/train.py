"""Train one model on one fold: the job behind each (model, fold) node of the DAG.

Two phases (``ensemble.finetune``): optionally the head alone on a frozen backbone, then the whole network
with learning rates that fall by depth. Each phase has its own SGD (Nesterov) optimizer and per-batch warmup +
cosine schedule; the loss is log-softmax + NLL, a true multi-class log loss. A checkpoint after every epoch
lets a killed job resume exactly: randomness is re-seeded from (seed, epoch) at each epoch start, so a
resumed run draws the same batches and augmentations as one never stopped. The model kept is the last
epoch's, or with ``keep='best'`` the epoch of lowest validation loss (then the metrics say its out-of-fold
score is optimistic).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from ensemble.atomic import torch_save, write_csv, write_json
from ensemble.backbones import get_backbone
from ensemble.checkpoint import checkpoint_key, load_checkpoint, save_checkpoint
from ensemble.data import ImageFiles, make_loader
from ensemble.device import resolve_precision
from ensemble.finetune import freeze_backbone, param_groups
from ensemble.hparams import TrainConfig
from ensemble.loops import predict_log_probs, run_epoch
from ensemble.models import build_model
from ensemble.schedule import WarmupCosine
from ensemble.transforms import eval_transform, train_transform

log = logging.getLogger(__name__)


@dataclass
class FoldData:
    """Image files and integer targets of one fold's training and validation sets."""

    classes: list[str]
    train_ids: list[str]
    train_paths: list[Path]
    train_targets: list[int]
    val_paths: list[Path]
    val_targets: list[int]


@dataclass
class TrainState:
    """What a checkpoint restores besides the model and optimizer."""

    epoch: int = 0  # epochs completed, over both phases
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # {"epoch", "val_loss", "model"} when keep == "best"


def preprocessing(config: TrainConfig) -> dict:
    """The backbone's normalisation and eval crop, at the configured size (or the backbone's own)."""
    pre = get_backbone(config.backbone).preprocessing()
    return {"mean": list(pre.mean), "std": list(pre.std), "size": config.image_size or pre.input_size,
            "crop_pct": pre.crop_pct}


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def _make_optimizer(model, config: TrainConfig, phase: str, steps_per_epoch: int):
    """(optimizer, schedule) of one phase: the head alone, or every parameter in depth groups."""
    freeze_backbone(model, phase == "head")
    if phase == "head":
        groups, epochs = [{"params": list(model.head.parameters()), "lr": config.lr}], config.head_epochs
    else:
        groups = param_groups(model, lr=config.lr * config.finetune_lr_scale, n_groups=config.lr_groups,
                              ratio=config.lr_ratio)
        epochs = config.epochs
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)
    warmup = int(config.warmup_epochs * steps_per_epoch)
    return optimizer, WarmupCosine(optimizer, steps_per_epoch * epochs, min(warmup, steps_per_epoch * epochs - 1))


def _evaluate(model, loader, targets: list[int], *, device, dtype) -> tuple[float, float]:
    logp = predict_log_probs(model, loader, device=device, dtype=dtype)
    y = torch.tensor(targets)
    return F.nll_loss(logp, y).item(), (logp.argmax(1) == y).float().mean().item()


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_fold(data: FoldData, config: TrainConfig, *, device: torch.device, workers: int,
               checkpoint_path: Path, model_path: Path, history_path: Path, metrics_path: Path) -> dict:
    """Train (or resume) one fold's model and write its model file, history table and metrics."""
    if config.total_epochs < 1:
        raise ValueError("head_epochs + epochs must be at least 1")
    started, pre = time.perf_counter(), preprocessing(config)
    dtype = resolve_precision(config.precision, device)
    key = checkpoint_key(asdict(config), data.classes, data.train_ids)
    resumed = load_checkpoint(checkpoint_path, key)
    torch.manual_seed(config.seed)
    model = build_model(config.backbone, n_classes=len(data.classes), hidden=list(config.hidden),
                        dropout=config.dropout, weights="none" if resumed else config.weights)
    state = TrainState()
    if resumed:
        model.load_state_dict(resumed["model"])
        torch.set_rng_state(resumed["rng"])
        state = TrainState(resumed["epoch"], resumed["history"], resumed["best"])
    model.to(device, memory_format=torch.channels_last)
    train_set = ImageFiles(data.train_paths, data.train_targets, train_transform(pre["size"], pre["mean"], pre["std"]))
    val_loader = make_loader(
        ImageFiles(data.val_paths, data.val_targets, eval_transform(pre["size"], pre["mean"], pre["std"],
                                                                    pre["crop_pct"])),
        batch_size=config.batch_size * 2, shuffle=False, workers=workers, device=device)
    drop_last = len(train_set) > config.batch_size  # no tiny last batch, which upsets BatchNorm
    steps = len(train_set) // config.batch_size if drop_last else 1
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    phase = optimizer = schedule = None
    for epoch in range(state.epoch, config.total_epochs):
        if config.phase(epoch) != phase:
            phase = config.phase(epoch)
            optimizer, schedule = _make_optimizer(model, config, phase, steps)
            if resumed and resumed["phase"] == phase:
                optimizer.load_state_dict(resumed["optimizer"])
                schedule.load_state_dict(resumed["schedule"])
                scaler.load_state_dict(resumed["scaler"])
        t0 = time.perf_counter()
        torch.manual_seed(_epoch_seed(config.seed, epoch))
        loader = make_loader(train_set, batch_size=config.batch_size, shuffle=True, workers=workers,
                             device=device, drop_last=drop_last,
                             generator=torch.Generator().manual_seed(_epoch_seed(config.seed, epoch)))
        lrs = [g["lr"] for g in optimizer.param_groups]
        train_loss = run_epoch(model, loader, optimizer, schedule, scaler, device=device, dtype=dtype,
                               frozen_backbone=phase == "head")
        val_loss, val_acc = _evaluate(model, val_loader, data.val_targets, device=device, dtype=dtype)
        state.epoch = epoch + 1
        state.history.append({"epoch": epoch + 1, "phase": phase, "train_loss": train_loss, "val_loss": val_loss,
                              "val_accuracy": val_acc, "lr": lrs[0], "lr_stem": lrs[-1],
                              "seconds": time.perf_counter() - t0})
        if config.keep == "best" and (state.best is None or val_loss < state.best["val_loss"]):
            state.best = {"epoch": epoch + 1, "val_loss": val_loss, "model": _snapshot(model)}
        save_checkpoint(checkpoint_path, {
            "key": key, "epoch": state.epoch, "phase": phase, "history": state.history, "best": state.best,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(), "rng": torch.get_rng_state(), "config": asdict(config)})
        log.info("epoch %d/%d (%s)  train loss %.4f  val loss %.4f  val acc %.3f  lr %.4g  %.1fs", epoch + 1,
                 config.total_epochs, phase, train_loss, val_loss, val_acc, lrs[0], time.perf_counter() - t0)
    return _finish(model, state, config, data, pre, dtype, device, started,
                   {"checkpoint": checkpoint_path, "model": model_path, "history": history_path,
                    "metrics": metrics_path})


def _finish(model, state: TrainState, config: TrainConfig, data: FoldData, pre: dict, dtype, device,
            started: float, paths: dict[str, Path]) -> dict:
    """Write the kept model, the history and the metrics, then drop the checkpoint they supersede."""
    kept, weights = state.history[-1], _snapshot(model)
    if config.keep == "best" and state.best is not None:
        kept, weights = state.history[state.best["epoch"] - 1], state.best["model"]
    torch_save({"model": weights, "config": asdict(config), "classes": data.classes, "preprocessing": pre,
                "epoch": kept["epoch"]}, paths["model"])
    write_csv(pd.DataFrame(state.history), paths["history"])
    metrics = {"val_log_loss": kept["val_loss"], "val_accuracy": kept["val_accuracy"],
               "epoch_kept": kept["epoch"], "epochs": config.total_epochs, "keep": config.keep,
               "optimistic": config.keep == "best", "device": str(device),
               "precision": str(dtype).removeprefix("torch.") if dtype else "fp32",
               "threads": torch.get_num_threads(), "seconds": time.perf_counter() - started}
    write_json(metrics, paths["metrics"])
    paths["checkpoint"].unlink(missing_ok=True)
    return metrics
