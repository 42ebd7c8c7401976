"""Train one model on one fold: the job behind each (member, fold) node of the DAG.

Two phases (``ensemble.finetune``): optionally the head alone on a frozen backbone, then the whole network
with learning rates that fall by depth. Each phase has its own optimizer (any of timm's, by name: SGD with
Nesterov momentum, NAdamW, AdamW, LAMB, ...) and per-batch warmup + cosine schedule; the loss is log-softmax + NLL, a
true multi-class log loss. Optionally gradients are clipped by norm, and an exponential moving average of the
weights (timm's ``ModelEmaV3``, its decay warming up with the step count) is the model that is validated,
snapshotted, kept and predicts. A checkpoint after every epoch lets a killed job resume exactly: randomness
(torch's and Python's) is re-seeded from (seed, epoch) at each epoch start, so a resumed run draws the same
batches and augmentations as one never stopped. The model kept is the last epoch's, or with ``keep='best'``
the epoch of lowest validation loss (then the metrics say its out-of-fold score is optimistic).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import TensorDataset

from ensemble import batch_augment
from ensemble.atomic import torch_save, write_csv, write_json
from ensemble.cache import CacheRows
from ensemble.checkpoint import checkpoint_key, context, load_checkpoint, save_checkpoint
from ensemble.config import refit_rule
from ensemble.data import CachedRows, FoldData, image_dataset, make_loader
from ensemble.device import resolve_precision
from ensemble.features import FeatureBank
from ensemble.gpus import current_slot
from ensemble.hparams import TrainConfig, should_stop
from ensemble.loops import DivergedError, batch_mixer, evaluate, run_epoch
from ensemble.models import build_model, model_preprocessing
from ensemble.optim import make_ema, make_optimizer
from ensemble.progress import Progress, progress_path
from ensemble.tracking import FoldTracker
from ensemble.transforms import eval_transform, train_transform

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """What a checkpoint restores besides the model and optimizer."""

    epoch: int = 0  # epochs completed, over both phases
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # {"epoch", "val_loss", "model"} when keep == "best"
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # [{"epoch", "model"}] at cycle ends


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class FoldRun:
    """The moving parts of one fold's training, so that each step below stays short."""

    def __init__(self, data: FoldData, config: TrainConfig, device: torch.device, workers: int,
                 checkpoint_path: Path | None, features: Path | None = None, data_digest: str | None = None,
                 compile_model: bool = False, device_augment: bool | None = None):
        self.data, self.config, self.device, self.workers = data, config, device, workers
        self.bank = FeatureBank(features) if features and config.head_epochs else None
        if self.bank is not None and (config.mixup or config.cutmix):
            raise ValueError("MixUp and CutMix mix pixels, not features: train the head phase of this model "
                             "through the backbone (no cached features)")
        if self.bank is not None:  # looked up once: every head epoch reads the same rows
            self.feature_rows = (self.bank.rows(data.train_ids), self.bank.rows(data.val_ids))
        self.checkpoint_path, self.pre = checkpoint_path, model_preprocessing(config)
        self.dtype = resolve_precision(config.precision, device)
        if device_augment is None:  # auto: on CUDA, from the cache, for the presets it can do
            device_augment = (device.type == "cuda" and isinstance(data.train_images, CacheRows)
                              and config.augment in batch_augment.SUPPORTED)
        views = len(self.bank.views) if self.bank is not None else 0
        self.key = checkpoint_key(asdict(config), data.classes, data.train_ids, context(
            weights=config.weights, data_digest=data_digest, features=views,
            image_source="cache" if isinstance(data.train_images, CacheRows) else "files",
            precision=str(self.dtype), augment_on="device" if device_augment else "loader"))
        self.resumed = load_checkpoint(checkpoint_path, self.key) if checkpoint_path else None
        torch.manual_seed(config.seed)
        self.model = build_model(config.backbone, n_classes=len(data.classes), hidden=list(config.hidden),
                                 dropout=config.dropout, weights="none" if self.resumed else config.weights,
                                 image_size=config.image_size)
        self.state = TrainState()
        if self.resumed:
            self.model.load_state_dict(self.resumed["model"])
            torch.set_rng_state(self.resumed["rng"])
            self.state = TrainState(self.resumed["epoch"], self.resumed["history"], self.resumed["best"],
                                    self.resumed["snapshots"])
        self.model.to(device, memory_format=torch.channels_last)
        # the training forward pass compiled (speed only: not in the key; the plain model is what is saved)
        backend = os.environ.get("ENSEMBLE_COMPILE_BACKEND", "inductor")  # tests: "eager", dynamo alone
        self.forward = torch.compile(self.model, backend=backend) if compile_model else None
        self.compile_seconds: float | None = None
        self.ema = make_ema(self.model, config.ema, self.resumed)
        pre = self.pre
        self.batch_augment = batch_augment.BatchAugment(pre["size"], config.augment) if device_augment else None
        if self.batch_augment is not None:
            self.train_set = CachedRows(data.train_images, data.train_targets)
        else:
            self.train_set = image_dataset(data.train_images, data.train_targets,
                                           train_transform(pre["size"], pre["crop_pct"], config.augment,
                                                           pre["interpolation"]))
        self.mixer = batch_mixer(config.mixup, config.cutmix, len(data.classes))
        val_set = image_dataset(data.val_images, data.val_targets, eval_transform(pre["size"], pre["crop_pct"],
                                                                                pre["interpolation"]))
        self.val_loader = make_loader(val_set, batch_size=config.batch_size * 2, shuffle=False, workers=workers,
                                      device=device)
        self.drop_last = len(self.train_set) > config.batch_size  # no tiny last batch, which upsets BatchNorm
        self.steps = len(self.train_set) // config.batch_size if self.drop_last else 1
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.phase = self.optimizer = self.schedule = self.tracker = None

    @property
    def predictor(self):
        """The model that is validated, snapshotted, kept and predicts: the EMA of the weights when on."""
        return self.ema.module if self.ema is not None else self.model

    def begin_phase(self, phase: str) -> None:
        self.phase = phase
        self.optimizer, self.schedule = make_optimizer(self.model, self.config, phase, self.steps)
        if self.resumed and self.resumed["phase"] == phase:
            self.optimizer.load_state_dict(self.resumed["optimizer"])
            self.schedule.load_state_dict(self.resumed["schedule"])
            self.scaler.load_state_dict(self.resumed["scaler"])

    def _feature_loaders(self, epoch: int, generator: torch.Generator):
        """(train, validation) loaders of cached features for a head epoch."""
        bank, data, batch = self.bank, self.data, self.config.batch_size
        train_rows, val_rows = self.feature_rows
        train = TensorDataset(bank.train_view(epoch, train_rows), torch.tensor(data.train_targets))
        val = TensorDataset(bank.eval[val_rows], torch.tensor(data.val_targets, dtype=torch.long))
        return (make_loader(train, batch_size=batch, shuffle=True, workers=0, device=self.device,
                            drop_last=self.drop_last, generator=generator),
                make_loader(val, batch_size=batch * 2, shuffle=False, workers=0, device=self.device))

    def run_epoch(self, epoch: int, progress: Progress | None = None) -> dict:
        """Train and validate 0-based ``epoch``; returns its history row."""
        t0, seed = time.perf_counter(), _epoch_seed(self.config.seed, epoch)
        torch.manual_seed(seed)
        random.seed(seed)  # timm's crops draw from Python's generator
        generator = torch.Generator().manual_seed(seed)
        augment_generator = torch.Generator().manual_seed(seed + 7919)  # the device's crops, in batch order
        on_features = self.phase == "head" and self.bank is not None
        if on_features:
            loader, val_loader = self._feature_loaders(epoch, generator)
        else:
            self.train_set.seed = seed  # each sample's augmentation from (seed, epoch, index): workers-proof
            loader = make_loader(self.train_set, batch_size=self.config.batch_size, shuffle=True,
                                 workers=self.workers, device=self.device, drop_last=self.drop_last,
                                 generator=generator)
            val_loader = self.val_loader
        if progress is not None:
            progress.begin_epoch(len(loader))
        lrs = [g["lr"] for g in self.optimizer.param_groups]
        stem = next(self.model.backbone.parameters())  # 0 while it is frozen (the head phase, freeze_stages)
        lr_stem = next((g["lr"] for g in self.optimizer.param_groups if any(p is stem for p in g["params"])), 0.0)
        steps: list[float] = []
        train_loss = run_epoch(self.model, loader, self.optimizer, self.schedule, self.scaler, device=self.device,
                               dtype=self.dtype, frozen_backbone=self.phase == "head", mixer=self.mixer,
                               label_smoothing=self.config.label_smoothing, on_features=on_features,
                               clip_grad=self.config.clip_grad, ema=self.ema, step=epoch * self.steps,
                               forward=self.forward, step_seconds=steps,
                               on_batch=progress.batch if progress is not None else None,
                               augment=None if on_features or self.batch_augment is None else
                               lambda rows, widths, portrait: self.batch_augment(rows, widths, portrait,
                                                                                 augment_generator))
        compiling = 0.0
        if self.forward is not None and not on_features and self.compile_seconds is None and len(steps) > 1:
            compiling = max(0.0, steps[0] - sorted(steps[1:])[len(steps[1:]) // 2])  # first step - a typical one
            self.compile_seconds = compiling
            log.info("torch.compile: %.1f s in the first step, reported apart from the epoch time", compiling)
        val_loss, val_acc = evaluate(self.predictor, val_loader, self.data.val_targets, device=self.device,
                                      dtype=self.dtype, on_features=on_features)
        return {"epoch": epoch + 1, "phase": self.phase, "train_loss": train_loss, "val_loss": val_loss,
                "val_accuracy": val_acc, "lr": lrs[0], "lr_stem": lr_stem,
                "seconds": time.perf_counter() - t0 - compiling,
                "on_features": on_features}

    def record(self, row: dict) -> None:
        """Add an epoch's row, keep best and snapshot models as configured, then checkpoint."""
        state, config = self.state, self.config
        state.epoch = row["epoch"]
        state.history.append(row)
        if config.keep == "best" and (state.best is None or row["val_loss"] < state.best["val_loss"]):
            state.best = {"epoch": row["epoch"], "val_loss": row["val_loss"], "model": _snapshot(self.predictor)}
        if config.snapshots and row["epoch"] in config.cycle_ends():
            state.snapshots.append({"epoch": row["epoch"], "model": _snapshot(self.predictor)})
        save_checkpoint(self.checkpoint_path, {
            "key": self.key, "epoch": state.epoch, "phase": self.phase, "history": state.history,
            "best": state.best, "snapshots": state.snapshots, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": torch.get_rng_state(), "config": asdict(config),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "mlflow_run_id": self.tracker.run_id if self.tracker is not None else None})
        log.info("epoch %d/%d (%s)  train loss %.4f  val loss %.4f  val acc %.3f  lr %.4g  %.1fs", row["epoch"],
                 config.total_epochs, row["phase"], row["train_loss"], row["val_loss"], row["val_accuracy"],
                 row["lr"], row["seconds"])


def train_fold(data: FoldData, config: TrainConfig, *, device: torch.device, workers: int,
               checkpoint_path: Path, model_path: Path, history_path: Path, metrics_path: Path,
               features: Path | None = None, data_digest: str | None = None, compile_model: bool = False,
               device_augment: bool | None = None) -> dict:
    """Train (or resume) one fold's model and write its model file, history table and metrics; with
    ``features`` (``ensemble.features``) the head phase trains on the frozen backbone's cached features.
    ``data_digest`` (of the training split, ``ensemble.fingerprint``) joins the checkpoint's key;
    ``compile_model`` compiles the training forward pass (speed only); ``device_augment`` crops and flips
    whole batches on the device (``ensemble.batch_augment``; None: on CUDA when the cache can feed it)."""
    if config.total_epochs < 1:
        raise ValueError("head_epochs + epochs must be at least 1")
    if not len(data.val_images) and refit_rule(asdict(config)):
        raise ValueError(refit_rule(asdict(config)))
    started = time.perf_counter()
    progress = Progress(progress_path(checkpoint_path), epochs=config.total_epochs)  # for `ensemble status`
    try:
        run = FoldRun(data, config, device, workers, checkpoint_path, features, data_digest, compile_model,
                       device_augment)
        run.tracker = progress.tracker = FoldTracker.of_checkpoint(
            checkpoint_path, (run.resumed or {}).get("mlflow_run_id"), asdict(config))
        progress.start(run.state.epoch, run.state.history)
        _epochs(run, progress, model_path)
        metrics = _finish(run, started, {"checkpoint": checkpoint_path, "model": model_path,
                                         "history": history_path, "metrics": metrics_path})
    except Exception as e:
        progress.failed(e)
        raise
    progress.done(metrics)
    return metrics


def _epochs(run: FoldRun, progress: Progress, model_path: Path) -> None:
    """Train the epochs a (resumed) run has left, checkpointing after each, until done or stopped early."""
    config = run.config
    stopped = should_stop(config, run.state.history)
    for epoch in range(run.state.epoch, 0 if stopped else config.total_epochs):
        if config.phase(epoch) != run.phase:
            run.begin_phase(config.phase(epoch))
        try:
            row = run.run_epoch(epoch, progress)
        except DivergedError as e:
            kept = f"the checkpoint of epoch {run.state.epoch} is kept" if run.state.epoch else "nothing to keep"
            raise DivergedError(f"{model_path.parent} diverged in epoch {epoch + 1}/{config.total_epochs}: {e} "
                                f"({kept}). Lower lr, set clip_grad (e.g. 1.0) or precision: fp32, then "
                                "rerun") from e
        progress.epoch(row, [*run.state.history, row])  # before the checkpoint: a resumed job skips no epoch
        run.record(row)
        if should_stop(config, run.state.history):
            log.info("early stopping after epoch %d: no better validation loss for %d judgement(s)", epoch + 1,
                     config.patience)
            break


def _finish(run: FoldRun, started: float, paths: dict[str, Path]) -> dict:
    """Write the kept model, the history and the metrics, then drop the checkpoint they supersede."""
    state, config = run.state, run.config
    kept, weights = state.history[-1], _snapshot(run.predictor)
    if config.keep == "best" and state.best is not None:
        kept, weights = state.history[state.best["epoch"] - 1], state.best["model"]
    torch_save({"model": weights, "config": asdict(config), "classes": run.data.classes,
                "preprocessing": run.pre, "epoch": kept["epoch"], "snapshots": state.snapshots}, paths["model"])
    write_csv(pd.DataFrame(state.history), paths["history"])
    finite = lambda v: v if v == v else None  # noqa: E731 (NaN, a refit's missing validation score: null)
    metrics = {"val_log_loss": finite(kept["val_loss"]), "val_accuracy": finite(kept["val_accuracy"]),
               "train_images": len(run.data.train_images), "val_images": len(run.data.val_images),
               "image_source": "cache" if isinstance(run.data.train_images, CacheRows) else "files",
               "epoch_kept": kept["epoch"], "epochs_run": state.epoch, "epochs": config.total_epochs,
               "early_stopped": state.epoch < config.total_epochs, "keep": config.keep,
               "optimistic": config.keep == "best" or config.patience > 0,
               "snapshot_epochs": [s["epoch"] for s in state.snapshots], "device": str(run.device),
               "precision": str(run.dtype).removeprefix("torch.") if run.dtype else "fp32",
               "threads": torch.get_num_threads(), "gpu_slot": current_slot(), "compiled": run.forward is not None,
               "augment_on": "device" if run.batch_augment is not None else "loader",
               "compile_seconds": run.compile_seconds,
               "seconds": time.perf_counter() - started}
    write_json(metrics, paths["metrics"])
    paths["checkpoint"].unlink(missing_ok=True)
    return metrics
