"""Verbs of the training stage: one model on one fold (or all labelled images), the frozen backbone's
features, the LR range test."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ensemble.atomic import write_csv, write_json
from ensemble.cli_common import add_fold, add_runtime, add_train_config, image_cache, runtime, train_config
from ensemble.gpus import current_slot

log = logging.getLogger("ensemble")
VERBS = ["lr_find", "train", "features"]


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model on one fold, or on all (resumes from its checkpoint)")
    add_fold(p, full=True)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out-model", type=Path, required=True)
    p.add_argument("--out-history", type=Path, required=True)
    p.add_argument("--out-metrics", type=Path, required=True)
    p.add_argument("--features", type=Path, help="cached features of the frozen backbone (python -m ensemble "
                                                 "features): the head phase trains on them")
    p.add_argument("--data-stamp", type=Path, help="the training split's stamp (python -m ensemble fingerprint): "
                                                   "a checkpoint of other data is never resumed")
    p.add_argument("--compile", choices=["auto", "true", "false"], default="auto",
                   help="torch.compile the training forward pass (auto: on CUDA only); speed only")
    add_runtime(p)
    add_train_config(p)


def run_train(a) -> None:
    from ensemble.data import fold_data
    from ensemble.train import train_fold

    device = runtime(a)
    digest = json.loads(a.data_stamp.read_text())["sha256"] if a.data_stamp else None
    train_fold(fold_data(a.data, a.folds, None if a.full else a.fold, image_cache(a)), train_config(a),
               device=device, workers=a.workers, checkpoint_path=a.checkpoint, model_path=a.out_model,
               history_path=a.out_history, metrics_path=a.out_metrics, features=a.features, data_digest=digest,
               compile_model=a.compile == "true" or a.compile == "auto" and device.type == "cuda")


def add_features(sub) -> None:
    p = sub.add_parser("features", help="the frozen backbone's features of every labelled image, for all folds")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--views", type=int, required=True, help="augmented views per image")
    p.add_argument("--out", type=Path, required=True)
    add_runtime(p)
    add_train_config(p)


def run_features(a) -> None:
    from ensemble.atomic import torch_save
    from ensemble.data import source
    from ensemble.features import features_for
    from ensemble.layout import Layout, read_labels

    device = runtime(a)
    ids = read_labels(Layout(a.data).labels_csv)["id"].tolist()
    bank = features_for(source(Layout(a.data), image_cache(a), "train", ids), ids, train_config(a), views=a.views,
                        device=device, workers=a.workers)
    torch_save(bank, a.out)


def add_lr_find(sub) -> None:
    p = sub.add_parser("lr-find", help="LR range test on one fold's training images; suggests a base rate")
    add_fold(p, fold_default=0)
    p.add_argument("--num-steps", type=int, default=100)
    p.add_argument("--out-table", type=Path, required=True)
    p.add_argument("--out-plot", type=Path, required=True)
    p.add_argument("--out-json", type=Path, required=True)
    add_runtime(p)
    add_train_config(p)


def run_lr_find(a) -> None:
    from ensemble.atomic import atomic_path
    from ensemble.data import fold_data
    from ensemble.lr_finder import find_lr, plot_lr_find

    device = runtime(a)
    config = train_config(a)
    table, lr = find_lr(fold_data(a.data, a.folds, a.fold, image_cache(a)), config, device=device,
                        workers=a.workers, num_steps=a.num_steps)
    write_csv(table, a.out_table)
    with atomic_path(a.out_plot) as tmp:
        plot_lr_find(table, lr, tmp, title=f"LR range test: {config.backbone}, phase {config.phase(0)}")
    write_json({"lr": lr, "phase": config.phase(0), "steps": len(table), "gpu_slot": current_slot()}, a.out_json)
    log.info("suggested lr %.4g", lr)
