"""Post-processing fitted on constructed cases whose optimum is known."""

import numpy as np
import pandas as pd
import pytest

from ensemble.combine import (
    MemberFolds,
    average_member,
    blend_oof,
    blend_test,
    fit_blend_weights,
    fold_temperatures,
    pool,
)
from ensemble.finalize import finalize
from ensemble.metrics import kaggle_log_loss
from ensemble.postprocess import apply_temperature, clip_renormalise, fit, fit_clip, fit_temperature


def _calibrated(n=4000, k=5, seed=0):
    """Labels drawn from the predicted distributions: these probabilities are calibrated (T* = 1)."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k) * 0.3, size=n)
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return probs, labels


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.0])
def test_temperature_recovers_the_distortion_it_undoes(true_t):
    probs, labels = _calibrated()
    distorted = apply_temperature(probs, 1 / true_t)  # sharpened (or softened) by 1/T*
    assert fit_temperature(distorted, labels) == pytest.approx(true_t, rel=0.1)


def test_temperature_of_one_is_the_identity():
    probs, _ = _calibrated(n=10)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, rtol=1e-9)


def test_clip_floor_caps_confident_mistakes():
    # 99% of rows: confident and right; 1%: confident and wrong. The best floor is near the error rate / (K-1).
    n, k = 10_000, 4
    probs = np.full((n, k), 1e-9)
    probs[:, 0] = 1 - 3e-9
    labels = np.zeros(n, dtype=int)
    labels[:100] = 1
    floor, ceiling = fit_clip(probs, labels)
    assert 1e-3 < floor < 1e-2
    assert kaggle_log_loss(clip_renormalise(probs, floor, ceiling), labels) < kaggle_log_loss(probs, labels) / 3


def test_fit_none_is_identity_and_unknown_method_is_refused():
    probs, labels = _calibrated(n=50)
    np.testing.assert_allclose(fit("none", probs, labels).apply(probs), probs)
    with pytest.raises(ValueError, match="none, clip, temperature or both"):
        fit("platt", probs, labels)


def _table(ids, probs, classes, labels=None, fold=None):
    t = pd.DataFrame(probs, columns=classes)
    t.insert(0, "id", ids)
    if labels is not None:
        t.insert(1, "breed", [classes[i] for i in labels])
        t.insert(2, "fold", fold)
    return t


def _through_the_dag(members: list[MemberFolds], weights: list[float], pooling: str = "arithmetic"):
    """What the average and blend rules hand post-processing: the blend raw and tempered (each as (OOF, test)),
    and each member's fold temperatures."""
    temperatures = {m.name: fold_temperatures(m) for m in members}
    raw = [average_member(m, pooling=pooling) for m in members]
    tempered = [average_member(m, temperatures[m.name], pooling=pooling) for m in members]
    blend = lambda tables: (blend_oof([o for o, _ in tables], weights, pooling=pooling),  # noqa: E731
                            blend_test([t for _, t in tables], weights, pooling=pooling))
    return blend(raw), blend(tempered), temperatures


def test_blend_weights_find_the_informative_model():
    probs, labels = _calibrated(n=2000, k=3)
    classes = ["a", "b", "c"]
    ids = [f"i{j}" for j in range(len(labels))]
    good = _table(ids, probs, classes, labels, 0)
    noise = _table(ids, np.random.default_rng(1).dirichlet(np.ones(3), size=len(labels)), classes, labels, 0)
    for pooling in ("arithmetic", "geometric"):
        weights = fit_blend_weights([noise, good], pooling=pooling)
        assert weights[1] > 0.9 and sum(weights) == pytest.approx(1) and min(weights) >= 0


