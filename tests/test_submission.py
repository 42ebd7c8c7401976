import numpy as np
import pandas as pd
import pytest

from ensemble.submission import SubmissionError, clip_rows, make_submission, validate_submission

CLASSES = ["beagle", "dingo", "samoyed"]


@pytest.fixture
def sample():
    df = pd.DataFrame({"id": ["x1", "x2", "x3"]})
    for c in CLASSES:
        df[c] = 1 / 3
    return df


def _sub(sample, values):
    sub = sample.copy()
    sub[CLASSES] = values
    return sub


def test_clip_rows_bounds_then_renormalises():
    probs = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    out = clip_rows(probs, floor=0.01, ceiling=0.9)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_allclose(out[0], np.array([0.9, 0.01, 0.01]) / 0.92)
    np.testing.assert_allclose(out[1], probs[1])  # inside the bounds: unchanged
    assert (clip_rows(probs, 0.0, 1.0) == probs).all()


@pytest.mark.parametrize("floor,ceiling,message", [
    (0.5, 0.4, "floor < ceiling"), (0.4, 0.9, "uniform"), (0.0, 0.3, "1/K"), (-0.1, 0.9, "0 <= floor")])
def test_clip_rows_refuses_bounds_that_make_no_sense(floor, ceiling, message):
    with pytest.raises(ValueError, match=message):
        clip_rows(np.full((2, 3), 1 / 3), floor, ceiling)


def test_make_submission_follows_sample_order(sample):
    probs = pd.DataFrame({"id": ["x3", "x1", "x2"], "samoyed": [1, 0, 0.5], "beagle": [0, 1, 0.25],
                          "dingo": [0, 0, 0.25]})
    sub = make_submission(probs, sample)
    assert list(sub.columns) == list(sample.columns)
    assert sub["id"].tolist() == ["x1", "x2", "x3"]
    assert sub.loc[2, "samoyed"] == 1
    with pytest.raises(SubmissionError, match="no prediction"):
        make_submission(probs.iloc[:2], sample)


def test_validator_accepts_a_good_submission(sample):
    validate_submission(_sub(sample, [[0.2, 0.3, 0.5]] * 3), sample)


@pytest.mark.parametrize("breaker,message", [
    (lambda s: s[["id", "dingo", "beagle", "samoyed"]], "columns differ"),
    (lambda s: s.drop(columns="dingo"), "columns differ"),
    (lambda s: s.iloc[:2], "ids differ"),
    (lambda s: s.assign(id=["x1", "x1", "x3"]), "duplicate ids"),
    (lambda s: s.assign(id=["x1", "x2", "zz"]), "ids differ"),
    (lambda s: s.assign(beagle=[np.nan, 0.3, 0.3]), "NaN"),
    (lambda s: s.assign(beagle=["a", "0.3", "0.3"]), "NaN"),
    (lambda s: s.assign(beagle=[-0.1, 0.3, 0.3], dingo=[0.6, 0.2, 0.2]), "outside"),
    (lambda s: s.assign(beagle=[0.5, 0.3, 0.3]), "do not sum to 1"),
])
def test_validator_rejects_each_kind_of_bad(sample, breaker, message):
    good = _sub(sample, [[0.3, 0.2, 0.5]] * 3)
    with pytest.raises(SubmissionError, match=message):
        validate_submission(breaker(good), sample)
