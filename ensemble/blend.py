"""Combine fold predictions: average the test probabilities, gather the out-of-fold table, score it.

Averaging is arithmetic on probabilities (not logits), which is what a log-loss ensemble wants: the mean of
calibrated distributions is a calibrated distribution, and it is never more confident than its members.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.folds import FOLD
from ensemble.layout import ID, LABEL
from ensemble.metrics import accuracy, kaggle_log_loss


def class_columns(table: pd.DataFrame) -> list[str]:
    """The probability columns of a prediction table."""
    return [c for c in table.columns if c not in (ID, LABEL, FOLD)]


def average_tables(tables: list[pd.DataFrame], weights: list[float] | None = None) -> pd.DataFrame:
    """(Weighted) mean probability table over members that predict the same ids and classes, in the row order
    of the first; equal weights by default."""
    first = tables[0]
    classes = class_columns(first)
    weights = [1 / len(tables)] * len(tables) if weights is None else weights
    total = np.zeros((len(first), len(classes)))
    for i, (t, w) in enumerate(zip(tables, weights, strict=True)):
        if class_columns(t) != classes or set(t[ID]) != set(first[ID]) or len(t) != len(first):
            raise ValueError(f"member {i} predicts other ids or classes than member 0; were they trained on "
                             "the same data?")
        total += w * t.set_index(ID).loc[first[ID], classes].to_numpy()
    averaged = pd.DataFrame(total, columns=classes)
    averaged.insert(0, ID, first[ID].to_numpy())
    return averaged


def blend_models(oofs: list[pd.DataFrame], tests: list[pd.DataFrame],
                 weights: list[float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Blend several models' out-of-fold and test tables (equal weights by default; one model: unchanged)."""
    first = oofs[0].sort_values(ID, kind="stable").reset_index(drop=True)
    oof = average_tables([first, *oofs[1:]], weights)
    oof.insert(1, LABEL, first[LABEL].to_numpy())
    oof.insert(2, FOLD, first[FOLD].to_numpy())
    return oof, average_tables(tests, weights)


def labels_of(oof: pd.DataFrame) -> np.ndarray:
    """Integer labels of an out-of-fold table, in its class-column order."""
    return oof[LABEL].map({c: i for i, c in enumerate(class_columns(oof))}).to_numpy()


def fit_blend_weights(oofs: list[pd.DataFrame]) -> list[float]:
    """Non-negative weights summing to one that minimise the out-of-fold log loss of the blend.

    Weights are a softmax of free parameters, so the constraint holds by construction; L-BFGS on the Kaggle
    log loss. One model: [1.0].
    """
    if len(oofs) == 1:
        return [1.0]
    from scipy.optimize import minimize

    aligned = [t.sort_values(ID, kind="stable") for t in oofs]
    classes = class_columns(aligned[0])
    stack = np.stack([t[classes].to_numpy() for t in aligned])  # (models, n, K)
    labels = labels_of(aligned[0])

    def loss(params: np.ndarray) -> float:
        w = np.exp(params - params.max())
        return kaggle_log_loss(np.tensordot(w / w.sum(), stack, axes=1), labels)

    params = minimize(loss, np.zeros(len(oofs)), method="L-BFGS-B").x
    w = np.exp(params - params.max())
    return (w / w.sum()).tolist()


def gather_oof(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Out-of-fold tables of all folds as one table sorted by id; each id must appear exactly once."""
    oof = pd.concat(tables, ignore_index=True).sort_values(ID, kind="stable").reset_index(drop=True)
    dup = oof[ID][oof[ID].duplicated()]
    if len(dup):
        raise ValueError(f"ids predicted out-of-fold by more than one fold, e.g. {dup.iloc[:3].tolist()}")
    return oof


def oof_scores(oof: pd.DataFrame) -> dict:
    """Log loss and accuracy per fold and over all out-of-fold rows."""
    classes = class_columns(oof)
    index = {c: i for i, c in enumerate(classes)}

    def score(rows: pd.DataFrame) -> dict:
        probs, labels = rows[classes].to_numpy(), rows[LABEL].map(index).to_numpy()
        return {"log_loss": kaggle_log_loss(probs, labels), "accuracy": accuracy(probs, labels), "n": len(rows)}

    per_fold = {int(f): score(rows) for f, rows in oof.groupby(FOLD)}
    losses = [s["log_loss"] for s in per_fold.values()]
    return {"overall": score(oof), "per_fold": per_fold,
            "fold_log_loss_mean": float(np.mean(losses)), "fold_log_loss_std": float(np.std(losses))}


def seed_gains(oofs: list[pd.DataFrame], groups: list[str]) -> dict:
    """For each model with several seed members: the mean single-seed OOF log loss, the log loss of their
    average, and the gain (positive: averaging seeds helped)."""
    out = {}
    for group in dict.fromkeys(groups):
        tables = [t for t, g in zip(oofs, groups, strict=True) if g == group]
        if len(tables) < 2:
            continue
        single = [oof_scores(t)["overall"]["log_loss"] for t in tables]
        averaged = oof_scores(blend_models(tables, tables)[0])["overall"]["log_loss"]
        out[group] = {"members": len(tables), "single_seed_log_loss_mean": float(np.mean(single)),
                      "seed_average_log_loss": averaged, "gain": float(np.mean(single)) - averaged}
    return out
