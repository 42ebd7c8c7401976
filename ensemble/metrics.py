"""Multi-class log loss exactly as Kaggle scores Dog Breed Identification.

Kaggle clips every probability to [1e-15, 1 - 1e-15], renormalises each row to sum to one, then averages
-log p(true class) over rows. ``kaggle_log_loss`` does the same, so a local score equals the leaderboard's.
"""

from __future__ import annotations

import numpy as np

KAGGLE_EPS = 1e-15


def kaggle_log_loss(probs: np.ndarray, labels: np.ndarray, eps: float = KAGGLE_EPS) -> float:
    """Mean negative log probability of the true class, after Kaggle's clip and row renormalisation.

    Args:
        probs: (n, K) predicted probabilities (need not sum to one).
        labels: (n,) integer class indices in [0, K).
        eps: clipping bound.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"expected probs (n, K) and labels (n,), got {probs.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must lie in [0, {probs.shape[1]}), got [{labels.min()}, {labels.max()}]")
    p = np.clip(probs, eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(labels)), labels])))


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose most probable class is the true one."""
    return float(np.mean(np.asarray(probs).argmax(axis=1) == np.asarray(labels)))
