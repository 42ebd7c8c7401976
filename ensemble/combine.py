"""Fold tables -> member average -> blend: the one path from per-fold predictions to the ensemble's tables.

The DAG's ``average`` rule runs ``average_member`` per member (results/{run}/average/{member}/), the ``blend``
rule runs ``blend_oof``/``blend_test`` (results/{run}/blend/), post-processing fits on the blend's tables,
and predict-new runs the same functions on new images with the temperatures and weights the run stored.

Pooling (``POOLINGS``) is how the probability tables of models that predict the same rows combine: a
member's fold models on test, and the members of the blend (seeds too). ``arithmetic``: the (weighted) mean
of the probabilities, never more confident than its members. ``geometric``: the (weighted) mean of the log
probabilities, renormalised; the same as averaging the models' logits, a product of experts in which a
class that one model rules out stays unlikely.

Each member's tables exist twice: raw, and "tempered", each fold softened by the temperature fitted on its
own out-of-fold rows before pooling (post-processing's per-fold scope). A full-data refit joins the test
pool as one more part; having no out-of-fold rows, it takes the geometric mean of the fold temperatures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ensemble.config import POOLINGS
from ensemble.folds import FOLD
from ensemble.layout import ID, LABEL
from ensemble.metrics import kaggle_log_loss
from ensemble.postprocess import apply_temperature, fit_temperature
from ensemble.tables import class_columns, labels_of, probabilities, with_probs


@dataclass
class MemberFolds:
    """One member's per-fold out-of-fold and test tables, and the test table of its full-data refit if any."""

    name: str
    oofs: list[pd.DataFrame]
    tests: list[pd.DataFrame]
    refit_test: pd.DataFrame | None = None

    @property
    def test_parts(self) -> list[pd.DataFrame]:
        """The test tables averaged: every fold's, then the refit's."""
        return self.tests + ([self.refit_test] if self.refit_test is not None else [])


def equal_weights(n: int) -> list[float]:
    return [1 / n] * n


_TINY = 1e-300  # a probability of exactly 0 (underflow) counts as this in the log


def pool(stack: np.ndarray, weights: list[float], pooling: str) -> np.ndarray:
    """(n, K) probabilities pooled from a (models, n, K) stack with weights summing to one (see the module's
    docstring); each row of the result sums to one."""
    w = np.asarray(weights, dtype=float).reshape(-1, 1, 1)
    if len(w) != len(stack):
        raise ValueError(f"{len(w)} weights for {len(stack)} models")
    if pooling == "arithmetic":
        return (w * stack).sum(axis=0)
    if pooling != "geometric":
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    log_probs = (w * np.log(np.maximum(stack, _TINY))).sum(axis=0)
    probs = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def average_tables(tables: list[pd.DataFrame], weights: list[float] | None = None, *,
                   pooling: str) -> pd.DataFrame:
    """The probability tables of models that predict the same ids and classes pooled (equal weights by
    default), in the row order of the first."""
    first = tables[0]
    classes = class_columns(first)
    weights = equal_weights(len(tables)) if weights is None else weights
    for i, t in enumerate(tables):
        if class_columns(t) != classes or set(t[ID]) != set(first[ID]) or len(t) != len(first):
            raise ValueError(f"member {i} predicts other ids or classes than member 0; were they trained on "
                             "the same data?")
    stack = np.stack([t.set_index(ID).loc[first[ID], classes].to_numpy() for t in tables])
    averaged = pd.DataFrame(pool(stack, weights, pooling), columns=classes)
    averaged.insert(0, ID, first[ID].to_numpy())
    return averaged


def gather_oof(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Out-of-fold tables of all folds as one table sorted by id; each id must appear exactly once."""
    oof = pd.concat(tables, ignore_index=True).sort_values(ID, kind="stable").reset_index(drop=True)
    dup = oof[ID][oof[ID].duplicated()]
    if len(dup):
        raise ValueError(f"ids predicted out-of-fold by more than one fold, e.g. {dup.iloc[:3].tolist()}")
    return oof


def temper(table: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """``table`` softened (T > 1) or sharpened (T < 1) by a temperature."""
    return with_probs(table, apply_temperature(probabilities(table), temperature))


def fold_temperatures(member: MemberFolds) -> list[float]:
    """The temperature of each fold, fitted on its own out-of-fold rows; a refit's is their geometric mean."""
    temperatures = [fit_temperature(probabilities(o), labels_of(o)) for o in member.oofs]
    if member.refit_test is not None:
        temperatures.append(float(np.exp(np.mean(np.log(temperatures)))))
    return temperatures


def average_member(member: MemberFolds, temperatures: list[float] | None = None, *,
                   pooling: str) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """(out-of-fold table or None when there are no OOF tables, pooled test table) of one member, each part
    first tempered by its temperature when ``temperatures`` (one per test part) are given."""
    oofs, tests = member.oofs, member.test_parts
    if temperatures is not None:
        oofs = [temper(o, t) for o, t in zip(oofs, temperatures)]
        tests = [temper(x, t) for x, t in zip(tests, temperatures, strict=True)]
    return (gather_oof(oofs) if oofs else None), average_tables(tests, pooling=pooling)


def blend_oof(oofs: list[pd.DataFrame], weights: list[float], *, pooling: str) -> pd.DataFrame:
    """The members' out-of-fold tables blended, sorted by id, with the first's labels and folds."""
    first = oofs[0].sort_values(ID, kind="stable").reset_index(drop=True)
    oof = average_tables([first, *oofs[1:]], weights, pooling=pooling)
    oof.insert(1, LABEL, first[LABEL].to_numpy())
    oof.insert(2, FOLD, first[FOLD].to_numpy())
    return oof


def blend_test(tests: list[pd.DataFrame], weights: list[float], *, pooling: str) -> pd.DataFrame:
    """The members' test tables blended."""
    return average_tables(tests, weights, pooling=pooling)


def fit_blend_weights(oofs: list[pd.DataFrame], *, pooling: str) -> list[float]:
    """Non-negative weights summing to one that minimise the out-of-fold log loss of the blend, pooled so.

    Weights are a softmax of free parameters, so the constraint holds by construction; L-BFGS on the Kaggle
    log loss. One member: [1.0].
    """
    if len(oofs) == 1:
        return [1.0]
    from scipy.optimize import minimize

    aligned = [t.sort_values(ID, kind="stable") for t in oofs]
    stack = np.stack([probabilities(t) for t in aligned])  # (members, n, K)
    labels = labels_of(aligned[0])

    def loss(params: np.ndarray) -> float:
        w = np.exp(params - params.max())
        return kaggle_log_loss(pool(stack, w / w.sum(), pooling), labels)

    params = minimize(loss, np.zeros(len(oofs)), method="L-BFGS-B").x
    w = np.exp(params - params.max())
    return (w / w.sum()).tolist()


def ensemble_test(members: list[MemberFolds], temperatures: dict[str, list[float]],
                  weights: list[float], *, pooling: str) -> pd.DataFrame:
    """The blended test table of members that have only test tables (predict-new): each member pooled with
    its stored fold temperatures (none: raw), then blended with the stored weights."""
    tests = [average_member(m, temperatures.get(m.name) or None, pooling=pooling)[1] for m in members]
    return blend_test(tests, weights, pooling=pooling)
