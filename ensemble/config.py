"""The workflow's configuration after schema validation: each member's settings with its defaults, the rules
that span several keys (checked once, when the workflow loads), and the policy questions the rules ask.

Defaults have one source each. Snakemake's ``validate()`` fills every key from the schema
(workflow/schemas/config.schema.yaml) except the settings of each entry under ``models:``, a map the schema
cannot fill; those come from ``TrainConfig``, which the command line's flags take too, and a test holds the
schema's and the dataclass's equal. Light to import (no torch, no scipy): common.smk imports it at load.
"""

from __future__ import annotations

import dataclasses

from ensemble import ablation
from ensemble.backbones import get_backbone
from ensemble.hparams import TrainConfig
from ensemble.members import Member, members

POSTPROCESS_METHODS = ("none", "clip", "temperature", "both")
POSTPROCESS_SCOPES = ("ensemble", "per_fold")
POOLINGS = ("arithmetic", "geometric")  # how models' probability tables combine: ensemble.combine.pool
MEMBER_KEYS = {"seeds": None, "refit": False}  # model keys that pick members, not training settings


def model_defaults() -> dict:
    """Every training setting's default, as the config spells it (``backbone`` has none; ``seed`` is the
    run's or the member's)."""
    return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
            for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING and f.name != "seed"}


def member_settings(model: dict, seed: int) -> dict:
    """One member's training settings: its model's, defaults filled in, with the member's seed."""
    settings = {**model_defaults(), **model, "seed": seed}
    for key in MEMBER_KEYS:
        settings.pop(key, None)
    return settings


def ablation_variants(models: dict[str, dict], seed: int, settings: dict) -> dict[str, dict]:
    """{member: settings} of the ablation's trained rows, built from ``settings["model"]`` (else the first
    model); a config the ablation cannot use fails only when the ablation is asked for."""
    name = settings["model"] or next(iter(models))
    if name not in models:
        raise ValueError(f"ablation.model: {name!r} is not one of models: {', '.join(models)}")
    return ablation.variants(member_settings(models[name], seed), two_phase=settings["two_phase"],
                             sgdr=settings["sgdr"], augment=settings["augment"], baseline=settings["baseline"],
                             optimizer=settings["optimizer"], layer_decay=settings["layer_decay"],
                             ema=settings["ema"])


def refit_rule(settings: dict) -> str | None:
    """Why a model with ``refit: true`` cannot train on every labelled image, or None when it can."""
    if settings["keep"] == "best" or settings["patience"] > 0:
        return ("refit trains on every labelled image, with no validation set to choose an epoch by; use keep: "
                "last and patience: 0, or refit: false")
    return None


def check_models(models: dict[str, dict], seed: int) -> list[Member]:
    """The members, after refusing an unknown backbone, an empty schedule, two rates by depth at once or a
    refit that needs a validation set: before any job runs, with the key named."""
    found = members(models, seed)
    names = {m.name for m in found}
    reserved = names & {ablation.PREFIX + step for step in ablation.TRAINED}
    if reserved:
        raise ValueError(f"model names {sorted(reserved)} are reserved for the ablation; rename them")
    for member in found:
        settings, where = member_settings(models[member.model], member.seed), f"models.{member.model}"
        try:
            get_backbone(settings["backbone"])  # the table of names, without importing torch or timm
        except ValueError as e:
            raise ValueError(f"{where}.backbone: {e}") from None
        if settings["layer_decay"] is not None and settings["lr_groups"] > 1:
            raise ValueError(f"{where}: layer_decay and lr_groups > 1 both set rates by depth; use one")
        if settings["head_epochs"] + settings["epochs"] < 1:
            raise ValueError(f"{where}: head_epochs + epochs must be at least 1")
        if settings["top_stage_epochs"] and settings["top_stage_epochs"] >= settings["epochs"]:
            raise ValueError(f"{where}: top_stage_epochs ({settings['top_stage_epochs']}) counts among epochs "
                             f"({settings['epochs']}) and must be fewer, so that the whole network trains too")
        if models[member.model].get("refit") and refit_rule(settings):
            raise ValueError(f"{where}: {refit_rule(settings)}")
    return found


def check_clip(floor: float, ceiling: float, n_classes: int | None) -> None:
    """Fixed clip bounds that make no sense, refused with the reason (K, the number of classes, when known)."""
    if not 0 <= floor < ceiling <= 1:
        raise ValueError(f"clip.floor ({floor}) must be below clip.ceiling ({ceiling}), both in [0, 1] "
                         "(0 <= floor < ceiling <= 1)")
    if not n_classes:
        return
    if floor * n_classes >= 1:
        raise ValueError(f"clip.floor ({floor}) is at least 1/K = 1/{n_classes}: every row would be uniform")
    if ceiling < 1 / n_classes:
        raise ValueError(f"clip.ceiling ({ceiling}) is below 1/K = 1/{n_classes}: after renormalisation it is no "
                         "ceiling (it only caps ratios between probabilities); use a value above 1/K, or 1.0 "
                         "for none")


def uses_features(settings: dict, features: bool) -> bool:
    """Whether a member's head phase trains on cached features (``train.features``): MixUp and CutMix mix
    pixels, so their head phase goes through the backbone."""
    return features and settings["head_epochs"] > 0 and not settings["mixup"] and not settings["cutmix"]


def feature_views(requested: int, head_epochs: int) -> int:
    """Augmented views to cache: ``train.feature_views``, but no more than the head epochs that use them."""
    return min(requested, head_epochs)


def fold_threads(cores: int, jobs: int, index: int) -> int:
    """Threads of the ``index``-th of ``jobs`` training jobs that share ``cores`` locally. The jobs run in
    rounds of ``cores`` jobs, one thread each, so on a CPU the folds train side by side (2 folds on 2 cores:
    20 s side by side vs 27 s in turn) and each job's torch import hides behind another's compute; the jobs of
    the last round share all the cores instead of leaving some idle (5 folds on 2 cores: the 5th fold trains
    on 2 threads; 3 folds on 7 cores: 3, 2 and 2)."""
    last_round = jobs - cores * ((jobs - 1) // cores)
    position = index - (jobs - last_round)
    if position < 0:
        return 1
    return cores // last_round + int(position < cores % last_round)


def tta_views(member: str, tta: list[str], ablation_members: list[str], ablation_tta: list[str]) -> list[str]:
    """The TTA views a member predicts with: the config's; in the ablation, its tta step's views for the last
    trained row (whose plain view is scored too) and the original view alone before it."""
    if member not in ablation_members:
        return tta
    return ablation_tta if member == ablation_members[-1] else ["original"]


def mlflow_settings(mlflow: dict | None) -> dict | None:
    """``tracking.mlflow`` with its defaults (the schema cannot fill them in a key that may be null), or None
    when tracking is off."""
    return None if mlflow is None else {"uri": None, "experiment": "ensemble", **mlflow}
