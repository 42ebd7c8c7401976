import numpy as np
import pytest
from sklearn.metrics import log_loss

from ensemble.metrics import accuracy, kaggle_log_loss


def _random_probs(n, k, seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k) * 0.5, size=n) + 1e-6  # no exact 0 or 1
    return p / p.sum(axis=1, keepdims=True), rng.integers(0, k, size=n)


@pytest.mark.parametrize("n,k,seed", [(50, 3, 0), (200, 10, 1), (500, 120, 2)])
def test_matches_sklearn_without_exact_zeros(n, k, seed):
    probs, labels = _random_probs(n, k, seed)
    expected = log_loss(labels, probs, labels=list(range(k)))
    assert kaggle_log_loss(probs, labels) == pytest.approx(expected, rel=1e-10)


def test_clips_zero_and_renormalises_like_kaggle():
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    labels = np.array([1, 0])
    # Row 0 clips to [1 - 1e-15, 1e-15], renormalised: p(true) = 1e-15.
    expected = (-np.log(1e-15) - np.log(0.5)) / 2
    assert kaggle_log_loss(probs, labels) == pytest.approx(expected, rel=1e-6)
    # Rows that do not sum to one are renormalised, as Kaggle does.
    assert kaggle_log_loss(np.array([[2.0, 2.0]]), np.array([0])) == pytest.approx(np.log(2))


def test_accuracy_and_shape_errors():
    assert accuracy(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="labels must lie"):
        kaggle_log_loss(np.ones((2, 2)) / 2, np.array([0, 2]))
    with pytest.raises(ValueError, match="expected probs"):
        kaggle_log_loss(np.ones(4), np.array([0]))
