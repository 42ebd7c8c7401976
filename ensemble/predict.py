"""Predict with one fold's model: out-of-fold probabilities for its validation images, and test probabilities.

Tables are written as CSV a person can open: ``id`` (plus ``breed`` and ``fold`` for out-of-fold rows),
then one probability column per class in submission order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ensemble.data import ImageFiles, make_loader
from ensemble.device import resolve_precision
from ensemble.folds import FOLD, split
from ensemble.layout import ID, LABEL, Layout
from ensemble.loops import predict_log_probs
from ensemble.metrics import accuracy, kaggle_log_loss
from ensemble.models import build_model
from ensemble.transforms import eval_transform

log = logging.getLogger(__name__)


def load_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained model from its file; returns (model in eval mode, the saved record)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = saved["config"]
    model = build_model(config["backbone"], n_classes=len(saved["classes"]), hidden=list(config["hidden"]),
                        dropout=config["dropout"], weights="none")
    model.load_state_dict(saved["model"])
    return model.to(device, memory_format=torch.channels_last).eval(), saved


def predict_files(model, saved: dict, paths: list[Path], *, device: torch.device, workers: int,
                  batch_size: int) -> np.ndarray:
    """(N, K) probabilities for image files, with the eval transform the model was validated with."""
    pre = saved["preprocessing"]
    dataset = ImageFiles(paths, None, eval_transform(pre["size"], pre["mean"], pre["std"], pre["crop_pct"]))
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, workers=workers, device=device)
    dtype = resolve_precision(saved["config"]["precision"], device)
    return predict_log_probs(model, loader, device=device, dtype=dtype).exp().double().numpy()


def probability_table(ids: list[str], probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """id + one column per class."""
    table = pd.DataFrame(probs, columns=classes)
    table.insert(0, ID, ids)
    return table


def predict_members(model, saved: dict, paths: list[Path], states: list[dict], **loader_args) -> np.ndarray:
    """Mean probabilities of the model under each state dict in ``states`` (snapshot averaging)."""
    total = 0.0
    for state in states:
        model.load_state_dict(state)
        total = total + predict_files(model, saved, paths, **loader_args)
    return total / len(states)


def predict_fold(model_path: Path, folds: pd.DataFrame, fold: int, data_dir: Path, test_ids: list[str], *,
                 device: torch.device, workers: int, batch_size: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(out-of-fold table, test table, out-of-fold scores) of one fold's model.

    With snapshots, the tables average the snapshots' probabilities, and the scores hold the out-of-fold log
    loss with and without that averaging.
    """
    layout = Layout(Path(data_dir))
    model, saved = load_model(model_path, device)
    classes = list(saved["classes"])
    _, val = split(folds, fold)
    args = {"device": device, "workers": workers, "batch_size": batch_size}
    val_paths = [layout.train_image(i) for i in val[ID]]
    snapshots = [s["model"] for s in saved.get("snapshots") or []]
    states = snapshots or [saved["model"]]
    labels = val[LABEL].map({c: i for i, c in enumerate(classes)}).to_numpy()
    final = predict_members(model, saved, val_paths, [saved["model"]], **args)
    chosen = predict_members(model, saved, val_paths, snapshots, **args) if snapshots else final
    scores = {"log_loss": kaggle_log_loss(chosen, labels), "accuracy": accuracy(chosen, labels),
              "log_loss_final_model": kaggle_log_loss(final, labels), "n_members": len(states),
              "snapshot_epochs": [s["epoch"] for s in saved.get("snapshots") or []]}
    oof = probability_table(val[ID].tolist(), chosen, classes)
    oof.insert(1, LABEL, val[LABEL].to_numpy())
    oof.insert(2, FOLD, fold)
    test_paths = [layout.test_image(i) for i in test_ids]
    test = probability_table(test_ids, predict_members(model, saved, test_paths, states, **args), classes)
    log.info("fold %d: %d out-of-fold and %d test rows from %d member(s); out-of-fold log loss %.4f (final "
             "model alone %.4f)", fold, len(oof), len(test), len(states), scores["log_loss"],
             scores["log_loss_final_model"])
    return oof, test, scores
