"""The last stage before the submission: per-fold or ensemble temperature, blend weights, fitted clipping,
and a table of what each post-processing method does to the out-of-fold (and, with a key, test) log loss."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ensemble.blend import average_tables, blend_models, class_columns, gather_oof, labels_of
from ensemble.metrics import kaggle_log_loss
from ensemble.postprocess import apply_temperature, clip_renormalise, fit, fit_temperature
from ensemble.scoring import score_table

log = logging.getLogger(__name__)
METHODS = ("none", "clip", "temperature", "both")
SCOPES = ("ensemble", "per_fold")


@dataclass
class ModelFolds:
    """One model's per-fold out-of-fold and test tables, and the test table of its full-data refit if any."""

    name: str
    oofs: list[pd.DataFrame]
    tests: list[pd.DataFrame]
    refit_test: pd.DataFrame | None = None


def with_probs(table: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    out = table.copy()
    out[class_columns(table)] = probs
    return out


def combine(models: list[ModelFolds], weights: list[float], per_fold_temperature: bool):
    """(OOF table, test table, fold temperatures): folds averaged per model, then models blended.

    With ``per_fold_temperature`` each fold's test predictions are softened by the temperature fitted on that
    fold's own OOF rows before averaging (its OOF rows too, so that later fits see what test will see). A
    full-data refit joins the test average as one more member; having no OOF rows of its own, it takes the
    geometric mean of its model's fold temperatures.
    """
    oofs, tests, temperatures = [], [], {}
    for model in models:
        fold_oofs = model.oofs
        fold_tests = model.tests + ([model.refit_test] if model.refit_test is not None else [])
        if per_fold_temperature:
            ts = [fit_temperature(o[class_columns(o)].to_numpy(), labels_of(o)) for o in fold_oofs]
            fold_oofs = [with_probs(o, apply_temperature(o[class_columns(o)].to_numpy(), t))
                         for o, t in zip(fold_oofs, ts)]
            if model.refit_test is not None:
                ts = [*ts, float(np.exp(np.mean(np.log(ts))))]
            fold_tests = [with_probs(x, apply_temperature(x[class_columns(x)].to_numpy(), t))
                          for x, t in zip(fold_tests, ts, strict=True)]
            temperatures[model.name] = ts
        oofs.append(gather_oof(fold_oofs))
        tests.append(average_tables(fold_tests))
    oof, test = blend_models(oofs, tests, weights)
    return oof, test, temperatures


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


def finalize(models: list[ModelFolds], weights: list[float], *, method: str, scope: str,
             answers: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict, pd.DataFrame]:
    """(OOF, test, parameters, comparison table) of the configured post-processing.

    The table compares every candidate on the same predictions, plus the write-up's literal bounds. Only OOF
    rows are ever used for fitting. In the per-fold scope the temperature was applied fold by fold, so the
    later fit keeps T = 1 and only clips.
    """
    if method not in METHODS or scope not in SCOPES:
        raise ValueError(f"method must be one of {METHODS} and scope one of {SCOPES}, got {method}, {scope}")
    combined = {False: combine(models, weights, per_fold_temperature=False),
                True: combine(models, weights, per_fold_temperature=True)}
    done = {}
    for _, m, s in CANDIDATES:
        per_fold = s == "per_fold" and m in ("temperature", "both")
        oof, test, _ = combined[per_fold]
        done[(m, s)] = _fitted(oof, test, m, 1.0 if per_fold else None)
    rows = [_row(label, *done[(m, s)][:2], answers, done[(m, s)][2].as_dict()) for label, m, s in CANDIDATES]
    bounded_oof, bounded_test, bounds = _writeup_bounds(*combined[False][:2])
    rows.insert(1, _row("write-up bounds 0.01/K, 0.99/K", bounded_oof, bounded_test, answers, bounds))
    key = (method, "ensemble" if method in ("none", "clip") else scope)
    oof, test, fitted = done[key]
    per_fold = key[1] == "per_fold"
    params = {"method": method, "scope": scope, "weights": weights, **fitted.as_dict(),
              "fold_temperatures": combined[True][2] if per_fold else {}, "oof_log_loss_raw": rows[0]["oof_log_loss"],
              "oof_log_loss": kaggle_log_loss(oof[class_columns(oof)].to_numpy(), labels_of(oof))}
    log.info("post-processing %s (%s): out-of-fold log loss %.4f -> %.4f", method, scope,
             params["oof_log_loss_raw"], params["oof_log_loss"])
    return oof, test, params, pd.DataFrame(rows)
