"""Ensemble members: one per (model, seed). Light to import (the workflow uses it when it loads).

A model with one seed is one member named like the model, so its paths stay results/{run}/train/{model}/...;
a model with ``seeds: [0, 1, 2]`` gives members ``{model}-seed0``, ``{model}-seed1``, ``{model}-seed2``, each
trained on every fold with its own out-of-fold predictions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    name: str  # the {model} wildcard
    model: str  # the key under models: in config
    seed: int


def members(models: dict[str, dict], default_seed: int) -> list[Member]:
    """Every (model, seed) member, in config order."""
    out = []
    for name, settings in models.items():
        seeds = settings.get("seeds") or [default_seed]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"models.{name}.seeds has duplicates: {seeds}")
        for seed in seeds:
            out.append(Member(name if len(seeds) == 1 else f"{name}-seed{seed}", name, seed))
    return out


def trained_parts(config: dict) -> list[tuple[Member, list[str]]]:
    """Every member of a run's resolved config, in config order, with the parts it trains: ``fold0`` ..
    ``fold{k-1}``, then ``full`` where its model has a full-data refit."""
    folds = [f"fold{k}" for k in range(config["folds"]["k"])]
    return [(m, folds + (["full"] if config["models"][m.model].get("refit") else []))
            for m in members(config["models"], config["seed"])]
