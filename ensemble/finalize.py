"""Post-processing of the blend (``ensemble.combine``): the configured method fitted on out-of-fold rows, and a
table of what each method does to the out-of-fold (and, with a key, test) log loss.

It reads the blend twice: raw, and tempered (each fold softened by its own out-of-fold temperature before
averaging). The per-fold scope post-processes the tempered blend with T = 1 (its temperatures are applied
already); the ensemble scope fits T once on the raw blend's out-of-fold rows."""

from __future__ import annotations

import logging

import pandas as pd

from ensemble.config import POSTPROCESS_METHODS, POSTPROCESS_SCOPES
from ensemble.metrics import kaggle_log_loss
from ensemble.postprocess import clip_renormalise, fit
from ensemble.scoring import score_table
from ensemble.tables import class_columns, labels_of, with_probs

log = logging.getLogger(__name__)


def _row(name: str, oof: pd.DataFrame, test: pd.DataFrame, answers: pd.DataFrame | None, params: dict) -> dict:
    classes = class_columns(oof)
    row = {"method": name, "oof_log_loss": kaggle_log_loss(oof[classes].to_numpy(), labels_of(oof))}
    if answers is not None:
        row["test_log_loss"] = score_table(test, answers)["log_loss"]
    return {**row, **params}


def _fitted(oof, test, method: str, temperature: float | None = None):
    """Fit ``method`` on ``oof`` and apply it to both tables."""
    classes = class_columns(oof)
    fitted = fit(method, oof[classes].to_numpy(), labels_of(oof), temperature)
    return (with_probs(oof, fitted.apply(oof[classes].to_numpy())),
            with_probs(test, fitted.apply(test[classes].to_numpy())), fitted)


CANDIDATES = (  # (label in the table, method, scope)
    ("raw average", "none", "ensemble"),
    ("fitted clip", "clip", "ensemble"),
    ("fitted temperature (ensemble)", "temperature", "ensemble"),
    ("fitted temperature (per fold)", "temperature", "per_fold"),
    ("temperature + clip (ensemble)", "both", "ensemble"),
    ("temperature + clip (per fold)", "both", "per_fold"),
)


def _writeup_bounds(oof: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The write-up's literal bounds 0.01/K and 0.99/K. The ceiling is below a uniform 1/K, so after Kaggle's
    renormalisation it is no ceiling: what remains is a cap of 99 on the ratio of any two probabilities."""
    k = len(class_columns(oof))
    lo, hi = 0.01 / k, 0.99 / k
    clip = lambda t: with_probs(t, clip_renormalise(t[class_columns(t)].to_numpy(), lo, hi))  # noqa: E731
    return clip(oof), clip(test), {"floor": lo, "ceiling": hi}


def finalize(raw: tuple[pd.DataFrame, pd.DataFrame], tempered: tuple[pd.DataFrame, pd.DataFrame],
             fold_temperatures: dict[str, list[float]], weights: dict[str, float], *, method: str, scope: str,
             answers: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict, pd.DataFrame]:
    """(OOF, test, parameters, comparison table) of the configured post-processing.

    ``raw`` and ``tempered`` are the blend's (OOF, test) tables, ``fold_temperatures`` {member: temperatures}
    the ones that made ``tempered``, ``weights`` the blend's {member: weight}, kept in the parameters. The
    table compares every candidate on the same predictions, plus the write-up's literal bounds. Only OOF rows
    are ever used for fitting.
    """
    if method not in POSTPROCESS_METHODS or scope not in POSTPROCESS_SCOPES:
        raise ValueError(f"postprocess.method must be one of {POSTPROCESS_METHODS} and postprocess.scope one of "
                         f"{POSTPROCESS_SCOPES}, got {method!r}, {scope!r}")
    done = {}
    for _, m, s in CANDIDATES:
        per_fold = s == "per_fold" and m in ("temperature", "both")
        done[(m, s)] = _fitted(*(tempered if per_fold else raw), m, 1.0 if per_fold else None)
    rows = [_row(label, *done[(m, s)][:2], answers, done[(m, s)][2].as_dict()) for label, m, s in CANDIDATES]
    bounded_oof, bounded_test, bounds = _writeup_bounds(*raw)
    rows.insert(1, _row("write-up bounds 0.01/K, 0.99/K", bounded_oof, bounded_test, answers, bounds))
    key = (method, "ensemble" if method in ("none", "clip") else scope)
    oof, test, fitted = done[key]
    per_fold = key[1] == "per_fold"
    params = {"method": method, "scope": scope, "weights": weights, **fitted.as_dict(),
              "fold_temperatures": fold_temperatures if per_fold else {}, "oof_log_loss_raw": rows[0]["oof_log_loss"],
              "oof_log_loss": kaggle_log_loss(oof[class_columns(oof)].to_numpy(), labels_of(oof))}
    log.info("post-processing %s (%s): out-of-fold log loss %.4f -> %.4f", method, scope,
             params["oof_log_loss_raw"], params["oof_log_loss"])
    return oof, test, params, pd.DataFrame(rows)
