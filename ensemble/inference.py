"""Predict-only: a finished run's models, blend and post-processing applied to a new folder of images.

Nothing is retrained or refitted: each fold's model and any full-data refit (their snapshots and the run's TTA
views), the per-fold temperatures, the blend weights, the fitted temperature and clip, and the fixed
submission bounds all come from the run: its folder (``results/{run}/``) or its bundle (``ensemble.bundle``).
The new images are decoded as the run's decode-once cache decoded its own, when its models predicted from
one (a TTA zoom then starts from the same pixels). On the run's own test folder this reproduces its
submission."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pandas as pd
import torch

from ensemble.atomic import write_csv, write_json
from ensemble.bundle import Artifacts
from ensemble.cache import cache_images, cache_name, cache_side
from ensemble.combine import MemberFolds, ensemble_test
from ensemble.data import Images
from ensemble.layout import is_hidden, read_sample_ids
from ensemble.postprocess import Fitted
from ensemble.predict import mean_probs, model_from_record, predict_views
from ensemble.submission import clip_rows
from ensemble.tables import class_columns, probabilities, probability_table, with_probs

log = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def images_to_predict(images: Path, sample: Path | None) -> tuple[list[str], list[Path]]:
    """(ids, files) to predict. With a sample submission: its ids, in its order, as ``images/<id>.jpg``.
    Without: every image in ``images`` and its subfolders (jpg, jpeg, png, webp, any case; the OS's
    bookkeeping files and hidden folders skipped), sorted, each id its path relative to ``images``."""
    if not images.is_dir():
        raise FileNotFoundError(f"--images {images} is not a folder")
    if sample is not None:
        ids = read_sample_ids(sample)
        return ids, [images / f"{i}.jpg" for i in ids]
    files = sorted(p for p in images.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(is_hidden(part) for part in p.relative_to(images).parts))
    if not files:
        raise ValueError(f"{images} holds no images to predict ({', '.join(IMAGE_SUFFIXES)}, subfolders too)")
    return [p.relative_to(images).as_posix() for p in files], files


def top_k(probs: pd.DataFrame, k: int) -> list[dict]:
    """Each row's k most probable classes: [{"id", "top": [{"label", "probability"}, ...]}, ...]."""
    classes = class_columns(probs)
    values = probs[classes].to_numpy()
    order = (-values).argsort(axis=1, kind="stable")[:, :k]
    return [{"id": image_id, "top": [{"label": classes[c], "probability": float(row[c])} for c in best]}
            for image_id, row, best in zip(probs["id"], values, order)]


def write_top_k(probs: pd.DataFrame, k: int, path: Path) -> None:
    """``top_k`` as JSON (``.json``), else as a CSV of id, label_1, prob_1, ..., label_k, prob_k."""
    records = top_k(probs, k)
    if path.suffix.lower() == ".json":
        write_json(records, path)
        return
    rows = [{"id": r["id"], **{f"{name}_{j}": value for j, t in enumerate(r["top"], 1)
                               for name, value in (("label", t["label"]), ("prob", t["probability"]))}}
            for r in records]
    write_csv(pd.DataFrame(rows), path, float_format="%.6g")


class _RunsPixels:
    """The new images as the run's models saw theirs: decoded into cache rows of each model's side and resize
    (in a temporary folder) when the run predicted from its decode-once cache, else the files."""

    def __init__(self, paths: list[Path], cached: bool, folder: Path):
        self.paths, self.cached, self.folder, self.rows = paths, cached, folder, {}

    def for_model(self, saved: dict) -> Images:
        if not self.cached:
            return self.paths
        pre = saved["preprocessing"]
        side, interpolation = cache_side(pre["size"], pre["crop_pct"]), pre.get("interpolation", "bilinear")
        key = cache_name(side, interpolation)
        if key not in self.rows:
            self.rows[key] = cache_images(self.paths, self.folder / f"{key}.npy", side, interpolation)
        return self.rows[key]


def _part_tables(artifacts: Artifacts, member: str, parts: list[str], images: _RunsPixels, ids: list[str],
                 loader_args: dict) -> list[pd.DataFrame]:
    """One table per trained part of a member: fold0 .. fold{k-1}, or ``full`` for a refit."""
    tables = []
    for part in parts:
        net, saved = model_from_record(artifacts.record(member, part), loader_args["device"])
        states = [s["model"] for s in saved.get("snapshots") or []] or [saved["model"]]
        probs = mean_probs(predict_views(net, saved, images.for_model(saved), states,
                                         artifacts.config["predict"]["tta"], **loader_args))
        tables.append(probability_table(ids, probs, list(saved["classes"])))
        log.info("%s %s: %d images", member, part, len(ids))
    return tables


def predict_new(artifacts: Artifacts, paths: list[Path], ids: list[str], *, device: torch.device, workers: int,
                batch_size: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(post-processed probabilities, submission after the run's fixed clip) for the image files ``paths``:
    the run's path (``ensemble.combine.ensemble_test``) with its stored temperatures, weights and fits. The
    artifacts come from a run folder or a bundle (``ensemble.bundle``)."""
    config, params = artifacts.config, artifacts.params
    loader_args = {"device": device, "workers": workers, "batch_size": batch_size}
    members = []
    with tempfile.TemporaryDirectory(prefix="ensemble-predict-") as folder:
        images = _RunsPixels(paths, config["train"].get("cache", True), Path(folder))
        for member, folds, refit in artifacts.parts():
            tables = _part_tables(artifacts, member, folds, images, ids, loader_args)
            full = _part_tables(artifacts, member, ["full"], images, ids, loader_args)[0] if refit else None
            members.append(MemberFolds(member, [], tables, full))
    blended = ensemble_test(members, params.get("fold_temperatures", {}),
                            artifacts.blend_weights([m.name for m in members]),
                            pooling=config["blend"].get("pooling", "arithmetic"))  # the only one before the key
    fitted = Fitted(params["temperature"], params["floor"], params["ceiling"])
    probs = with_probs(blended, fitted.apply(probabilities(blended)))
    submission = with_probs(probs, clip_rows(probabilities(probs), config["clip"]["floor"], config["clip"]["ceiling"]))
    return probs, submission
