"""Verbs of prediction: one fold's out-of-fold and test tables, a refit's test table, and a finished run's
ensemble on a new folder of images."""

from __future__ import annotations

import logging
from pathlib import Path

from ensemble.atomic import write_csv, write_json
from ensemble.cli_common import add_fold, add_runtime, image_cache, runtime
from ensemble.gpus import current_slot
from ensemble.hparams import PREDICT_BATCH_SIZE
from ensemble.layout import read_table

log = logging.getLogger("ensemble")
VERBS = ["predict", "predict_test", "predict_new", "export"]


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="out-of-fold and test probabilities of one fold's model")
    add_fold(p)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=PREDICT_BATCH_SIZE)
    p.add_argument("--tta", nargs="+", default=["original"],
                   help="test-time augmentation views: original, hflip, scale:<factor>, five_crop")
    p.add_argument("--out-oof", type=Path, required=True)
    p.add_argument("--out-test", type=Path, required=True)
    p.add_argument("--out-scores", type=Path, required=True)
    add_runtime(p)


def run_predict(a) -> None:
    from ensemble.layout import Layout, read_sample_ids, read_table
    from ensemble.predict import predict_fold

    device = runtime(a)
    folds = read_table(a.folds)
    oof, test, scores = predict_fold(a.model, folds, a.fold, a.data,
                                     read_sample_ids(Layout(a.data).sample_submission_csv),
                                     device=device, workers=a.workers, batch_size=a.batch_size,
                                     tta=tuple(a.tta), cache=image_cache(a))
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
    add_runtime(p)


def run_predict_test(a) -> None:
    from ensemble.layout import Layout, read_sample_ids
    from ensemble.predict import predict_test

    device = runtime(a)
    test = predict_test(a.model, a.data, read_sample_ids(Layout(a.data).sample_submission_csv),
                        device=device, workers=a.workers, batch_size=a.batch_size, tta=tuple(a.tta),
                        cache=image_cache(a))
    write_csv(test, a.out_test, float_format="%.8g")


def add_predict_new(sub) -> None:
    p = sub.add_parser("predict-new", help="a finished run's ensemble on a new folder of images (no training)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="the run's results folder, e.g. results/demo")
    source.add_argument("--bundle", type=Path, help="a run exported to one file (python -m ensemble export)")
    p.add_argument("--images", type=Path, required=True,
                   help="a folder of images (jpg, jpeg, png, webp; subfolders too): ids are relative paths")
    p.add_argument("--sample", type=Path, help="sample_submission.csv: its ids (files <id>.jpg), order, columns")
    p.add_argument("--batch-size", type=int, default=PREDICT_BATCH_SIZE)
    p.add_argument("--out-probs", type=Path, help="every class's probability, after the run's post-processing")
    p.add_argument("--out-submission", type=Path, help="the same after the run's fixed clip (Kaggle's format)")
    p.add_argument("--out-top", type=Path, help="each image's top-k labels and probabilities: .csv or .json")
    p.add_argument("--top-k", type=int, default=5)
    add_runtime(p, cache=False)


def run_predict_new(a) -> None:
    from ensemble.bundle import from_bundle, from_run
    from ensemble.inference import images_to_predict, predict_new, write_top_k
    from ensemble.submission import make_submission, validate_submission

    if not (a.out_probs or a.out_submission or a.out_top):
        raise ValueError("nothing to write: give --out-probs, --out-submission or --out-top")
    device = runtime(a)
    ids, paths = images_to_predict(a.images, a.sample)
    artifacts = from_bundle(a.bundle) if a.bundle else from_run(a.run)
    probs, sub = predict_new(artifacts, paths, ids, device=device, workers=a.workers, batch_size=a.batch_size)
    if a.sample:
        sample = read_table(a.sample)
        sub = make_submission(sub, sample)
        validate_submission(sub, sample)
    if a.out_probs:
        write_csv(probs, a.out_probs, float_format="%.8g")
    if a.out_submission:
        write_csv(sub, a.out_submission, float_format="%.10g")
    if a.out_top:
        write_top_k(probs, a.top_k, a.out_top)
    log.info("predicted %d images", len(ids))


def add_export(sub) -> None:
    p = sub.add_parser("export", help="a finished run in one file: every fold model, blend and post-processing")
    p.add_argument("run", type=Path, help="the run's results folder, e.g. results/demo")
    p.add_argument("file", type=Path, help="the bundle to write (predict-new --bundle FILE reads it)")


def run_export(a) -> None:
    from ensemble.bundle import export

    held = export(a.run, a.file)
    log.info("wrote %s (%.1f MB): %s", a.file, a.file.stat().st_size / 1e6,
             "; ".join(f"{m}: {', '.join(parts)}" for m, parts in held.items()))
