import numpy as np
import pandas as pd
import pytest

from ensemble.plots import all_plots, per_class_log_loss

PNG = b"\x89PNG\r\n\x1a\n"


def test_per_class_log_loss_is_the_mean_over_each_class():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    table = per_class_log_loss(probs, np.array([0, 0, 1]), ["a", "b"]).set_index("class")
    assert table.loc["a", "log_loss"] == pytest.approx(-(np.log(0.5) + np.log(0.9)) / 2)
    assert table.loc["b", "log_loss"] == pytest.approx(-np.log(0.8)) and table.loc["a", "n"] == 2


def test_all_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=30)
    oof = pd.DataFrame(probs, columns=["a", "b", "c"])
    oof.insert(0, "id", [f"i{j}" for j in range(30)])
    oof.insert(1, "breed", rng.choice(["a", "b", "c"], size=30))
    oof.insert(2, "fold", 0)
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.8], "val_loss": [1.1, 0.9]})
    out = {k: tmp_path / f"{k}.png" for k in ("curves", "reliability", "sweep", "confusion", "per_class")}
    out["per_class_csv"] = tmp_path / "per_class.csv"
    all_plots({"m": [history, history]}, oof, oof, out)
    for key, path in out.items():
        assert path.read_bytes()[:8] == PNG or key == "per_class_csv"
    assert set(pd.read_csv(out["per_class_csv"])["class"]) == {"a", "b", "c"}
