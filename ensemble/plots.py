"""Plots a person would rather look at than read: training curves, reliability before and after
post-processing, the clipping sweep, a confusion matrix and per-class log loss. PNG files, matplotlib (Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ensemble.atomic import atomic_path
from ensemble.postprocess import clip_sweep
from ensemble.tables import class_columns, labels_of


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    _pyplot().close(fig)


def training_curves(histories: dict[str, list[pd.DataFrame]], path: Path) -> None:
    """Train and validation loss per epoch, one panel per model, one line per fold."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(histories), figsize=(6 * len(histories), 4), squeeze=False)
    for ax, (model, folds) in zip(axes[0], histories.items()):
        for k, h in enumerate(folds):
            ax.plot(h["epoch"], h["train_loss"], color=f"C{k}", ls="--", lw=1)
            ax.plot(h["epoch"], h["val_loss"], color=f"C{k}", label=f"fold {k}")
        ax.set(title=f"{model}: train (dashed) and validation loss", xlabel="epoch", ylabel="log loss")
        ax.legend()
    _save(fig, path)


def reliability(before: np.ndarray, after: np.ndarray, labels: np.ndarray, path: Path, bins: int = 10) -> None:
    """Reliability diagram of the top-class probability, before and after post-processing."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", label="perfect calibration")
    for name, probs in (("before", before), ("after", after)):
        conf, hit = probs.max(axis=1), probs.argmax(axis=1) == labels
        edges = np.linspace(0, 1, bins + 1)
        which = np.clip(np.digitize(conf, edges) - 1, 0, bins - 1)
        full = [b for b in range(bins) if (which == b).any()]
        ax.plot([conf[which == b].mean() for b in full], [hit[which == b].mean() for b in full], "o-",
                label=f"{name} post-processing")
    ax.set(xlabel="predicted probability of the top class", ylabel="accuracy", title="Reliability (OOF)")
    ax.legend()
    _save(fig, path)


def clipping_sweep(probs: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """OOF log loss against the clipping floor (no ceiling)."""
    plt = _pyplot()
    floors, losses = clip_sweep(probs, labels)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(floors[1:], losses[1:], "o-")
    ax.axhline(losses[0], color="0.6", ls=":", label="no clipping")
    ax.set_xscale("log")
    ax.set(xlabel="floor", ylabel="OOF log loss", title="Clipping sweep (raw blend, OOF)")
    ax.legend()
    _save(fig, path)


def confusion(probs: np.ndarray, labels: np.ndarray, classes: list[str], path: Path) -> None:
    """Row-normalised confusion matrix of the OOF predictions."""
    plt = _pyplot()
    k = len(classes)
    counts = np.zeros((k, k))
    np.add.at(counts, (labels, probs.argmax(axis=1)), 1)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(5, 0.35 * k)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = range(k) if k <= 40 else []
    ax.set_xticks(list(ticks), [classes[i] for i in ticks], rotation=90, fontsize=7)
    ax.set_yticks(list(ticks), [classes[i] for i in ticks], fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion (OOF, row-normalised)")
    fig.colorbar(image)
    _save(fig, path)


def per_class_log_loss(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Mean -log p(true class) per class (Kaggle's clipping), worst first."""
    p = np.clip(probs, 1e-15, 1 - 1e-15)
    p = p / p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(labels)), labels])
    table = pd.DataFrame({"class": [classes[i] for i in labels], "log_loss": loss})
    table = table.groupby("class")["log_loss"].agg(["mean", "count"]).reset_index()
    return table.rename(columns={"mean": "log_loss", "count": "n"}).sort_values("log_loss", ascending=False)


def per_class_bars(table: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, max(3, 0.25 * len(table))))
    ax.barh(table["class"], table["log_loss"])
    ax.invert_yaxis()
    ax.set(xlabel="OOF log loss", title="Per-class log loss (after post-processing)")
    _save(fig, path)


def all_plots(histories: dict[str, list[pd.DataFrame]], raw_oof: pd.DataFrame, post_oof: pd.DataFrame,
              out: dict[str, Path]) -> None:
    """Every plot of a run, to the paths in ``out`` (keys: curves, reliability, sweep, confusion, per_class,
    per_class_csv)."""
    raw = raw_oof.sort_values("id", kind="stable")
    post = post_oof.sort_values("id", kind="stable")
    classes, labels = class_columns(post), labels_of(post)
    training_curves(histories, out["curves"])
    reliability(raw[classes].to_numpy(), post[classes].to_numpy(), labels, out["reliability"])
    clipping_sweep(raw[classes].to_numpy(), labels, out["sweep"])
    confusion(post[classes].to_numpy(), labels, classes, out["confusion"])
    table = per_class_log_loss(post[classes].to_numpy(), labels, classes)
    with atomic_path(out["per_class_csv"]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.5g")
    per_class_bars(table, out["per_class"])
