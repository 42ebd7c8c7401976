"""The ablation: one model's recipe taken apart, step by step, on the same folds.

Rows, each adding one thing to the row before (same total epochs throughout):
1. ``baseline``: the whole network trains from the first epoch at one rate, one cosine cycle, no
   augmentation (eval crops), no TTA, no post-processing.
2. ``two_phase``: head epochs on a frozen backbone, then the whole network with rates falling by depth.
3. ``sgdr``: warm restarts in phase 2 (and snapshot averaging when the step turns it on).
4. ``augment``: the augmentation preset.
5. ``tta``: test-time augmentation views averaged (predictions of row 4's models).
6. ``clip``: fitted clipping bounds (on row 5's predictions), cross-fitted: each fold's bounds come from the
   other folds' out-of-fold rows, so no fold is scored with bounds fitted on itself.

Rows 1-4 are trained models (ensemble members of their own, named ``ablation-<step>``); rows 5-6 reuse row 4's
models. Light to import (no torch): the workflow builds the variants when it loads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.blend import class_columns, labels_of
from ensemble.folds import FOLD
from ensemble.metrics import kaggle_log_loss
from ensemble.postprocess import clip_renormalise, fit_clip

TRAINED = ("baseline", "two_phase", "sgdr", "augment")
STEPS = (*TRAINED, "tta", "clip")
PREFIX = "ablation-"
PLAIN = {"head_epochs": 0, "lr_groups": 1, "lr_ratio": 1.0, "finetune_lr_scale": 1.0, "cycle_epochs": None,
         "cycle_mult": 1.0, "cycle_decay": 1.0, "snapshots": False, "augment": "none", "mixup": 0.0, "cutmix": 0.0,
         "label_smoothing": 0.0, "keep": "last", "patience": 0}
TWO_PHASE_KEYS = ("head_epochs", "lr_groups", "lr_ratio", "finetune_lr_scale")
SGDR_KEYS = ("cycle_epochs", "cycle_mult", "cycle_decay", "snapshots")


def _checked(step: str, settings: dict, allowed: tuple[str, ...]) -> dict:
    unknown = set(settings) - set(allowed)
    if unknown:
        raise ValueError(f"ablation.{step}: unknown key(s) {sorted(unknown)}; valid: {', '.join(allowed)}")
    return dict(settings)


def variants(base: dict, *, two_phase: dict, sgdr: dict, augment: str) -> dict[str, dict]:
    """{member name: model settings} of the four trained rows, from a model's full settings (defaults filled).

    Every row trains ``head_epochs + epochs`` of the base model in all; the two-phase step moves its head
    epochs out of phase 2.
    """
    total = base["head_epochs"] + base["epochs"]
    phase = _checked("two_phase", two_phase, TWO_PHASE_KEYS)
    if not 1 <= phase.get("head_epochs", 0) < total:
        raise ValueError(f"ablation.two_phase.head_epochs must be between 1 and {total - 1} (the base model's "
                         f"head_epochs + epochs = {total}), got {phase.get('head_epochs', 0)}")
    rows = {"baseline": {**base, **PLAIN, "epochs": total}}
    rows["two_phase"] = {**rows["baseline"], **phase, "epochs": total - phase["head_epochs"]}
    rows["sgdr"] = {**rows["two_phase"], **_checked("sgdr", sgdr, SGDR_KEYS)}
    rows["augment"] = {**rows["sgdr"], "augment": augment}
    return {PREFIX + step: settings for step, settings in rows.items()}


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
    ``train_seconds[step]``: each fold's training job seconds; ``last_oofs``: the augment step's per-fold OOF
    tables with TTA; ``changes[step]``: what the step changes, in words.
    """
    if sorted(f[FOLD].iloc[0] for f in last_oofs) != list(range(len(last_oofs))):
        raise ValueError("the augment step's OOF tables must be one per fold, in fold order")

    def seconds(step: str, views: str) -> float:
        predict = sum(sum(v for name, v in s["seconds_by_view"].items() if views == "all" or name == "original")
                      for s in scores[step])
        return float(sum(train_seconds[step]) + predict)

    rows = [_row(step, changes[step], [s["log_loss_no_tta"] for s in scores[step]], seconds(step, "original"))
            for step in TRAINED]
    last = TRAINED[-1]
    tta_losses = [s["log_loss"] for s in scores[last]]
    if not np.allclose(tta_losses, _fold_losses(last_oofs), atol=1e-6):
        raise ValueError("the augment step's OOF tables do not match its scores: were they written by the same run?")
    rows.append(_row("tta", changes["tta"], tta_losses, seconds(last, "all")))
    clip_losses, _ = cross_fitted_clip(last_oofs)
    rows.append(_row("clip", changes["clip"], clip_losses, seconds(last, "all")))
    table = pd.DataFrame(rows)
    table.insert(4, "gain_vs_previous", -table["oof_log_loss_mean"].diff())
    return table


def describe(variants_: dict[str, dict], tta: list[str]) -> dict[str, str]:
    """What each step changes, for the table."""
    v = {name.removeprefix(PREFIX): s for name, s in variants_.items()}
    base = v["baseline"]
    two, sg = v["two_phase"], v["sgdr"]
    return {
        "baseline": f"{base['backbone']}, {base['epochs']} epochs whole network, lr {base['lr']}, one cosine "
                    "cycle, no augmentation",
        "two_phase": f"+ {two['head_epochs']} head epochs frozen, then {two['lr_groups']} LR groups x "
                     f"{two['lr_ratio']} (scale {two['finetune_lr_scale']})",
        "sgdr": f"+ SGDR cycles of {sg['cycle_epochs']} epochs (x{sg['cycle_mult']})"
                + (", snapshot average" if sg["snapshots"] else ""),
        "augment": f"+ augmentation '{v['augment']['augment']}'",
        "tta": f"+ TTA {'+'.join(tta)}",
        "clip": "+ fitted clip (cross-fitted over folds)",
    }


def markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, losses to 4 decimals."""
    lines = ["| step | change | OOF log loss (mean +- std over folds) | gain | wall s |", "|---|---|---|---|---|"]
    for r in table.itertuples():
        gain = "" if np.isnan(r.gain_vs_previous) else f"{round(r.gain_vs_previous, 4) or 0.0:+.4f}"
        lines.append(f"| {r.step} | {r.change} | {r.oof_log_loss_mean:.4f} +- {r.oof_log_loss_std:.4f} | {gain} "
                     f"| {r.wall_seconds:.0f} |")
    return "\n".join(lines) + "\n"
