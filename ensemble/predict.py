"""Predict with one fold's model: out-of-fold probabilities for its validation images, and test probabilities.

Tables are written as CSV a person can open: ``id`` (plus ``breed`` and ``fold`` for out-of-fold rows),
then one probability column per class in submission order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ensemble.cache import ImageCache
from ensemble.data import Images, image_dataset, make_loader, source
from ensemble.device import resolve_precision
from ensemble.folds import FOLD, split
from ensemble.layout import ID, LABEL, Layout
from ensemble.loops import predict_log_probs
from ensemble.metrics import accuracy, kaggle_log_loss
from ensemble.models import build_model
from ensemble.tables import probability_table
from ensemble.transforms import eval_transform, tta_transforms, view_names

log = logging.getLogger(__name__)


def load_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained model from its file; returns (model in eval mode, the saved record)."""
    return model_from_record(torch.load(path, map_location="cpu", weights_only=True), device)


def model_from_record(saved: dict, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained model from its saved record; returns (model in eval mode, the record)."""
    config = saved["config"]
    model = build_model(config["backbone"], n_classes=len(saved["classes"]), hidden=list(config["hidden"]),
                        dropout=config["dropout"], weights="none", image_size=config.get("image_size"))
    model.load_state_dict(saved["model"])
    return model.to(device, memory_format=torch.channels_last).eval(), saved


def predict_files(model, saved: dict, images: Images, *, device: torch.device, workers: int,
                  batch_size: int, transform=None) -> np.ndarray:
    """(N, K) probabilities for images (files or cache rows); by default with the eval transform the model was
    validated with."""
    pre = saved["preprocessing"]
    transform = transform or eval_transform(pre["size"], pre["crop_pct"], pre.get("interpolation", "bilinear"))
    loader = make_loader(image_dataset(images, None, transform), batch_size=batch_size, shuffle=False,
                         workers=workers, device=device)
    dtype = resolve_precision(saved["config"]["precision"], device)
    return predict_log_probs(model, loader, device=device, dtype=dtype).exp().double().numpy()


def predict_views(model, saved: dict, images: Images, states: list[dict], views: list[str],
                  timings: dict[str, float] | None = None, **loader_args) -> dict[str, np.ndarray]:
    """{view: probabilities averaged over the model states} for every TTA view (five_crop gives five);
    ``timings`` (when given) accumulates each view's seconds."""
    pre = saved["preprocessing"]
    transforms = tta_transforms(views, pre["size"], pre["crop_pct"], pre.get("interpolation", "bilinear"))
    out = {name: 0.0 for name in transforms}
    for state in states:
        model.load_state_dict(state)
        for name, transform in transforms.items():
            started = time.perf_counter()
            probs = predict_files(model, saved, images, transform=transform, **loader_args)
            out[name] = out[name] + probs / len(states)
            if timings is not None:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
    return out


def mean_probs(by_view: dict[str, np.ndarray]) -> np.ndarray:
    """TTA: the mean of the views' probabilities (not logits)."""
    return sum(by_view.values()) / len(by_view)


def _test_table(model, saved: dict, images: Images, test_ids: list[str], states: list[dict], tta, args: dict,
                timings: dict[str, float] | None = None):
    probs = mean_probs(predict_views(model, saved, images, states, list(tta), timings, **args))
    return probability_table(test_ids, probs, list(saved["classes"]))


def predict_test(model_path: Path, data_dir: Path, test_ids: list[str], *, device: torch.device, workers: int,
                 batch_size: int, tta: tuple[str, ...] = ("original",), cache: ImageCache | None = None
                 ) -> pd.DataFrame:
    """Test table of one model with no out-of-fold rows (the full-data refit): snapshots and TTA averaged."""
    model, saved = load_model(model_path, device)
    states = [s["model"] for s in saved.get("snapshots") or []] or [saved["model"]]
    test = _test_table(model, saved, source(Layout(Path(data_dir)), cache, "test", test_ids), test_ids, states, tta,
                       {"device": device, "workers": workers, "batch_size": batch_size})
    log.info("%d test rows, %d member(s), TTA %s", len(test), len(states), list(tta))
    return test


def predict_fold(model_path: Path, folds: pd.DataFrame, fold: int, data_dir: Path, test_ids: list[str], *,
                 device: torch.device, workers: int, batch_size: int, tta: tuple[str, ...] = ("original",),
                 cache: ImageCache | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(out-of-fold table, test table, out-of-fold scores) of one fold's model.

    The tables average the model's snapshots (when it kept some) and the TTA views' probabilities. The scores
    hold the out-of-fold log loss as written, without TTA (original view only), and of the final model alone
    without TTA, so that each gain can be read off.
    """
    layout = Layout(Path(data_dir))
    model, saved = load_model(model_path, device)
    classes = list(saved["classes"])
    _, val = split(folds, fold)
    args = {"device": device, "workers": workers, "batch_size": batch_size}
    views = list(dict.fromkeys(["original", *tta]))  # the plain view is always computed, for the comparison
    states = [s["model"] for s in saved.get("snapshots") or []] or [saved["model"]]
    labels = val[LABEL].map({c: i for i, c in enumerate(classes)}).to_numpy()
    val_images = source(layout, cache, "train", val[ID].tolist())
    timings: dict[str, float] = {}
    by_view = predict_views(model, saved, val_images, states, views, timings, **args)
    chosen = mean_probs({v: by_view[v] for v in view_names(list(tta))})
    snapshots = bool(saved.get("snapshots"))  # without them, the final model's plain view is computed already
    final = (predict_views(model, saved, val_images, [saved["model"]], ["original"], **args)["original"]
             if snapshots else by_view["original"])
    scores = {"log_loss": kaggle_log_loss(chosen, labels), "accuracy": accuracy(chosen, labels),
              "log_loss_no_tta": kaggle_log_loss(by_view["original"], labels),
              "log_loss_final_model": kaggle_log_loss(final, labels), "n_members": len(states),
              "tta_views": list(tta), "snapshot_epochs": [s["epoch"] for s in saved.get("snapshots") or []]}
    oof = probability_table(val[ID].tolist(), chosen, classes)
    oof.insert(1, LABEL, val[LABEL].to_numpy())
    oof.insert(2, FOLD, fold)
    test = _test_table(model, saved, source(layout, cache, "test", test_ids), test_ids, states, tta, args, timings)
    scores["seconds_by_view"] = timings  # out-of-fold and test images together
    log.info("fold %d: %d out-of-fold and %d test rows, %d member(s), TTA %s; out-of-fold log loss %.4f "
             "(no TTA %.4f, final model alone %.4f)", fold, len(oof), len(test), len(states), list(tta),
             scores["log_loss"], scores["log_loss_no_tta"], scores["log_loss_final_model"])
    return oof, test, scores
