import numpy as np
import pandas as pd
import pytest

from ensemble.folds import FOLD, assign_folds, split


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    breeds = np.repeat(["a", "b", "c", "d"], [10, 20, 30, 15])
    return pd.DataFrame({"id": [f"{i:04x}" for i in rng.permutation(len(breeds))], "breed": breeds})


@pytest.mark.parametrize("k", [2, 5])
def test_folds_are_disjoint_complete_and_stratified(labels, k):
    folds = assign_folds(labels, k, seed=1)
    assert sorted(folds["id"]) == sorted(labels["id"])  # complete, each id once
    assert set(folds[FOLD]) == set(range(k))
    vals = [set(split(folds, f)[1]["id"]) for f in range(k)]
    assert sum(len(v) for v in vals) == len(labels)
    assert all(not (a & b) for i, a in enumerate(vals) for b in vals[i + 1:])
    counts = folds.groupby(["breed", FOLD]).size().unstack()
    assert (counts.max(axis=1) - counts.min(axis=1) <= 1).all()  # each class spread evenly over folds


def test_folds_depend_on_seed_not_row_order(labels):
    a = assign_folds(labels, 5, seed=1)
    b = assign_folds(labels.sample(frac=1, random_state=3), 5, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not assign_folds(labels, 5, seed=2)[FOLD].equals(a[FOLD])


def test_split_train_and_validation_partition(labels):
    folds = assign_folds(labels, 3, seed=0)
    train, val = split(folds, 1)
    assert (val[FOLD] == 1).all() and (train[FOLD] != 1).all()
    assert len(train) + len(val) == len(labels)
    with pytest.raises(ValueError, match="out of range"):
        split(folds, 3)


def test_bad_k_and_small_classes_are_named(labels):
    with pytest.raises(ValueError, match="at least 2"):
        assign_folds(labels, 1, seed=0)
    with pytest.raises(ValueError, match=r"a \(10\)"):
        assign_folds(labels, 11, seed=0)
