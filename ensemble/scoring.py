"""Scores: a submission (or any id + class-probability table) against an answer key, as Kaggle would; an
out-of-fold table per fold and overall; the gain of averaging a model's seed members."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.combine import blend_oof, equal_weights
from ensemble.folds import FOLD
from ensemble.layout import ID, LABEL
from ensemble.metrics import accuracy, kaggle_log_loss
from ensemble.tables import class_columns


def score_table(table: pd.DataFrame, answers: pd.DataFrame) -> dict:
    """Kaggle log loss and accuracy of ``table`` on the ids of ``answers`` (an ``id,breed`` table)."""
    classes = class_columns(table)
    unknown = sorted(set(answers[LABEL]) - set(classes))
    if unknown:
        raise ValueError(f"answer labels that are not prediction columns: {unknown[:5]}")
    indexed = table.set_index(ID)
    missing = sorted(set(answers[ID]) - set(indexed.index))
    if missing:
        raise ValueError(f"{len(missing)} answer-key ids have no prediction, e.g. {missing[:3]}")
    probs = indexed.loc[answers[ID], classes].to_numpy(dtype=float)
    labels = answers[LABEL].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return {"log_loss": kaggle_log_loss(probs, labels), "accuracy": accuracy(probs, labels), "n": len(labels)}


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


def seed_gains(oofs: list[pd.DataFrame], groups: list[str], pooling: str) -> dict:
    """For each model with several seed members: the mean single-seed OOF log loss, the log loss of their
    pool, and the gain (positive: pooling seeds helped)."""
    out = {}
    for group in dict.fromkeys(groups):
        tables = [t for t, g in zip(oofs, groups, strict=True) if g == group]
        if len(tables) < 2:
            continue
        single = [oof_scores(t)["overall"]["log_loss"] for t in tables]
        averaged = oof_scores(blend_oof(tables, equal_weights(len(tables)), pooling=pooling))["overall"]["log_loss"]
        out[group] = {"members": len(tables), "single_seed_log_loss_mean": float(np.mean(single)),
                      "seed_average_log_loss": averaged, "gain": float(np.mean(single)) - averaged}
    return out


def member_scores(oof: pd.DataFrame, fold_scores: list[dict], refit: bool) -> dict:
    """A member's fold average: its out-of-fold scores, the folds' final-model log loss (before snapshot
    averaging), each fold's snapshot count, and whether a refit joined its test average."""
    return {**oof_scores(oof), "fold_log_loss_final_model_mean":
            float(np.mean([f["log_loss_final_model"] for f in fold_scores])),
            "snapshot_members": [f["n_members"] for f in fold_scores], "refit": refit}


def blend_scores(members: list[str], groups: list[str], oofs: list[pd.DataFrame], blended: pd.DataFrame,
                 weights: list[float], weighting: str, pooling: str) -> dict:
    """The blend's weights and pooling, each member's and the blend's out-of-fold scores, and the gain of
    pooling seeds."""
    return {"members": members, "weights": weights, "weighting": weighting, "pooling": pooling,
            "member_scores": {m: oof_scores(t)["overall"] for m, t in zip(members, oofs, strict=True)},
            "seed_averaging": seed_gains(oofs, groups, pooling), **oof_scores(blended)}
