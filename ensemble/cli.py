"""``python -m ensemble VERB ...``: the command line each Snakemake rule calls.

This is the thin translation at the edge: flags become explicit keyword arguments of library functions.
Each verb has ``add_<verb>(subparsers)`` and ``run_<verb>(args)``; nothing below this layer sees ``args``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import pandas as pd
import yaml

from ensemble.atomic import write_csv, write_json, write_text
from ensemble.gpus import current_slot, pinned_gpu
from ensemble.hparams import PREDICT_BATCH_SIZE

log = logging.getLogger("ensemble")


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")
    return text.lower() == "true"


def _runtime(a):
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


def add_demo_data(sub) -> None:
    p = sub.add_parser("demo-data", help="generate the built-in synthetic data set in the Kaggle layout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--test", type=int, default=300)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)


def run_demo_data(a) -> None:
    from ensemble.demo_data import make_demo

    make_demo(a.out, n_classes=a.classes, n_train=a.train, n_test=a.test, size=a.size, seed=a.seed)


def add_check_inputs(sub) -> None:
    p = sub.add_parser("check-inputs", help="check a data set in the Kaggle layout before any training")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--split", choices=["train", "test"], nargs="+", default=["train", "test"])
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--out", type=Path, required=True, help="JSON summary, written only when all checks pass")


def run_check_inputs(a) -> None:
    from ensemble.inputs import check_inputs

    write_json(check_inputs(a.data, a.k, threads=a.threads, splits=tuple(a.split)), a.out)


def add_backbones(sub) -> None:
    p = sub.add_parser("backbones", help="list backbone names with what their weights expect (size, crop, resize)")
    p.add_argument("pattern", nargs="?", default="", help="only names containing this text")
    p.add_argument("--write-table", type=Path, metavar="FILE",
                   help="write the name table from the installed torchvision and timm (for a new timm)")


def run_backbones(a) -> None:
    from ensemble.backbones import get_backbone, names, write_table

    if a.write_table:
        write_table(a.write_table)
        return
    found = [n for n in names() if a.pattern.lower() in n.lower()]
    width = max(map(len, found), default=0)
    for name in found:
        backbone = get_backbone(name)
        pre = backbone.preprocessing()
        print(f"{name:<{width}}  {backbone.source:<11}  {pre.input_size:>4} px  crop {pre.crop_pct:.3f}  "
              f"{pre.interpolation}{'  fixed size' if pre.fixed_input_size else ''}")
    if not found:
        raise ValueError(f"no backbone name contains {a.pattern!r}")


def add_fingerprint(sub) -> None:
    p = sub.add_parser("fingerprint", help="hash every image and table: one digest per split, for the DAG")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--store", type=Path, required=True, help="hashes kept by (path, size, mtime)")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--out-train", type=Path, required=True)
    p.add_argument("--out-test", type=Path, required=True)


def run_fingerprint(a) -> None:
    from ensemble.fingerprint import write_stamps

    write_stamps(a.data, {"train": a.out_train, "test": a.out_test}, a.store, a.threads)


def add_cache(sub) -> None:
    p = sub.add_parser("cache", help="decode every image once into memory-mappable uint8 arrays")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--side", type=int, required=True, help="px of the stored squares")
    p.add_argument("--interpolation", choices=["bilinear", "bicubic"], default="bilinear",
                   help="of the resize, as the backbone's weights expect")
    p.add_argument("--split", choices=["train", "test"], nargs="+", default=["train", "test"])
    p.add_argument("--threads", type=int, default=1, help="decoding processes")
    p.add_argument("--out", type=Path, required=True, help="the cache folder")


def run_cache(a) -> None:
    from ensemble.cache import build_cache

    build_cache(a.data, a.out, a.side, a.threads, splits=tuple(a.split), interpolation=a.interpolation)


def add_folds(sub) -> None:
    p = sub.add_parser("folds", help="assign stratified folds: a table of id, breed, fold")
    p.add_argument("--labels", type=Path, required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)


def run_folds(a) -> None:
    from ensemble.folds import assign_folds
    from ensemble.layout import read_labels

    write_csv(assign_folds(read_labels(a.labels), a.k, a.seed), a.out)


def _workers(text: str) -> int | str:
    return text if text == "auto" else int(text)


def _add_runtime(p, cache: bool = True) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for this job")
    p.add_argument("--workers", type=_workers, default="auto",
                   help="data loader worker processes, or auto (none on the CPU, up to 8 on CUDA)")
    if cache:
        p.add_argument("--cache", type=Path, help="a decode-once cache folder (python -m ensemble cache)")
    p.add_argument("--deterministic", type=_boolean, default=False,
                   help="deterministic algorithms (bitwise-reproducible GPU runs, slower)")


def _add_train_config(p) -> None:
    """One flag per TrainConfig field, typed by its default."""
    from ensemble.hparams import TrainConfig

    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "backbone":
            p.add_argument(flag, required=True)
        elif f.name == "hidden":
            p.add_argument(flag, type=int, nargs="*", default=list(f.default))
        elif isinstance(f.default, bool):
            p.add_argument(flag, type=_boolean, default=f.default)
        else:
            p.add_argument(flag, type=f.metadata.get("type", type(f.default)), default=f.default)
    p.add_argument("--lr-from", type=Path, help="take lr from this LR finder result (JSON with 'lr')")


def _train_config(a):
    from ensemble.hparams import TrainConfig

    values = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainConfig)}
    values["hidden"] = tuple(values["hidden"])
    if a.lr_from:
        values["lr"] = json.loads(a.lr_from.read_text())["lr"]
        log.info("lr %.4g from the LR finder (%s)", values["lr"], a.lr_from)
    return TrainConfig(**values)


def _cache(a):
    from ensemble.cache import ImageCache

    return ImageCache(a.cache) if a.cache else None


def _fold_data(data_dir: Path, folds_csv: Path, fold: int | None, cache=None):
    """One fold's training and validation images (cache rows when there is a cache); ``fold`` None: every
    labelled image, no validation set."""
    from ensemble.data import source
    from ensemble.folds import split
    from ensemble.layout import ID, LABEL, Layout, read_classes, read_table
    from ensemble.train import FoldData

    layout = Layout(data_dir)
    classes = read_classes(layout.sample_submission_csv)
    index = {c: i for i, c in enumerate(classes)}
    table = read_table(folds_csv)
    train, val = split(table, fold) if fold is not None else (table, table.iloc[:0])
    return FoldData(classes, train[ID].tolist(), source(layout, cache, "train", train[ID].tolist()),
                    train[LABEL].map(index).tolist(), source(layout, cache, "train", val[ID].tolist()),
                    val[LABEL].map(index).tolist(), val[ID].tolist())


def _add_fold(p, fold_default: int | None = None, full: bool = False) -> None:
    """The data folder, the folds table and the fold a torch job works on (or, with ``full``, all of them)."""
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--folds", type=Path, required=True)
    group = p.add_mutually_exclusive_group(required=fold_default is None)
    group.add_argument("--fold", type=int, default=fold_default)
    if full:
        group.add_argument("--full", action="store_true", help="every labelled image, no validation set (refit)")


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model on one fold, or on all (resumes from its checkpoint)")
    _add_fold(p, full=True)
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
    _add_runtime(p)
    _add_train_config(p)


def run_train(a) -> None:
    from ensemble.train import train_fold

    device = _runtime(a)
    digest = json.loads(a.data_stamp.read_text())["sha256"] if a.data_stamp else None
    train_fold(_fold_data(a.data, a.folds, None if a.full else a.fold, _cache(a)), _train_config(a),
               device=device, workers=a.workers, checkpoint_path=a.checkpoint, model_path=a.out_model,
               history_path=a.out_history, metrics_path=a.out_metrics, features=a.features, data_digest=digest,
               compile_model=a.compile == "true" or a.compile == "auto" and device.type == "cuda")


def add_features(sub) -> None:
    p = sub.add_parser("features", help="the frozen backbone's features of every labelled image, for all folds")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--views", type=int, required=True, help="augmented views per image")
    p.add_argument("--out", type=Path, required=True)
    _add_runtime(p)
    _add_train_config(p)


def run_features(a) -> None:
    from ensemble.atomic import torch_save
    from ensemble.data import source
    from ensemble.layout import Layout, read_labels
    from ensemble.train import features_for

    device = _runtime(a)
    ids = read_labels(Layout(a.data).labels_csv)["id"].tolist()
    bank = features_for(source(Layout(a.data), _cache(a), "train", ids), ids, _train_config(a), views=a.views,
                        device=device, workers=a.workers)
    torch_save(bank, a.out)


def add_lr_find(sub) -> None:
    p = sub.add_parser("lr-find", help="LR range test on one fold's training images; suggests a base rate")
    _add_fold(p, fold_default=0)
    p.add_argument("--num-steps", type=int, default=100)
    p.add_argument("--out-table", type=Path, required=True)
    p.add_argument("--out-plot", type=Path, required=True)
    p.add_argument("--out-json", type=Path, required=True)
    _add_runtime(p)
    _add_train_config(p)


def run_lr_find(a) -> None:
    from ensemble.atomic import atomic_path
    from ensemble.lr_finder import plot_lr_find
    from ensemble.train import find_lr

    device = _runtime(a)
    config = _train_config(a)
    table, lr = find_lr(_fold_data(a.data, a.folds, a.fold, _cache(a)), config, device=device,
                        workers=a.workers, num_steps=a.num_steps)
    write_csv(table, a.out_table)
    with atomic_path(a.out_plot) as tmp:
        plot_lr_find(table, lr, tmp, title=f"LR range test: {config.backbone}, phase {config.phase(0)}")
    write_json({"lr": lr, "phase": config.phase(0), "steps": len(table), "gpu_slot": current_slot()}, a.out_json)
    log.info("suggested lr %.4g", lr)


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="out-of-fold and test probabilities of one fold's model")
    _add_fold(p)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=PREDICT_BATCH_SIZE)
    p.add_argument("--tta", nargs="+", default=["original"],
                   help="test-time augmentation views: original, hflip, scale:<factor>, five_crop")
    p.add_argument("--out-oof", type=Path, required=True)
    p.add_argument("--out-test", type=Path, required=True)
    p.add_argument("--out-scores", type=Path, required=True)
    _add_runtime(p)


def run_predict(a) -> None:
    from ensemble.layout import Layout, read_sample_ids, read_table
    from ensemble.predict import predict_fold

    device = _runtime(a)
    folds = read_table(a.folds)
    oof, test, scores = predict_fold(a.model, folds, a.fold, a.data,
                                     read_sample_ids(Layout(a.data).sample_submission_csv),
                                     device=device, workers=a.workers, batch_size=a.batch_size,
                                     tta=tuple(a.tta), cache=_cache(a))
    write_csv(oof, a.out_oof, float_format="%.8g")
    write_csv(test, a.out_test, float_format="%.8g")
    write_json({**scores, "gpu_slot": current_slot()}, a.out_scores)


def add_predict_test(sub) -> None:
    p = sub.add_parser("predict-test", help="test probabilities of one model (the full-data refit)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=PREDICT_BATCH_SIZE)
    p.add_argument("--tta", nargs="+", default=["original"], help="test-time augmentation views, as predict")
    p.add_argument("--out-test", type=Path, required=True)
    _add_runtime(p)


def run_predict_test(a) -> None:
    from ensemble.layout import Layout, read_sample_ids
    from ensemble.predict import predict_test

    device = _runtime(a)
    test = predict_test(a.model, a.data, read_sample_ids(Layout(a.data).sample_submission_csv),
                        device=device, workers=a.workers, batch_size=a.batch_size, tta=tuple(a.tta),
                        cache=_cache(a))
    write_csv(test, a.out_test, float_format="%.8g")


def _read_table(path: Path) -> pd.DataFrame:
    from ensemble.layout import read_table

    return read_table(path)


def add_average(sub) -> None:
    p = sub.add_parser("average", help="average fold test probabilities; gather and score out-of-fold ones")
    p.add_argument("--oof", type=Path, nargs="+", required=True)
    p.add_argument("--test", type=Path, nargs="+", required=True)
    p.add_argument("--fold-scores", type=Path, nargs="+", required=True, help="each fold's predict scores")
    p.add_argument("--refit-test", type=Path, help="a full-data refit's test table: one more test member")
    p.add_argument("--out-oof", type=Path, required=True)
    p.add_argument("--out-test", type=Path, required=True)
    p.add_argument("--out-scores", type=Path, required=True)


def run_average(a) -> None:
    from ensemble.blend import average_tables, gather_oof, oof_scores

    oof = gather_oof([_read_table(p) for p in a.oof])
    folds = [json.loads(p.read_text()) for p in a.fold_scores]
    scores = {**oof_scores(oof), "fold_log_loss_final_model_mean":
              sum(f["log_loss_final_model"] for f in folds) / len(folds),
              "snapshot_members": [f["n_members"] for f in folds], "refit": a.refit_test is not None}
    write_csv(oof, a.out_oof, float_format="%.8g")
    tests = [_read_table(p) for p in [*a.test, *([a.refit_test] if a.refit_test else [])]]
    write_csv(average_tables(tests), a.out_test, float_format="%.8g")
    write_json(scores, a.out_scores)
    log.info("out-of-fold log loss %.4f (folds %.4f +- %.4f), accuracy %.3f", scores["overall"]["log_loss"],
             scores["fold_log_loss_mean"], scores["fold_log_loss_std"], scores["overall"]["accuracy"])


def add_blend(sub) -> None:
    p = sub.add_parser("blend", help="blend the models' averaged predictions (equal or fitted weights)")
    p.add_argument("--weights", choices=["equal", "fitted"], default="equal")
    p.add_argument("--groups", nargs="+", help="the model each table belongs to (seed members share one)")
    p.add_argument("--oof", type=Path, nargs="+", required=True)
    p.add_argument("--test", type=Path, nargs="+", required=True)
    p.add_argument("--out-oof", type=Path, required=True)
    p.add_argument("--out-test", type=Path, required=True)
    p.add_argument("--out-scores", type=Path, required=True)


def run_blend(a) -> None:
    from ensemble.blend import blend_models, fit_blend_weights, oof_scores, seed_gains

    oofs = [_read_table(p) for p in a.oof]
    weights = fit_blend_weights(oofs) if a.weights == "fitted" else [1 / len(oofs)] * len(oofs)
    oof, test = blend_models(oofs, [_read_table(p) for p in a.test], weights)
    model_scores = {str(p): oof_scores(t)["overall"] for p, t in zip(a.oof, oofs)}
    scores = {"models": [str(p) for p in a.oof], "weights": weights, "weighting": a.weights,
              "model_scores": model_scores, "seed_averaging": seed_gains(oofs, a.groups or []),
              **oof_scores(oof)}
    write_csv(oof, a.out_oof, float_format="%.8g")
    write_csv(test, a.out_test, float_format="%.8g")
    write_json(scores, a.out_scores)
    log.info("blend of %d model(s): out-of-fold log loss %.4f", len(a.oof), scores["overall"]["log_loss"])


def add_postprocess(sub) -> None:
    p = sub.add_parser("postprocess", help="temperature / clipping fitted on out-of-fold predictions only")
    p.add_argument("--models", nargs="+", required=True, help="model names, in the order of the tables")
    p.add_argument("--oof", type=Path, nargs="+", required=True, help="per-fold OOF tables, model by model")
    p.add_argument("--test", type=Path, nargs="+", required=True, help="per-fold test tables, model by model")
    p.add_argument("--blend-scores", type=Path, required=True, help="the blend's scores.json (its weights)")
    p.add_argument("--refit-models", nargs="*", default=[], help="the models that have a full-data refit")
    p.add_argument("--refit-test", type=Path, nargs="*", default=[], help="their refits' test tables, in order")
    p.add_argument("--method", choices=["none", "clip", "temperature", "both"], required=True)
    p.add_argument("--scope", choices=["ensemble", "per_fold"], required=True)
    p.add_argument("--answers", type=Path, help="optional answer key: adds test log loss to the table")
    p.add_argument("--out-oof", type=Path, required=True)
    p.add_argument("--out-test", type=Path, required=True)
    p.add_argument("--out-params", type=Path, required=True)
    p.add_argument("--out-table", type=Path, required=True)


def run_postprocess(a) -> None:
    from ensemble.finalize import ModelFolds, finalize
    from ensemble.layout import read_labels

    if len(a.oof) != len(a.test) or len(a.oof) % len(a.models):
        raise ValueError("--oof and --test need the same number of tables, k per model")
    if len(a.refit_models) != len(a.refit_test) or not set(a.refit_models) <= set(a.models):
        raise ValueError("--refit-models and --refit-test need one table per model, each one of --models")
    k = len(a.oof) // len(a.models)
    refits = {m: _read_table(p) for m, p in zip(a.refit_models, a.refit_test)}
    models = [ModelFolds(m, [_read_table(p) for p in a.oof[i * k:(i + 1) * k]],
                         [_read_table(p) for p in a.test[i * k:(i + 1) * k]], refits.get(m))
              for i, m in enumerate(a.models)]
    weights = json.loads(a.blend_scores.read_text())["weights"]
    oof, test, params, table = finalize(models, weights, method=a.method, scope=a.scope,
                                        answers=read_labels(a.answers) if a.answers else None)
    write_csv(oof, a.out_oof, float_format="%.8g")
    write_csv(test, a.out_test, float_format="%.8g")
    write_json(params, a.out_params)
    write_csv(table, a.out_table, float_format="%.6g")
    log.info("post-processing table:\n%s", table.to_string(index=False))


def add_plots(sub) -> None:
    p = sub.add_parser("plots", help="training curves, reliability, clipping sweep, confusion, per-class loss")
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--histories", type=Path, nargs="+", required=True, help="history.csv files, model by model")
    p.add_argument("--raw-oof", type=Path, required=True)
    p.add_argument("--post-oof", type=Path, required=True)
    for name in ("curves", "reliability", "sweep", "confusion", "per-class", "per-class-csv"):
        p.add_argument(f"--out-{name}", type=Path, required=True)


def run_plots(a) -> None:
    from ensemble.plots import all_plots

    k = len(a.histories) // len(a.models)
    histories = {m: [pd.read_csv(p) for p in a.histories[i * k:(i + 1) * k]] for i, m in enumerate(a.models)}
    out = {"curves": a.out_curves, "reliability": a.out_reliability, "sweep": a.out_sweep,
           "confusion": a.out_confusion, "per_class": a.out_per_class, "per_class_csv": a.out_per_class_csv}
    all_plots(histories, _read_table(a.raw_oof), _read_table(a.post_oof), out)


def add_submit(sub) -> None:
    p = sub.add_parser("submit", help="clip, renormalise and write a validated submission")
    p.add_argument("--probs", type=Path, required=True)
    p.add_argument("--sample", type=Path, required=True)
    p.add_argument("--floor", type=float, required=True)
    p.add_argument("--ceiling", type=float, required=True)
    p.add_argument("--out", type=Path, required=True)


def run_submit(a) -> None:
    from ensemble.blend import class_columns
    from ensemble.submission import clip_rows, make_submission, validate_submission

    probs, sample = _read_table(a.probs), _read_table(a.sample)
    sub = make_submission(probs, sample)
    classes = class_columns(sub)
    sub[classes] = clip_rows(sub[classes].to_numpy(), a.floor, a.ceiling)
    validate_submission(sub, sample)
    write_csv(sub, a.out, float_format="%.10g")


def add_predict_new(sub) -> None:
    p = sub.add_parser("predict-new", help="a finished run's ensemble on a new folder of images (no training)")
    p.add_argument("--run", type=Path, required=True, help="the run's results folder, e.g. results/demo")
    p.add_argument("--images", type=Path, required=True,
                   help="a folder of images (jpg, jpeg, png, webp; subfolders too): ids are relative paths")
    p.add_argument("--sample", type=Path, help="sample_submission.csv: its ids (files <id>.jpg), order, columns")
    p.add_argument("--batch-size", type=int, default=PREDICT_BATCH_SIZE)
    p.add_argument("--out-probs", type=Path, help="every class's probability, after the run's post-processing")
    p.add_argument("--out-submission", type=Path, help="the same after the run's fixed clip (Kaggle's format)")
    p.add_argument("--out-top", type=Path, help="each image's top-k labels and probabilities: .csv or .json")
    p.add_argument("--top-k", type=int, default=5)
    _add_runtime(p, cache=False)


def run_predict_new(a) -> None:
    from ensemble.inference import images_to_predict, predict_new, write_top_k
    from ensemble.submission import make_submission, validate_submission

    if not (a.out_probs or a.out_submission or a.out_top):
        raise ValueError("nothing to write: give --out-probs, --out-submission or --out-top")
    device = _runtime(a)
    ids, paths = images_to_predict(a.images, a.sample)
    probs, sub = predict_new(a.run, paths, ids, device=device, workers=a.workers, batch_size=a.batch_size)
    if a.sample:
        sample = _read_table(a.sample)
        sub = make_submission(sub, sample)
        validate_submission(sub, sample)
    if a.out_probs:
        write_csv(probs, a.out_probs, float_format="%.8g")
    if a.out_submission:
        write_csv(sub, a.out_submission, float_format="%.10g")
    if a.out_top:
        write_top_k(probs, a.top_k, a.out_top)
    log.info("predicted %d images", len(ids))


def add_leaderboard(sub) -> None:
    p = sub.add_parser("leaderboard", help="every run under results/ with its scores, best CV first")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--out", type=Path, help="also write the table as CSV (default: RESULTS/leaderboard.csv)")


def run_leaderboard(a) -> None:
    from ensemble.leaderboard import leaderboard

    table = leaderboard(a.results)
    write_csv(table, a.out or a.results / "leaderboard.csv", float_format="%.5g")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}") if len(table) else "no finished runs")


def add_validate(sub) -> None:
    p = sub.add_parser("validate", help="check a submission file against sample_submission.csv")
    p.add_argument("submission", type=Path)
    p.add_argument("sample", type=Path)


def run_validate(a) -> None:
    from ensemble.submission import validate_submission

    validate_submission(_read_table(a.submission), _read_table(a.sample))
    log.info("%s is a valid submission", a.submission)


def add_score(sub) -> None:
    p = sub.add_parser("score", help="Kaggle log loss of a submission against an answer key (id,breed)")
    p.add_argument("submission", type=Path)
    p.add_argument("answers", type=Path)
    p.add_argument("--members", type=Path, nargs="*", default=[],
                   help="also score these probability tables (e.g. each fold's test predictions)")
    p.add_argument("--out", type=Path, help="write the scores as JSON here")


def run_score(a) -> None:
    from ensemble.layout import read_labels
    from ensemble.scoring import score_table

    answers = read_labels(a.answers)
    scores = {"submission": score_table(_read_table(a.submission), answers),
              "members": {str(p): score_table(_read_table(p), answers) for p in a.members}}
    if a.out:
        write_json(scores, a.out)
    print(f"log loss {scores['submission']['log_loss']:.5f}  accuracy {scores['submission']['accuracy']:.4f}")
    for path, s in scores["members"].items():
        print(f"  {path}: log loss {s['log_loss']:.5f}  accuracy {s['accuracy']:.4f}")


def add_ablation(sub) -> None:
    p = sub.add_parser("ablation", help="the ablation table from its rows' fold scores and training times")
    p.add_argument("--scores", type=Path, nargs="+", required=True,
                   help="predict scores.json of each trained row's folds, row by row (baseline .. augment)")
    p.add_argument("--train-benchmarks", type=Path, nargs="+", required=True,
                   help="Snakemake benchmark files of the same training jobs, in the same order")
    p.add_argument("--oof", type=Path, nargs="+", required=True, help="the last trained row's OOF tables, by fold")
    p.add_argument("--changes-json", required=True, help="{step: what it changes}")
    p.add_argument("--out-table", type=Path, required=True)
    p.add_argument("--out-markdown", type=Path, required=True)


def run_ablation(a) -> None:
    from ensemble.ablation import TRAINED
    from ensemble.ablation_table import ablation_table, markdown

    k = len(a.oof)
    if len(a.scores) != k * len(TRAINED) or len(a.train_benchmarks) != len(a.scores):
        raise ValueError(f"need {len(TRAINED)} rows x {k} folds of --scores and --train-benchmarks, got "
                         f"{len(a.scores)} and {len(a.train_benchmarks)}")
    scores = {step: [json.loads(p.read_text()) for p in a.scores[i * k:(i + 1) * k]] for i, step in enumerate(TRAINED)}
    seconds = {step: [float(pd.read_csv(p, sep="\t")["s"].iloc[0]) for p in a.train_benchmarks[i * k:(i + 1) * k]]
               for i, step in enumerate(TRAINED)}
    table = ablation_table(scores, seconds, [_read_table(p) for p in a.oof], json.loads(a.changes_json))
    write_csv(table, a.out_table, float_format="%.6g")
    write_text(markdown(table), a.out_markdown)
    log.info("ablation:\n%s", markdown(table))


def add_provenance(sub) -> None:
    p = sub.add_parser("provenance", help="write a run's resolved config and software versions")
    p.add_argument("--config-json", required=True, help="the resolved config, as JSON")
    p.add_argument("--out-config", type=Path, required=True)
    p.add_argument("--out-versions", type=Path, required=True)


def run_provenance(a) -> None:
    from ensemble.provenance import versions

    write_text(yaml.safe_dump(json.loads(a.config_json), sort_keys=False), a.out_config)
    write_json(versions(Path.cwd()), a.out_versions)


VERBS = ["backbones", "demo_data", "fingerprint", "check_inputs", "cache", "folds", "lr_find", "train", "features",
         "predict", "predict_test", "average", "blend", "postprocess", "plots", "submit", "predict_new", "leaderboard",
         "validate", "score", "provenance", "ablation"]


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ensemble", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb in VERBS:
        globals()[f"add_{verb}"](sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ensemble.inputs import InputError
    from ensemble.submission import SubmissionError

    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run = globals()[f"run_{args.verb.replace('-', '_')}"]
    wants_gpu = getattr(args, "device", "cpu") != "cpu"  # train, predict, lr-find unless pinned to the CPU
    try:
        with pinned_gpu() if wants_gpu else contextlib.nullcontext():
            run(args)
    except (InputError, SubmissionError, FileNotFoundError, ValueError) as e:
        if os.environ.get("ENSEMBLE_DEBUG"):
            raise
        log.error("%s", e)
        return 1
    return 0
