"""Stratified k-fold assignment: a table of id, label, fold that every later stage reads.

scikit-learn's StratifiedKFold with shuffling and a fixed seed, applied to the rows sorted by id, so the
table depends only on (labels, k, seed), not on the row order of labels.csv: identical on every run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.layout import ID, LABEL

FOLD = "fold"


def assign_folds(labels: pd.DataFrame, k: int, seed: int) -> pd.DataFrame:
    """Return ``labels`` sorted by id with a ``fold`` column in [0, k).

    Raises:
        ValueError: k < 2, or a class with fewer than k images (it could not appear in every fold).
    """
    if k < 2:
        raise ValueError(f"folds.k must be at least 2, got {k}")
    counts = labels[LABEL].value_counts()
    small = counts[counts < k]
    if len(small):
        listed = ", ".join(f"{c} ({n})" for c, n in small.items())
        raise ValueError(f"classes with fewer than k={k} images: {listed}; lower folds.k or add images")
    from sklearn.model_selection import StratifiedKFold  # here: every training job imports this module

    table = labels[[ID, LABEL]].sort_values(ID, kind="stable").reset_index(drop=True)
    fold = np.empty(len(table), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for f, (_, val) in enumerate(splitter.split(np.zeros(len(table)), table[LABEL])):
        fold[val] = f
    table[FOLD] = fold
    return table


def split(folds: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows, validation rows) of one fold."""
    k = int(folds[FOLD].max()) + 1
    if not 0 <= fold < k:
        raise ValueError(f"fold {fold} out of range: the folds table has k={k} (folds 0..{k - 1})")
    val = folds[FOLD] == fold
    return folds[~val].reset_index(drop=True), folds[val].reset_index(drop=True)
