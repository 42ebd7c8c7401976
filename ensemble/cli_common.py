"""Flags shared by several verbs of ``python -m ensemble``: a torch job's runtime, the fold it works on, and
one flag per training hyperparameter (``ensemble.hparams.TrainConfig``, whose defaults they take)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from ensemble.hparams import TrainConfig

log = logging.getLogger("ensemble")
DEFAULT = TrainConfig(backbone="")  # the defaults of every training flag


def boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")
    return text.lower() == "true"


def workers(text: str) -> int | str:
    return text if text == "auto" else int(text)


def add_runtime(p, cache: bool = True) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for this job")
    p.add_argument("--workers", type=workers, default="auto",
                   help="data loader worker processes, or auto (none on the CPU, up to 8 on CUDA)")
    if cache:
        p.add_argument("--cache", type=Path, help="a decode-once cache folder (python -m ensemble cache)")
    p.add_argument("--deterministic", type=boolean, default=False,
                   help="deterministic algorithms (bitwise-reproducible GPU runs, slower)")


def runtime(a):
    """Threads and determinism of a torch job, before any work; returns its device (and resolves
    ``a.workers``)."""
    import torch

    from ensemble.data import loader_workers
    from ensemble.device import resolve_device, set_deterministic

    torch.set_num_threads(max(1, a.threads))
    set_deterministic(a.deterministic)
    device = resolve_device(a.device)
    a.workers = loader_workers(a.workers, device)
    return device


def image_cache(a):
    """The decode-once cache the job reads, or None."""
    from ensemble.cache import ImageCache

    return ImageCache(a.cache) if a.cache else None


def add_fold(p, fold_default: int | None = None, full: bool = False) -> None:
    """The data folder, the folds table and the fold a torch job works on (or, with ``full``, all of them)."""
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--folds", type=Path, required=True)
    group = p.add_mutually_exclusive_group(required=fold_default is None)
    group.add_argument("--fold", type=int, default=fold_default)
    if full:
        group.add_argument("--full", action="store_true", help="every labelled image, no validation set (refit)")


def add_train_config(p) -> None:
    """One flag per TrainConfig field, named as the config key (a test holds the two lists equal)."""
    d = DEFAULT
    p.add_argument("--backbone", required=True)
    p.add_argument("--weights", default=d.weights)
    p.add_argument("--hidden", type=int, nargs="*", default=list(d.hidden))
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--head-epochs", type=int, default=d.head_epochs)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--top-stage-epochs", type=int, default=d.top_stage_epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--finetune-lr-scale", type=float, default=d.finetune_lr_scale)
    p.add_argument("--lr-groups", type=int, default=d.lr_groups)
    p.add_argument("--lr-ratio", type=float, default=d.lr_ratio)
    p.add_argument("--cycle-epochs", type=int, default=d.cycle_epochs)
    p.add_argument("--cycle-mult", type=float, default=d.cycle_mult)
    p.add_argument("--cycle-decay", type=float, default=d.cycle_decay)
    p.add_argument("--snapshots", type=boolean, default=d.snapshots)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--augment", default=d.augment)
    p.add_argument("--mixup", type=float, default=d.mixup)
    p.add_argument("--cutmix", type=float, default=d.cutmix)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--optimizer", default=d.optimizer)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--layer-decay", type=float, default=d.layer_decay)
    p.add_argument("--freeze-stages", type=int, default=d.freeze_stages)
    p.add_argument("--ema", type=float, default=d.ema)
    p.add_argument("--clip-grad", type=float, default=d.clip_grad)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--keep", choices=["last", "best"], default=d.keep)
    p.add_argument("--precision", default=d.precision)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--lr-from", type=Path, help="take lr from this LR finder result (JSON with 'lr')")


def train_config(a) -> TrainConfig:
    """The TrainConfig of the parsed flags, its lr from the LR finder when ``--lr-from`` is given."""
    values = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainConfig)}
    values["hidden"] = tuple(values["hidden"])
    if a.lr_from:
        values["lr"] = json.loads(a.lr_from.read_text())["lr"]
        log.info("lr %.4g from the LR finder (%s)", values["lr"], a.lr_from)
    return TrainConfig(**values)
