"""Clipping, the submission file, and a validator that refuses what Kaggle would refuse.

Clipping bounds are probabilities: every value is clipped to [floor, ceiling], then each row is divided by
its sum. Kaggle renormalises rows after its own clipping, so a ceiling below 1/K (the write-up's 0.99/120)
is not a ceiling at all: every large probability is cut to the same value and renormalisation scales it
back up, leaving only a cap on the ratio between probabilities. ``clip_rows`` refuses such bounds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ensemble.config import check_clip
from ensemble.layout import ID

ROW_SUM_TOL = 1e-6


class SubmissionError(ValueError):
    """A submission Kaggle would reject or mis-score; the message says what is wrong."""


def clip_rows(probs: np.ndarray, floor: float, ceiling: float) -> np.ndarray:
    """Clip each probability to [floor, ceiling], then renormalise every row to sum to one."""
    check_clip(floor, ceiling, probs.shape[1])
    clipped = np.clip(np.asarray(probs, dtype=np.float64), floor, ceiling)
    return clipped / clipped.sum(axis=1, keepdims=True)


def make_submission(probs: pd.DataFrame, sample: pd.DataFrame) -> pd.DataFrame:
    """Arrange a probability table (id + class columns) in the sample submission's row and column order."""
    columns = list(sample.columns)
    missing = sorted(set(columns) - set(probs.columns))
    if missing:
        raise SubmissionError(f"probabilities lack submission columns: {missing[:10]}")
    indexed = probs.set_index(ID)
    absent = sorted(set(sample[ID]) - set(indexed.index))
    if absent:
        raise SubmissionError(f"{len(absent)} sample_submission ids have no prediction, e.g. {absent[:5]}")
    return indexed.loc[sample[ID], columns[1:]].reset_index()


def validate_submission(sub: pd.DataFrame, sample: pd.DataFrame) -> None:
    """Raise SubmissionError unless ``sub`` has the sample's ids and columns and valid probability rows."""
    if list(sub.columns) != list(sample.columns):
        extra = sorted(set(sub.columns) - set(sample.columns))
        lacking = sorted(set(sample.columns) - set(sub.columns))
        raise SubmissionError(f"columns differ from sample_submission (extra {extra[:5]}, missing "
                              f"{lacking[:5]}, or a different order); write them in the sample's order")
    ids = sub[ID].astype(str)
    if ids.duplicated().any():
        raise SubmissionError(f"duplicate ids: {ids[ids.duplicated()].unique()[:5].tolist()}")
    if set(ids) != set(sample[ID].astype(str)):
        missing = sorted(set(sample[ID].astype(str)) - set(ids))
        extra = sorted(set(ids) - set(sample[ID].astype(str)))
        raise SubmissionError(f"ids differ from sample_submission: {len(missing)} missing (e.g. {missing[:3]}), "
                              f"{len(extra)} unexpected (e.g. {extra[:3]})")
    values = sub.iloc[:, 1:].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(values).any():
        rows = ids[np.isnan(values).any(axis=1)].tolist()
        raise SubmissionError(f"non-numeric or NaN values in rows {rows[:5]}")
    if (values < 0).any() or (values > 1).any():
        raise SubmissionError(f"values outside [0, 1]: min {values.min():.6g}, max {values.max():.6g}")
    sums = values.sum(axis=1)
    off = np.abs(sums - 1) > ROW_SUM_TOL
    if off.any():
        raise SubmissionError(f"{int(off.sum())} rows do not sum to 1 (e.g. id {ids[off].iloc[0]} sums to "
                              f"{sums[off][0]:.9g}); renormalise the rows")
