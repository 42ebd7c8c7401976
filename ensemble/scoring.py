"""Score a submission (or any id + class-probability table) against an answer key, as Kaggle would."""

from __future__ import annotations

import pandas as pd

from ensemble.blend import class_columns
from ensemble.layout import ID, LABEL
from ensemble.metrics import accuracy, kaggle_log_loss


def score_table(table: pd.DataFrame, answers: pd.DataFrame) -> dict:
    """Kaggle log loss and accuracy of ``table`` on the ids of ``answers`` (an ``id,breed`` table)."""
    classes = class_columns(table)
    unknown = sorted(set(answers[LABEL]) - set(classes))
    if unknown:
        raise ValueError(f"answer labels that are not prediction columns: {unknown[:5]}")
    indexed = table.set_index(ID)
    missing = sorted(set(answers[ID]) - set(indexed.index))
    if missing:
        raise ValueError(f"{len(missing)} answer-key ids have no prediction, e.g. {missing[:3]}")
    probs = indexed.loc[answers[ID], classes].to_numpy(dtype=float)
    labels = answers[LABEL].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return {"log_loss": kaggle_log_loss(probs, labels), "accuracy": accuracy(probs, labels), "n": len(labels)}
