"""The ablation: one model's recipe taken apart, step by step, on the same folds.

Rows, each adding one thing to the row before, every one fine-tuning the whole network for the base model's
``epochs``:
1. ``baseline``: the whole network trains from the first epoch at one rate with the write-up's optimizer (SGD
   with Nesterov momentum, ``ablation.baseline``), one cosine cycle, no augmentation (eval crops), no label
   smoothing, no TTA, no post-processing.
2. ``two_phase``: head epochs on a frozen backbone first (on cached features they cost next to nothing; through
   the backbone, with MixUp or CutMix, a forward pass each), then the whole network with rates falling by depth
   (and the first stages kept frozen, when the step sets ``freeze_stages``).
3. ``sgdr``: warm restarts in phase 2 (and snapshot averaging when the step turns it on).
4. ``augment``: the augmentation preset (and label smoothing, when the step sets it).
5. ``optimizer``: another optimizer, with its own rate and weight decay (NAdamW by default).
6. ``layer_decay``: layer-wise rate decay in place of the two-phase step's depth groups.
7. ``ema``: an exponential moving average of the weights predicts.
8. ``tta``: test-time augmentation views averaged (predictions of row 7's models).
9. ``clip``: fitted clipping bounds (on row 8's predictions), cross-fitted: each fold's bounds come from the
   other folds' out-of-fold rows, so no fold is scored with bounds fitted on itself.

Rows 1-7 are trained models (ensemble members of their own, named ``ablation-<step>``); rows 8-9 reuse row 7's
models. Light to import (no torch, no scipy): the workflow builds the variants when it loads; the table
is ``ensemble.ablation_table``.
"""

from __future__ import annotations

TRAINED = ("baseline", "two_phase", "sgdr", "augment", "optimizer", "layer_decay", "ema")
STEPS = (*TRAINED, "tta", "clip")
PREFIX = "ablation-"
PLAIN = {"head_epochs": 0, "lr_groups": 1, "lr_ratio": 1.0, "finetune_lr_scale": 1.0, "cycle_epochs": None,
         "cycle_mult": 1.0, "cycle_decay": 1.0, "snapshots": False, "augment": "none", "mixup": 0.0, "cutmix": 0.0,
         "label_smoothing": 0.0, "keep": "last", "patience": 0, "layer_decay": None, "ema": 0.0, "clip_grad": None,
         "freeze_stages": 0}
TWO_PHASE_KEYS = ("head_epochs", "freeze_stages", "lr_groups", "lr_ratio", "finetune_lr_scale")
SGDR_KEYS = ("cycle_epochs", "cycle_mult", "cycle_decay", "snapshots")
AUGMENT_KEYS = ("augment", "label_smoothing", "mixup", "cutmix")
OPTIMIZER_KEYS = ("optimizer", "lr", "momentum", "weight_decay", "warmup_epochs", "clip_grad")


def _checked(step: str, settings: dict, allowed: tuple[str, ...]) -> dict:
    unknown = set(settings) - set(allowed)
    if unknown:
        raise ValueError(f"ablation.{step}: unknown key(s) {sorted(unknown)}; valid: {', '.join(allowed)}")
    return dict(settings)


def variants(base: dict, *, two_phase: dict, sgdr: dict, augment: dict, baseline: dict, optimizer: dict,
             layer_decay: float, ema: float) -> dict[str, dict]:
    """{member name: model settings} of the trained rows, from a model's full settings (defaults filled).

    Every row fine-tunes the whole network for the base model's ``epochs``; the two-phase step adds its head
    epochs on the frozen backbone before them (the budget the default recipe is counted in: ten head epochs on
    cached features cost less than one epoch of the whole network).
    """
    phase = _checked("two_phase", two_phase, TWO_PHASE_KEYS)
    if phase.get("head_epochs", 0) < 1:
        raise ValueError(f"ablation.two_phase.head_epochs must be at least 1 (the step is the frozen head phase), "
                         f"got {phase.get('head_epochs', 0)}")
    rows = {"baseline": {**base, **PLAIN, **_checked("baseline", baseline, OPTIMIZER_KEYS)}}
    rows["two_phase"] = {**rows["baseline"], **phase}
    rows["sgdr"] = {**rows["two_phase"], **_checked("sgdr", sgdr, SGDR_KEYS)}
    rows["augment"] = {**rows["sgdr"], **_checked("augment", augment, AUGMENT_KEYS)}
    rows["optimizer"] = {**rows["augment"], **_checked("optimizer", optimizer, OPTIMIZER_KEYS)}
    rows["layer_decay"] = {**rows["optimizer"], "layer_decay": layer_decay, "lr_groups": 1, "lr_ratio": 1.0}
    rows["ema"] = {**rows["layer_decay"], "ema": ema}
    return {PREFIX + step: settings for step, settings in rows.items()}


def describe(variants_: dict[str, dict], tta: list[str]) -> dict[str, str]:
    """What each step changes, for the table."""
    v = {name.removeprefix(PREFIX): s for name, s in variants_.items()}
    base = v["baseline"]
    two, sg, aug, opt = v["two_phase"], v["sgdr"], v["augment"], v["optimizer"]
    return {
        "baseline": f"{base['backbone']}, {base['epochs']} epochs whole network, {base['optimizer']} lr "
                    f"{base['lr']}, one cosine cycle, no augmentation",
        "two_phase": f"+ {two['head_epochs']} head epochs frozen, then "
                     + (f"the first {two['freeze_stages']} stages kept frozen, " if two["freeze_stages"] else "")
                     + f"{two['lr_groups']} LR groups x {two['lr_ratio']} (scale {two['finetune_lr_scale']})",
        "sgdr": f"+ SGDR cycles of {sg['cycle_epochs']} epochs (x{sg['cycle_mult']})"
                + (", snapshot average" if sg["snapshots"] else ""),
        "augment": f"+ augmentation '{aug['augment']}'" + (f", label smoothing {aug['label_smoothing']}"
                                                             if aug["label_smoothing"] else ""),
        "optimizer": f"+ {opt['optimizer']} lr {opt['lr']}, weight decay {opt['weight_decay']}",
        "layer_decay": f"+ layer decay {v['layer_decay']['layer_decay']} (in place of the LR groups)",
        "ema": f"+ EMA of the weights, decay {v['ema']['ema']}",
        "tta": f"+ TTA {', '.join(tta)}",
        "clip": "+ fitted clip (cross-fitted over folds)",
    }