def test_geometric_pooling_averages_logits_and_arithmetic_the_probabilities():
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, size=(3, 50, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    weights = [0.5, 0.3, 0.2]
    mean_logits = np.tensordot(weights, logits, axes=1)
    softmax = np.exp(mean_logits) / np.exp(mean_logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pool(probs, weights, "geometric"), softmax, rtol=1e-10)
    np.testing.assert_allclose(pool(probs, weights, "arithmetic"), np.tensordot(weights, probs, axes=1))
    same = pool(np.stack([probs[0]] * 3), weights, "geometric")
    np.testing.assert_allclose(same, probs[0], rtol=1e-10)  # agreeing models pool to themselves
    # a probability that underflowed to 0 in one model: that class stays (nearly) ruled out, no NaN
    zeroed = probs.copy()
    zeroed[0, :, 0] = 0.0
    zeroed[0] /= zeroed[0].sum(axis=1, keepdims=True)
    pooled = pool(zeroed, weights, "geometric")
    assert np.isfinite(pooled).all() and np.allclose(pooled.sum(axis=1), 1) and (pooled[:, 0] < 1e-100).all()
    with pytest.raises(ValueError, match="pooling must be one of arithmetic, geometric"):
        pool(probs, weights, "harmonic")
    with pytest.raises(ValueError, match="2 weights for 3 models"):
        pool(probs, [0.5, 0.5], "geometric")


def test_finalize_table_and_overconfident_folds():
    rng = np.random.default_rng(3)
    classes = ["a", "b", "c", "d"]
    oofs, tests = [], []
    test_ids = [f"t{j}" for j in range(300)]
    for f in range(3):
        probs, labels = _calibrated(n=600, k=4, seed=10 + f)
        sharp = apply_temperature(probs, 0.5)  # over-confident single models
        oofs.append(_table([f"f{f}-{j}" for j in range(600)], sharp, classes, labels, f))
        tests.append(_table(test_ids, apply_temperature(rng.dirichlet(np.ones(4) * 0.3, size=300), 0.5), classes))
    member = MemberFolds("m", oofs, tests)
    oof, test, params, table = finalize(*_through_the_dag([member], [1.0]), {"m": 1.0}, method="temperature",
                                        scope="ensemble")
    assert params["temperature"] == pytest.approx(2.0, rel=0.15)
    rows = table.set_index("method")["oof_log_loss"]
    assert rows["fitted temperature (ensemble)"] < rows["raw average"]
    assert "write-up bounds 0.01/K, 0.99/K" in rows.index
    assert rows["temperature + clip (ensemble)"] <= rows["fitted temperature (ensemble)"] + 1e-9
    assert list(test.columns) == ["id", *classes] and np.allclose(test[classes].sum(axis=1), 1)
    _, _, per_fold, _ = finalize(*_through_the_dag([member], [1.0]), {"m": 1.0}, method="both", scope="per_fold")
    assert [t == pytest.approx(2.0, rel=0.2) for t in per_fold["fold_temperatures"]["m"]] == [True] * 3


def test_a_refit_joins_the_test_average_with_the_folds_mean_temperature():
    classes = ["a", "b", "c"]
    test_ids = [f"t{j}" for j in range(50)]
    rng = np.random.default_rng(5)
    oofs, tests = [], []
    for f in range(2):
        probs, labels = _calibrated(n=400, k=3, seed=20 + f)
        oofs.append(_table([f"f{f}-{j}" for j in range(400)], apply_temperature(probs, 0.5 + f), classes, labels, f))
        tests.append(_table(test_ids, rng.dirichlet(np.ones(3), size=50), classes))
    refit = _table(test_ids, rng.dirichlet(np.ones(3), size=50), classes)
    plain = MemberFolds("m", oofs, tests)
    with_refit = MemberFolds("m", oofs, tests, refit)
    _, test = average_member(with_refit, pooling="arithmetic")
    expected = sum(t[classes].to_numpy() for t in [*tests, refit]) / 3
    np.testing.assert_allclose(test[classes].to_numpy(), expected)
    _, test = average_member(with_refit, pooling="geometric")
    geometric = np.cbrt(np.prod([t[classes].to_numpy() for t in [*tests, refit]], axis=0))
    np.testing.assert_allclose(test[classes].to_numpy(), geometric / geometric.sum(axis=1, keepdims=True))
    pd.testing.assert_frame_equal(average_member(plain, pooling="geometric")[0],  # no OOF rows of its own
                                  average_member(with_refit, pooling="geometric")[0])
    ts = fold_temperatures(with_refit)
    assert len(ts) == 3 and ts[2] == pytest.approx(np.sqrt(ts[0] * ts[1]))
    _, test = average_member(with_refit, ts, pooling="arithmetic")
    softened = [apply_temperature(t[classes].to_numpy(), x) for t, x in zip([*tests, refit], ts)]
    np.testing.assert_allclose(test[classes].to_numpy(), sum(softened) / 3)

