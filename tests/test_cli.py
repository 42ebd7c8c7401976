"""The verbs a person runs by hand: score and validate."""

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
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


def _oof(path, probs, labels, classes):
    t = pd.DataFrame(probs, columns=classes)
    t.insert(0, "id", [f"i{j}" for j in range(len(labels))])
    t.insert(1, "breed", [classes[i] for i in labels])
    t.insert(2, "fold", np.arange(len(labels)) % 3)
    t.to_csv(path, index=False)
    t.drop(columns=["breed", "fold"]).to_csv(path.with_name(path.stem + "_test.csv"), index=False)


def test_blend_writes_fitted_weights_and_every_models_score(tmp_path):
    import json

    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    labels = rng.integers(0, 3, size=300)
    good = np.full((300, 3), 0.1)
    good[np.arange(300), labels] = 0.8
    _oof(tmp_path / "good.csv", good, labels, classes)
    _oof(tmp_path / "noise.csv", rng.dirichlet(np.ones(3), size=300), labels, classes)
    args = ["blend", "--weights", "fitted", "--oof", str(tmp_path / "noise.csv"), str(tmp_path / "good.csv"),
            "--test", str(tmp_path / "noise_test.csv"), str(tmp_path / "good_test.csv"), "--out-oof",
            str(tmp_path / "o.csv"), "--out-test", str(tmp_path / "t.csv"), "--out-scores", str(tmp_path / "s.json")]
    assert main(args) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["weights"][1] > 0.9 and sum(scores["weights"]) == pytest.approx(1)
    assert set(scores["model_scores"]) == {str(tmp_path / "noise.csv"), str(tmp_path / "good.csv")}
    best_single = min(s["log_loss"] for s in scores["model_scores"].values())
    assert scores["overall"]["log_loss"] <= best_single + 1e-4  # softmax weights reach 1 only in the limit


def test_the_training_dataclass_and_the_schema_hold_the_same_defaults():
    import dataclasses

    import yaml

    from ensemble.hparams import TrainConfig

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    model = schema["$defs"]["model"]["properties"]
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    shared = sorted(set(fields) & {k for k, v in model.items() if "default" in v})
    assert len(shared) >= 25
    for key in shared:
        default = list(fields[key]) if isinstance(fields[key], tuple) else fields[key]
        assert default == model[key]["default"], key
    from ensemble.cli import get_args_parser
    from ensemble.hparams import PREDICT_BATCH_SIZE

    assert schema["properties"]["predict"]["properties"]["batch_size"]["default"] == PREDICT_BATCH_SIZE
    verbs = get_args_parser()._subparsers._group_actions[0].choices
    for verb in ("predict", "predict-test", "predict-new"):  # the CLI's default is the schema's
        assert verbs[verb].get_default("batch_size") == PREDICT_BATCH_SIZE, verb


def test_the_package_declares_every_library_it_imports_and_never_imports_snakemake():
    import ast
    import re
    import sys
    from importlib.metadata import packages_distributions

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in
                tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    imported = set()
    for path in (REPO / "ensemble").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"ensemble", "__future__"}
    distributions = packages_distributions()
    needed = {distributions[name][0].lower().replace("_", "-") for name in third_party}
    assert "snakemake" not in needed  # the rules call the package; it never calls back
    assert needed <= declared, f"imported but not declared in pyproject.toml: {sorted(needed - declared)}"
