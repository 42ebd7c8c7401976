"""The ablation's table (``ensemble.ablation`` builds its rows): out-of-fold log loss per step, mean and
std over folds, gain over the row before, wall time; and the cross-fitted clip of its last row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.ablation import TRAINED
from ensemble.folds import FOLD
from ensemble.metrics import kaggle_log_loss
from ensemble.postprocess import clip_renormalise, fit_clip
from ensemble.tables import class_columns, labels_of


def _fold_losses(oofs: list[pd.DataFrame], transform=None) -> list[float]:
    losses = []
    for i, oof in enumerate(oofs):
        probs = oof[class_columns(oof)].to_numpy()
        if transform is not None:
            probs = transform(i, probs)
        losses.append(kaggle_log_loss(probs, labels_of(oof)))
    return losses


def cross_fitted_clip(oofs: list[pd.DataFrame]) -> tuple[list[float], list[tuple[float, float]]]:
    """(fold log losses, fold bounds): fold i clipped with bounds fitted on the other folds' OOF rows."""
    bounds = []
    for i in range(len(oofs)):
        rest = pd.concat([o for j, o in enumerate(oofs) if j != i])
        bounds.append(fit_clip(rest[class_columns(rest)].to_numpy(), labels_of(rest)))
    return _fold_losses(oofs, lambda i, p: clip_renormalise(p, *bounds[i])), bounds


def _row(step: str, change: str, losses: list[float], seconds: float) -> dict:
    return {"step": step, "change": change, "oof_log_loss_mean": float(np.mean(losses)),
            "oof_log_loss_std": float(np.std(losses)), "folds": len(losses), "wall_seconds": seconds}


def ablation_table(scores: dict[str, list[dict]], train_seconds: dict[str, list[float]], last_oofs: list[pd.DataFrame],
                   changes: dict[str, str]) -> pd.DataFrame:
    """The table: per step, out-of-fold log loss (mean and std over folds), its change from the row before,
    and wall time (the step's k training jobs plus the predictions it uses).

    ``scores[step]``: each fold's predict scores (``log_loss_no_tta``, ``log_loss``, ``seconds_by_view``);
    ``train_seconds[step]``: each fold's training job seconds; ``last_oofs``: the last trained step's per-fold OOF
    tables with TTA; ``changes[step]``: what the step changes, in words.
    """
    if sorted(f[FOLD].iloc[0] for f in last_oofs) != list(range(len(last_oofs))):
        raise ValueError("the last trained step's OOF tables must be one per fold, in fold order")

    def seconds(step: str, views: str) -> float:
        predict = sum(sum(v for name, v in s["seconds_by_view"].items() if views == "all" or name == "original")
                      for s in scores[step])
        return float(sum(train_seconds[step]) + predict)

    rows = [_row(step, changes[step], [s["log_loss_no_tta"] for s in scores[step]], seconds(step, "original"))
            for step in TRAINED]
    last = TRAINED[-1]
    tta_losses = [s["log_loss"] for s in scores[last]]
    if not np.allclose(tta_losses, _fold_losses(last_oofs), atol=1e-6):
        raise ValueError("the last trained step's OOF tables do not match its scores: were they written by the same "
                         "run?")
    rows.append(_row("tta", changes["tta"], tta_losses, seconds(last, "all")))
    clip_losses, _ = cross_fitted_clip(last_oofs)
    rows.append(_row("clip", changes["clip"], clip_losses, seconds(last, "all")))
    table = pd.DataFrame(rows)
    table.insert(4, "gain_vs_previous", -table["oof_log_loss_mean"].diff())
    return table


def markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, losses to 4 decimals."""
    lines = ["| step | change | OOF log loss (mean +- std over folds) | gain | wall s |", "|---|---|---|---|---|"]
    for r in table.itertuples():
        gain = "" if np.isnan(r.gain_vs_previous) else f"{round(r.gain_vs_previous, 4) or 0.0:+.4f}"
        lines.append(f"| {r.step} | {r.change} | {r.oof_log_loss_mean:.4f} +- {r.oof_log_loss_std:.4f} | {gain} "
                     f"| {r.wall_seconds:.0f} |")
    return "\n".join(lines) + "\n"
