"""The verbs a person runs by hand: score and validate."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from ensemble.cli import main


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    ids = [f"id{i}" for i in range(20)]
    probs = rng.dirichlet(np.ones(3), size=20)
    truth = rng.integers(0, 3, size=20)
    pd.DataFrame({"id": ids, **{c: probs[:, i] for i, c in enumerate(classes)}}).to_csv(tmp_path / "sub.csv",
                                                                                          index=False)
    pd.DataFrame({"id": ids, "breed": [classes[t] for t in truth]}).to_csv(tmp_path / "key.csv", index=False)
    pd.DataFrame({"id": ids, **{c: 1 / 3 for c in classes}}).to_csv(tmp_path / "sample.csv", index=False)
    return tmp_path, log_loss(truth, probs, labels=[0, 1, 2])


def test_score_prints_kaggle_log_loss(files, capsys):
    folder, expected = files
    assert main(["score", str(folder / "sub.csv"), str(folder / "key.csv")]) == 0
    assert f"log loss {expected:.5f}" in capsys.readouterr().out


def test_validate_reports_a_bad_file_without_a_traceback(files, caplog):
    folder, _ = files
    assert main(["validate", str(folder / "sub.csv"), str(folder / "sample.csv")]) == 0
    pd.read_csv(folder / "sub.csv").iloc[:5].to_csv(folder / "short.csv", index=False)
    assert main(["validate", str(folder / "short.csv"), str(folder / "sample.csv")]) == 1
    assert "ids differ from sample_submission: 15 missing" in caplog.text
