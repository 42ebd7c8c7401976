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
models. Light to import (no torch, no scipy): the workflow builds the variants when it loads; the table
is ``ensemble.ablation_table``.
"""

from __future__ import annotations

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
