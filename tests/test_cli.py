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
    noise, good = str(tmp_path / "noise.csv"), str(tmp_path / "good.csv")
    tests = [str(tmp_path / "noise_test.csv"), str(tmp_path / "good_test.csv")]
    args = ["blend", "--weights", "fitted", "--pooling", "geometric", "--members", "noise", "good",
            "--groups", "noise", "good",
            "--oof", noise, good, "--test", *tests, "--tempered-oof", noise, good, "--tempered-test", *tests]
    for name in ("oof", "test", "tempered-oof", "tempered-test"):
        args += [f"--out-{name}", str(tmp_path / f"out-{name}.csv")]
    args += ["--out-scores", str(tmp_path / "s.json")]
    assert main(args) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["weights"][1] > 0.9 and sum(scores["weights"]) == pytest.approx(1)
    assert set(scores["member_scores"]) == {"noise", "good"}
    assert scores["members"] == ["noise", "good"] and scores["pooling"] == "geometric"
    best_single = min(s["log_loss"] for s in scores["member_scores"].values())
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
    from ensemble.config import MEMBER_KEYS, model_defaults

    # the workflow fills a model's keys from the dataclass: the same values, spelt the same in the train flags
    schema_defaults = {k: v["default"] for k, v in model.items() if "default" in v and k not in MEMBER_KEYS}
    assert {k: repr(v) for k, v in model_defaults().items()} == {k: repr(v) for k, v in schema_defaults.items()}
    assert {k: model[k]["default"] for k in MEMBER_KEYS} == MEMBER_KEYS
    from ensemble.cli import get_args_parser
    from ensemble.hparams import PREDICT_BATCH_SIZE

    assert schema["properties"]["predict"]["properties"]["batch_size"]["default"] == PREDICT_BATCH_SIZE
    verbs = get_args_parser()._subparsers._group_actions[0].choices
    for verb in ("predict", "predict-test", "predict-new"):  # the CLI's default is the schema's
        assert verbs[verb].get_default("batch_size") == PREDICT_BATCH_SIZE, verb


def test_the_dogs10_recipe_is_the_defaults_with_only_data_weights_size_and_epochs_set():
    """benchmarks/dogs10/recipe.yaml, layered on config.yaml as snakemake layers config files (nested keys
    merged), trains the schema's defaults: no demo setting of config.yaml's model leaks into it."""
    import yaml
    from snakemake.utils import update_config

    from ensemble.config import member_settings, model_defaults

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    recipe = yaml.safe_load((REPO / "benchmarks" / "dogs10" / "recipe.yaml").read_text())
    update_config(config, recipe)
    (name, model), = config["models"].items()
    assert set(recipe["models"][name]) == {"backbone", "weights", "image_size", "head_epochs", "epochs"}
    settings = member_settings(model, seed=0)
    assert {k: settings[k] for k in model_defaults() if k not in recipe["models"][name]} == {
        k: v for k, v in model_defaults().items() if k not in recipe["models"][name]}


@pytest.mark.parametrize(("cores", "jobs", "threads"), [
    (2, 5, [1, 1, 1, 1, 2]),  # 5 folds on 2 cores: the 5th alone on both
    (2, 4, [1, 1, 1, 1]), (3, 4, [1, 1, 1, 3]), (7, 3, [3, 2, 2]), (16, 5, [4, 3, 3, 3, 3]), (2, 1, [2]),
    (4, 10, [1] * 8 + [2, 2]),
])
def test_training_jobs_share_the_cores_in_rounds_and_the_last_round_uses_them_all(cores, jobs, threads):
    from ensemble.config import fold_threads

    assert [fold_threads(cores, jobs, i) for i in range(jobs)] == threads


def test_the_package_declares_every_library_it_imports_and_never_imports_snakemake():
    import ast
    import re
    import sys
    from importlib.metadata import packages_distributions

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = {"mlflow"}  # ensemble.tracking imports it only when tracking.mlflow is set
    declared = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in
                [*project["dependencies"], *[r for extra in extras for r in project["optional-dependencies"][extra]]]}
    imported = set()
    for path in (REPO / "ensemble").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"ensemble", "__future__"}
    distributions = packages_distributions()
    providers = {name: {d.lower().replace("_", "-") for d in distributions[name]} for name in third_party}
    assert not any("snakemake" in p for p in providers.values())  # the rules call the package; it never calls back
    undeclared = sorted(name for name, p in providers.items() if not p & declared)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_every_verb_has_its_parser_and_its_runner():
    from ensemble.cli import VERBS, get_args_parser

    parsed = get_args_parser()._subparsers._group_actions[0].choices
    assert set(parsed) == {verb.replace("_", "-") for verb in VERBS} and len(VERBS) >= 22
    for verb, stage in VERBS.items():
        assert callable(getattr(stage, f"run_{verb}", None)), f"{stage.__name__} has no run_{verb}"


def test_every_training_setting_has_a_flag_written_out_under_its_config_name():
    import dataclasses

    from ensemble.cli import get_args_parser
    from ensemble.hparams import TrainConfig

    train = get_args_parser()._subparsers._group_actions[0].choices["train"]
    source = (REPO / "ensemble" / "cli_common.py").read_text()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        assert f'"{flag}"' in source, f"{flag}: grep must find the line that defines it"
        assert train.get_default(field.name) == (list(field.default) if field.name == "hidden" else
                                                 None if field.default is dataclasses.MISSING else field.default)


def test_modules_stay_small_and_use_only_each_others_public_names():
    import ast
    import importlib
    import importlib.util

    for path in (REPO / "ensemble").glob("*.py"):
        text = path.read_text()
        assert len(text.splitlines()) <= 300, f"{path.name}: {len(text.splitlines())} lines; split it"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ensemble"):
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                assert not private, f"{path.name} imports {private} from {node.module}"
                module = importlib.import_module(node.module)  # lazy imports inside functions resolve too
                for alias in node.names:
                    assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), \
                        f"{path.name}: {node.module} has no {alias.name}"


def test_the_command_line_starts_without_torch_so_light_verbs_start_fast():
    import subprocess
    import sys

    code = "import sys, ensemble.cli; print(sorted({'torch', 'scipy', 'timm', 'mlflow'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"  # each verb imports what it needs when it runs
