"""Probability tables: ``id`` (and, out of fold, ``breed`` and ``fold``) plus one column per class."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.folds import FOLD
from ensemble.layout import ID, LABEL


def class_columns(table: pd.DataFrame) -> list[str]:
    """The probability columns of a prediction table."""
    return [c for c in table.columns if c not in (ID, LABEL, FOLD)]


def labels_of(oof: pd.DataFrame) -> np.ndarray:
    """Integer labels of an out-of-fold table, in its class-column order."""
    return oof[LABEL].map({c: i for i, c in enumerate(class_columns(oof))}).to_numpy()


def probabilities(table: pd.DataFrame) -> np.ndarray:
    """The (n, K) probabilities of a table, in its class-column order."""
    return table[class_columns(table)].to_numpy()


def with_probs(table: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """A copy of ``table`` with its class columns replaced by ``probs``."""
    out = table.copy()
    out[class_columns(table)] = probs
    return out


def probability_table(ids: list[str], probs: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """id + one column per class."""
    table = pd.DataFrame(probs, columns=classes)
    table.insert(0, ID, ids)
    return table
