"""Post-processing fitted on out-of-fold (OOF) predictions only, never on test.

- Temperature scaling (Guo et al., On Calibration of Modern Neural Networks, arXiv:1706.04599): probabilities
  p become softmax(log p / T); T > 1 softens over-confident predictions. T minimises the Kaggle log loss.
- Clipping: every probability into [floor, ceiling], rows renormalised (as Kaggle does after its own clip);
  floor and ceiling chosen on a grid to minimise the Kaggle log loss.

OOF rows come from single models, test rows from a pool of k models (``ensemble.combine.pool``), which is
less confident when it is their arithmetic mean. So one T fitted on all the OOF rows need not suit the pool.
``scope`` chooses where T is fitted: ``ensemble`` (once, on all the OOF rows, applied after pooling) or
``per_fold`` (on each fold's OOF, applied to that fold's test predictions before pooling).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from ensemble.config import POSTPROCESS_METHODS
from ensemble.metrics import kaggle_log_loss

FLOORS = np.concatenate([[0.0], np.logspace(-6, -1, 31)])
CEILING_GAPS = np.concatenate([[0.0], np.logspace(-6, -0.3, 31)])  # ceiling = 1 - gap


@dataclass(frozen=True)
class Fitted:
    """The fitted parameters of one method; identity where a step is off."""

    temperature: float = 1.0
    floor: float = 0.0
    ceiling: float = 1.0

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return clip_renormalise(apply_temperature(probs, self.temperature), self.floor, self.ceiling)

    def as_dict(self) -> dict:
        return asdict(self)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), row-wise; T = 1 returns the (renormalised) input."""
    logp = np.log(np.clip(probs, 1e-300, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def clip_renormalise(probs: np.ndarray, floor: float, ceiling: float) -> np.ndarray:
    """Clip into [floor, ceiling] and renormalise rows, with no checks (the write-up's bounds included)."""
    clipped = np.clip(probs, floor, ceiling)
    return clipped / clipped.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the Kaggle log loss of ``apply_temperature(probs, T)``."""
    result = minimize_scalar(lambda log_t: kaggle_log_loss(apply_temperature(probs, np.exp(log_t)), labels),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def fit_clip(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(floor, ceiling) on a log-spaced grid minimising the Kaggle log loss; the ceiling stays above 1/K."""
    k = probs.shape[1]
    best = (np.inf, 0.0, 1.0)
    for gap in CEILING_GAPS:
        ceiling = 1 - gap
        if ceiling <= 1 / k:
            continue
        for floor in FLOORS[FLOORS * k < 1]:
            loss = kaggle_log_loss(clip_renormalise(probs, floor, ceiling), labels)
            if loss < best[0] - 1e-12:
                best = (loss, float(floor), float(ceiling))
    return best[1], best[2]


def fit(method: str, probs: np.ndarray, labels: np.ndarray, temperature: float | None = None) -> Fitted:
    """Fit ``method`` (none | clip | temperature | both) on OOF probabilities and labels.

    ``temperature`` given: use it instead of fitting one (per-fold temperatures were applied already: 1.0).
    """
    if method not in POSTPROCESS_METHODS:
        raise ValueError(f"postprocess method must be none, clip, temperature or both, got {method!r}")
    t = 1.0
    if method in ("temperature", "both"):
        t = fit_temperature(probs, labels) if temperature is None else temperature
    floor, ceiling = 0.0, 1.0
    if method in ("clip", "both"):
        floor, ceiling = fit_clip(apply_temperature(probs, t), labels)
    return Fitted(t, floor, ceiling)


def clip_sweep(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(floors, OOF log loss at each floor with no ceiling), for the clipping-sweep plot."""
    floors = FLOORS[FLOORS * probs.shape[1] < 1]
    return floors, np.array([kaggle_log_loss(clip_renormalise(probs, f, 1.0), labels) for f in floors])
