import numpy as np
import pandas as pd
import pytest

from ensemble.members import Member, members
from ensemble.scoring import seed_gains


def test_one_seed_keeps_the_model_name_and_several_make_members():
    got = members({"r18": {}, "r50": {"seeds": [3, 7]}}, default_seed=0)
    assert got == [Member("r18", "r18", 0), Member("r50-seed3", "r50", 3), Member("r50-seed7", "r50", 7)]
    with pytest.raises(ValueError, match="duplicates"):
        members({"r": {"seeds": [1, 1]}}, default_seed=0)


def _oof(probs, labels):
    t = pd.DataFrame(probs, columns=["a", "b"])
    t.insert(0, "id", [f"i{j}" for j in range(len(labels))])
    t.insert(1, "breed", np.array(["a", "b"])[labels])
    t.insert(2, "fold", 0)
    return t


def test_seed_gain_is_the_single_seed_mean_minus_the_average():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=400)
    noisy = [np.clip(np.eye(2)[labels] * 0.7 + 0.15 + rng.normal(0, 0.2, (400, 2)), 0.01, None) for _ in range(3)]
    oofs = [_oof(p / p.sum(1, keepdims=True), labels) for p in noisy]
    for pooling in ("arithmetic", "geometric"):
        gains = seed_gains(oofs + [oofs[0]], ["m", "m", "m", "solo"], pooling)
        assert set(gains) == {"m"} and gains["m"]["members"] == 3
        assert gains["m"]["gain"] == pytest.approx(gains["m"]["single_seed_log_loss_mean"]
                                                   - gains["m"]["seed_average_log_loss"])
        assert gains["m"]["gain"] > 0  # pooling independent noise helps
