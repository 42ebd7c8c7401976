"""Train one model on one fold: the job behind each (model, fold) node of the DAG.

SGD (Nesterov) with a per-batch warmup + cosine schedule, log-softmax + NLL loss (a true multi-class log
loss), a checkpoint after every epoch from which a killed job resumes exactly. Randomness is re-seeded from
(seed, epoch) at the start of every epoch, so a resumed run draws the same batches and augmentations as one
never stopped. The model kept is the last epoch's, or with ``keep='best'`` the epoch of lowest validation
loss (whose out-of-fold score is then optimistic, and the metrics say so).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ensemble.atomic import torch_save, write_csv, write_json
from ensemble.checkpoint import checkpoint_key, load_checkpoint, save_checkpoint
from ensemble.data import ImageFiles, make_loader
from ensemble.device import resolve_precision
from ensemble.hparams import TrainConfig
from ensemble.models import build_model, get_backbone
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
    """What a checkpoint restores."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # {"epoch", "val_loss", "model"} when keep == "best"


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def run_epoch(model, loader, optimizer, schedule, *, device, dtype, scaler) -> float:
    """One pass over ``loader`` with optimizer steps; returns the mean training loss."""
    model.train()
    total, n = 0.0, 0
    for x, y in tqdm(loader, desc="train", leave=False, mininterval=30):
        x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with _autocast(device, dtype):
            logits = model(x)
        loss = F.nll_loss(F.log_softmax(logits.float(), dim=1), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        total += loss.item() * len(y)
        n += len(y)
    return total / max(n, 1)


@torch.no_grad()
def predict_log_probs(model, loader, *, device, dtype) -> torch.Tensor:
    """(N, K) log-probabilities, in loader order, computed in fp32 from the logits."""
    model.eval()
    out = []
    for x, _ in tqdm(loader, desc="predict", leave=False, mininterval=30):
        x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
        with _autocast(device, dtype):
            logits = model(x)
        out.append(F.log_softmax(logits.float(), dim=1).cpu())
    return torch.cat(out) if out else torch.empty(0)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _evaluate(model, loader, targets: list[int], *, device, dtype) -> tuple[float, float]:
    logp = predict_log_probs(model, loader, device=device, dtype=dtype)
    y = torch.tensor(targets)
    return F.nll_loss(logp, y).item(), (logp.argmax(1) == y).float().mean().item()


def _restore(state: dict, model, optimizer, schedule, scaler) -> TrainState:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    return TrainState(epoch=state["epoch"], history=state["history"], best=state["best"])


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train_fold(data: FoldData, config: TrainConfig, *, device: torch.device, workers: int,
               checkpoint_path: Path, model_path: Path, history_path: Path, metrics_path: Path) -> dict:
    """Train (or resume) one fold's model and write its model file, history table and metrics."""
    started = time.perf_counter()
    spec = get_backbone(config.backbone)
    dtype = resolve_precision(config.precision, device)
    key = checkpoint_key(asdict(config), data.classes, data.train_ids)
    resumed = load_checkpoint(checkpoint_path, key)
    torch.manual_seed(config.seed)
    model = build_model(config.backbone, n_classes=len(data.classes), hidden=list(config.hidden),
                        dropout=config.dropout, weights="none" if resumed else config.weights)
    model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)
    train_set = ImageFiles(data.train_paths, data.train_targets,
                           train_transform(config.image_size, spec.mean, spec.std))
    drop_last = len(train_set) > config.batch_size  # no tiny last batch, which upsets BatchNorm
    steps = len(train_set) // config.batch_size if drop_last else 1
    schedule = WarmupCosine(optimizer, steps * config.epochs, int(config.warmup_epochs * steps))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    state = _restore(resumed, model, optimizer, schedule, scaler) if resumed else TrainState()
    val_loader = make_loader(ImageFiles(data.val_paths, data.val_targets,
                                        eval_transform(config.image_size, spec.mean, spec.std)),
                             batch_size=config.batch_size * 2, shuffle=False, workers=workers, device=device)
    for epoch in range(state.epoch, config.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(_epoch_seed(config.seed, epoch))
        loader = make_loader(train_set, batch_size=config.batch_size, shuffle=True, workers=workers,
                             device=device, drop_last=drop_last,
                             generator=torch.Generator().manual_seed(_epoch_seed(config.seed, epoch)))
        lr = optimizer.param_groups[0]["lr"]
        train_loss = run_epoch(model, loader, optimizer, schedule, device=device, dtype=dtype, scaler=scaler)
        val_loss, val_acc = _evaluate(model, val_loader, data.val_targets, device=device, dtype=dtype)
        state.epoch = epoch + 1
        state.history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                              "val_accuracy": val_acc, "lr": lr, "seconds": time.perf_counter() - t0})
        if config.keep == "best" and (state.best is None or val_loss < state.best["val_loss"]):
            state.best = {"epoch": epoch + 1, "val_loss": val_loss, "model": _snapshot(model)}
        save_checkpoint(checkpoint_path, {
            "key": key, "epoch": state.epoch, "history": state.history, "best": state.best,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(), "rng": torch.get_rng_state(), "config": asdict(config)})
        log.info("epoch %d/%d  train loss %.4f  val loss %.4f  val acc %.3f  lr %.4g  %.1fs", epoch + 1,
                 config.epochs, train_loss, val_loss, val_acc, lr, time.perf_counter() - t0)
    return _finish(model, state, config, data, dtype, device, started, checkpoint_path, model_path,
                   history_path, metrics_path)


def _finish(model, state: TrainState, config: TrainConfig, data: FoldData, dtype, device, started: float,
            checkpoint_path: Path, model_path: Path, history_path: Path, metrics_path: Path) -> dict:
    """Write the kept model, the history and the metrics, then drop the checkpoint they supersede."""
    kept = state.history[-1]
    weights = _snapshot(model)
    if config.keep == "best" and state.best is not None:
        kept = state.history[state.best["epoch"] - 1]
        weights = state.best["model"]
    torch_save({"model": weights, "config": asdict(config), "classes": data.classes,
                "epoch": kept["epoch"]}, model_path)
    write_csv(pd.DataFrame(state.history), history_path)
    metrics = {"val_log_loss": kept["val_loss"], "val_accuracy": kept["val_accuracy"],
               "epoch_kept": kept["epoch"], "epochs": config.epochs, "keep": config.keep,
               "optimistic": config.keep == "best", "device": str(device),
               "precision": str(dtype).removeprefix("torch.") if dtype else "fp32",
               "threads": torch.get_num_threads(), "seconds": time.perf_counter() - started}
    write_json(metrics, metrics_path)
    checkpoint_path.unlink(missing_ok=True)
    return metrics
