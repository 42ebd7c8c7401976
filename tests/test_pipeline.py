"""The real Snakemake DAG on a tiny config, run once and shared by the tests that read its outputs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from PIL import Image

from ensemble.submission import clip_rows, validate_submission

RUN = "tiny"
CONFIG = {
    "run": RUN,
    "data": {"dir": "data/demo", "answers": "data/demo/test_labels.csv"},
    "demo": {"classes": 4, "train": 96, "test": 24, "size": 32},
    "folds": {"k": 3},
    "models": {"r18": {"backbone": "resnet18", "hidden": [16], "image_size": 32, "head_epochs": 0, "epochs": 2,
                       "batch_size": 16, "refit": True}},
    "train": {"device": "cpu"},
    "clip": {"floor": 0.001, "ceiling": 0.999},
    "postprocess": {"method": "both", "scope": "per_fold"},
}
TRACKED = {"tracking": {"mlflow": {"experiment": "tiny"}}}  # the shared run: MLflow's default store, ./mlflow.db


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args],
                          capture_output=True, text=True, timeout=600)


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """{rule: count} of a dry run's plan."""
    done = snakemake(workdir, "--dry-run", *args)
    assert done.returncode == 0, done.stderr
    if "Nothing to be done" in done.stdout + done.stderr:
        return {}
    table = (done.stdout + done.stderr).split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("pipeline")
    (workdir / "config.yaml").write_text(yaml.safe_dump({**CONFIG, **TRACKED}))
    done = snakemake(workdir)  # 2 cores shared among 3 folds: two tiny 1-thread jobs at a time
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def results(run_dir: Path) -> Path:
    return run_dir / "results" / RUN


def test_blend_is_the_folds_geometric_pool_and_the_submission_its_clipped_postprocessing(run_dir):
    sample = pd.read_csv(run_dir / "data/demo/sample_submission.csv", dtype={"id": str})
    sub = pd.read_csv(results(run_dir) / "submission/submission.csv", dtype={"id": str})
    validate_submission(sub, sample)
    classes = list(sub.columns[1:])
    members = [pd.read_csv(results(run_dir) / f"predict/r18/{part}/test.csv", dtype={"id": str}).set_index("id")
               for part in ["fold0", "fold1", "fold2", "full"]]  # the full-data refit is one more member
    blend = pd.read_csv(results(run_dir) / "blend/test.csv", dtype={"id": str}).set_index("id")
    geometric = np.exp(sum(np.log(f.loc[sub["id"], classes].to_numpy()) for f in members) / 4)  # the default
    geometric /= geometric.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(blend.loc[sub["id"], classes].to_numpy(), geometric, atol=1e-7)
    post = pd.read_csv(results(run_dir) / "postprocess/test.csv", dtype={"id": str}).set_index("id")
    np.testing.assert_allclose(sub[classes].to_numpy(), clip_rows(post.loc[sub["id"], classes].to_numpy(),
                                                                   0.001, 0.999), atol=1e-7)


def test_postprocessing_table_compares_methods_on_oof_and_test(run_dir):
    table = pd.read_csv(results(run_dir) / "postprocess/table.csv")
    assert table["method"].iloc[0] == "raw average" and len(table) == 7
    assert table[["oof_log_loss", "test_log_loss"]].notna().all().all()
    params = json.loads((results(run_dir) / "postprocess/params.json").read_text())
    assert params["weights"] == {"r18": 1.0} and params["method"] == "both"
    assert len(params["fold_temperatures"]["r18"]) == 4  # 3 folds + the refit (their geometric mean)


def test_out_of_fold_table_covers_every_labelled_image_once(run_dir):
    labels = pd.read_csv(run_dir / "data/demo/labels.csv", dtype=str)
    oof = pd.read_csv(results(run_dir) / "average/r18/oof.csv", dtype={"id": str})
    folds = pd.read_csv(results(run_dir) / "folds/folds.csv", dtype={"id": str})
    assert sorted(oof["id"]) == sorted(labels["id"])
    merged = oof.merge(folds, on="id", suffixes=("", "_folds"))
    assert (merged["fold"] == merged["fold_folds"]).all() and (merged["breed"] == merged["breed_folds"]).all()
    scores = json.loads((results(run_dir) / "average/r18/scores.json").read_text())
    assert set(scores["per_fold"]) == {"0", "1", "2"}
    assert scores["overall"]["n"] == len(labels)


def test_scores_against_the_answer_key_include_every_fold(run_dir):
    scores = json.loads((results(run_dir) / "score/scores.json").read_text())
    assert len(scores["members"]) == 4 and f"results/{RUN}/predict/r18/full/test.csv" in scores["members"]
    assert 0 < scores["submission"]["log_loss"] < 10 and scores["submission"]["n"] == 24


def test_each_fold_wrote_model_history_metrics_and_a_log(run_dir):
    for k in range(3):
        fold = results(run_dir) / f"train/r18/fold{k}"
        assert pd.read_csv(fold / "history.csv")["epoch"].tolist() == [1, 2]
        metrics = json.loads((fold / "metrics.json").read_text())
        assert metrics["device"] == "cpu" and metrics["image_source"] == "cache"  # decoded once, by the cache rule
        saved = torch.load(fold / "model.pt", weights_only=True)
        assert saved["config"]["epochs"] == 2
        assert "epoch 2/2" in (run_dir / f"logs/{RUN}/train/r18/fold{k}.log").read_text()
        assert not (results(run_dir) / f"checkpoints/r18/fold{k}/checkpoint.pt").exists()


def test_the_cache_holds_every_image_once_at_the_eval_resize(run_dir):
    cache = results(run_dir) / "cache/37px-bilinear"  # round(32 / 0.875), resized as torchvision's weights expect
    assert np.load(cache / "train.npy", mmap_mode="r").shape == (96, 37, 2 * 37, 3)  # whole photos up to 2:1
    assert np.load(cache / "test.npy", mmap_mode="r").shape == (24, 37, 74, 3)
    assert np.load(cache / "train_shapes.npy").shape == (96, 2)
    assert (results(run_dir) / "benchmarks/cache/37px-bilinear/train.tsv").exists()


def test_the_refit_trains_on_every_labelled_image_with_the_same_schedule(run_dir):
    metrics = json.loads((results(run_dir) / "train/r18/full/metrics.json").read_text())
    assert metrics["train_images"] == 96 and metrics["val_images"] == 0 and metrics["val_log_loss"] is None
    assert pd.read_csv(results(run_dir) / "train/r18/full/history.csv")["epoch"].tolist() == [1, 2]
    fold = json.loads((results(run_dir) / "train/r18/fold0/metrics.json").read_text())
    assert fold["train_images"] + fold["val_images"] == 96
    assert json.loads((results(run_dir) / "average/r18/scores.json").read_text())["refit"] is True


def test_provenance_records_config_and_versions(run_dir):
    versions = json.loads((results(run_dir) / "provenance/versions.json").read_text())
    for package in ("python", "torch", "torchvision", "snakemake", "ensemble"):
        assert versions[package], package
    resolved = yaml.safe_load((results(run_dir) / "provenance/config.yaml").read_text())
    assert resolved["models"]["r18"]["lr"] == 0.001  # a schema default, filled in
    assert resolved["folds"]["k"] == 3


def test_html_report_holds_the_plots_and_tables(run_dir, tmp_path):
    report = tmp_path / "report.html"
    done = snakemake(run_dir, "--report", str(report))
    assert done.returncode == 0, done.stderr[-2000:]
    html = report.read_text(errors="replace")
    for name in ("training_curves.png", "reliability.png", "clip_sweep.png", "confusion.png", "table.csv"):
        assert name in html, name
        assert name == "table.csv" or (results(run_dir) / "plots" / name).exists()


def test_predict_only_reproduces_the_runs_own_submission(run_dir, tmp_path):
    done = subprocess.run([sys.executable, "-m", "ensemble", "predict-new", "--run", f"results/{RUN}",
                           "--images", "data/demo/test", "--sample", "data/demo/sample_submission.csv",
                           "--device", "cpu", "--threads", "2", "--out-probs", str(tmp_path / "p.csv"),
                           "--out-submission", str(tmp_path / "s.csv")], cwd=run_dir, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    ours = pd.read_csv(tmp_path / "s.csv", dtype={"id": str})
    theirs = pd.read_csv(results(run_dir) / "submission/submission.csv", dtype={"id": str})
    assert ours["id"].tolist() == theirs["id"].tolist()
    np.testing.assert_allclose(ours.iloc[:, 1:].to_numpy(), theirs.iloc[:, 1:].to_numpy(), atol=1e-6)
    # the run in one file, predicted from elsewhere (no results/ there): the same probabilities, to the bit
    bundle, elsewhere = tmp_path / "run.bundle", tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "ensemble", "export", f"results/{RUN}", str(bundle)], cwd=run_dir,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    done = subprocess.run([sys.executable, "-m", "ensemble", "predict-new", "--bundle", str(bundle), "--images",
                           str(run_dir / "data/demo/test"), "--sample",
                           str(run_dir / "data/demo/sample_submission.csv"),
                           "--device", "cpu", "--threads", "2", "--out-probs", str(tmp_path / "bundle.csv")],
                          cwd=elsewhere, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "bundle.csv").read_bytes() == (tmp_path / "p.csv").read_bytes()


def test_fitted_blend_weights_follow_their_members_into_predict_new(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, symlinks=True)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["models"] = {"r18": config["models"]["r18"],  # a second model whose name sorts first
                        "a18": {**config["models"]["r18"], "epochs": 1, "hidden": [], "refit": False}}
    config["blend"] = {"weights": "fitted"}
    del config["tracking"]  # untracked: the copy's jobs must not log to the shared run's MLflow parent
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    done = snakemake(copy, f"results/{RUN}/submission/submission.csv",  # and what predict-new reads, not the plots
                     f"results/{RUN}/provenance/config.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    params = json.loads((results(copy) / "postprocess/params.json").read_text())
    assert set(params["weights"]) == {"r18", "a18"} and len(set(params["weights"].values())) == 2
    assert not (results(copy) / "tracking/mlflow.json").exists()
    done = subprocess.run([sys.executable, "-m", "ensemble", "predict-new", "--run", f"results/{RUN}",
                           "--images", "data/demo/test", "--sample", "data/demo/sample_submission.csv",
                           "--device", "cpu", "--threads", "2", "--out-submission", str(tmp_path / "s.csv")],
                          cwd=copy, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    ours = pd.read_csv(tmp_path / "s.csv", dtype={"id": str})
    theirs = pd.read_csv(results(copy) / "submission/submission.csv", dtype={"id": str})
    np.testing.assert_allclose(ours.iloc[:, 1:].to_numpy(), theirs.iloc[:, 1:].to_numpy(), atol=1e-6)


def test_predict_new_takes_any_folder_and_writes_the_top_labels(run_dir, tmp_path):
    test_ids = sorted(p.stem for p in (run_dir / "data/demo/test").glob("*.jpg"))[:3]
    folder = tmp_path / "new photos"
    (folder / "a").mkdir(parents=True)
    (folder / ".thumbnails").mkdir()
    source = lambda i: Image.open(run_dir / "data/demo/test" / f"{i}.jpg")  # noqa: E731
    (folder / "a" / "x.jpg").write_bytes((run_dir / "data/demo/test" / f"{test_ids[0]}.jpg").read_bytes())
    source(test_ids[1]).save(folder / "a" / "y.PNG")  # the decoded pixels, losslessly
    source(test_ids[2]).save(folder / "z.webp", lossless=True)
    for junk in (".DS_Store", "Thumbs.db", "notes.txt", ".thumbnails/x.jpg"):
        (folder / junk).write_bytes(b"\x00")
    done = subprocess.run([sys.executable, "-m", "ensemble", "predict-new", "--run", f"results/{RUN}",
                           "--images", str(folder), "--device", "cpu", "--threads", "2", "--top-k", "2",
                           "--out-probs", str(tmp_path / "p.csv"), "--out-top", str(tmp_path / "top.json")],
                          cwd=run_dir, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    probs = pd.read_csv(tmp_path / "p.csv", dtype={"id": str})
    assert probs["id"].tolist() == ["a/x.jpg", "a/y.PNG", "z.webp"]  # ids: paths relative to the folder
    theirs = pd.read_csv(results(run_dir) / "postprocess/test.csv", dtype={"id": str}).set_index("id")
    classes = list(probs.columns[1:])
    np.testing.assert_allclose(probs[classes].to_numpy(), theirs.loc[test_ids, classes].to_numpy(), atol=1e-6)
    top = json.loads((tmp_path / "top.json").read_text())
    assert [t["id"] for t in top] == probs["id"].tolist() and all(len(t["top"]) == 2 for t in top)
    for t, (_, row) in zip(top, probs.iterrows()):
        best = row[classes].astype(float).sort_values(ascending=False)
        assert [p["label"] for p in t["top"]] == list(best.index[:2])
        assert t["top"][0]["probability"] == pytest.approx(best.iloc[0], abs=1e-6)


def test_mlflow_holds_the_run_its_folds_and_their_epochs(run_dir):
    mlflow = pytest.importorskip("mlflow")
    state = json.loads((results(run_dir) / "tracking/mlflow.json").read_text())
    assert state["uri"] == f"sqlite:///{run_dir / 'mlflow.db'}"  # MLflow's default store, where the jobs ran
    client = mlflow.tracking.MlflowClient(state["uri"])
    parent = client.get_run(state["parent_run_id"])
    blend = json.loads((results(run_dir) / "blend/scores.json").read_text())
    test = json.loads((results(run_dir) / "score/scores.json").read_text())["submission"]
    assert parent.info.status == "FINISHED" and parent.data.params["models.r18.backbone"] == "resnet18"
    assert parent.data.metrics["cv_log_loss"] == pytest.approx(blend["overall"]["log_loss"])
    assert parent.data.metrics["test_log_loss"] == pytest.approx(test["log_loss"])
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"submission.csv", "table.csv", "reliability.png", "config.json"} <= logged
    nested = client.search_runs([parent.info.experiment_id],
                                filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_part = {r.data.tags["ensemble.part"]: r for r in nested}
    assert sorted(by_part) == ["fold0", "fold1", "fold2", "full"] and len(nested) == 4
    for part, r in by_part.items():
        assert r.info.status == "FINISHED" and r.data.params["epochs"] == "2"
        assert [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")] == [1, 2]
        if part != "full":  # the refit has no validation set
            metrics = json.loads((results(run_dir) / f"train/r18/{part}/metrics.json").read_text())
            assert r.data.metrics["val_log_loss"] == pytest.approx(metrics["val_log_loss"])
    spans = sorted((r.info.start_time, r.info.end_time) for r in nested)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans  # two folds logged at once


def test_leaderboard_lists_the_run_with_its_scores(run_dir, tmp_path):
    from ensemble.leaderboard import leaderboard

    table = leaderboard(run_dir / "results")
    row = table.set_index("run").loc[RUN]
    blend = json.loads((results(run_dir) / "blend/scores.json").read_text())
    assert row["cv_log_loss"] == pytest.approx(blend["overall"]["log_loss"])
    assert row["k"] == 3 and row["models"] == "resnet18" and row["epochs"] == "2"
    assert row["test_log_loss"] == pytest.approx(
        json.loads((results(run_dir) / "score/scores.json").read_text())["submission"]["log_loss"])
    post = pd.read_csv(results(run_dir) / "postprocess/table.csv").set_index("method")
    assert row["cv_log_loss_postprocessed"] == pytest.approx(post.loc["temperature + clip (per fold)", "oof_log_loss"],
                                                             rel=1e-5)  # the table is written to 6 digits
    seconds = [json.loads(p.read_text())["seconds"] for p in results(run_dir).glob("train/r18/*/metrics.json")]
    assert len(seconds) == 4 and row["train_seconds"] == pytest.approx(sum(seconds), abs=0.06)  # the refit too
    copy = tmp_path / "results"
    shutil.copytree(run_dir / "results", copy, ignore=shutil.ignore_patterns("cache", "*.pt"))
    (copy / RUN / "train/ablation-ema/fold0").mkdir(parents=True)  # `snakemake ablation`'s rows are not the run's
    (copy / RUN / "train/ablation-ema/fold0/metrics.json").write_text(json.dumps({"seconds": 1000.0}))
    assert leaderboard(copy).set_index("run").loc[RUN, "train_seconds"] == row["train_seconds"]


def test_complete_run_has_nothing_to_do(run_dir):
    assert planned_jobs(run_dir) == {}


def test_forcing_one_fold_plans_only_that_fold(run_dir):
    target = f"results/{RUN}/train/r18/fold1/model.pt"
    assert planned_jobs(run_dir, "--force", target) == {"train": 1}


@pytest.mark.parametrize(("cores", "fold_threads", "refit_threads"), [(2, 1, 1), (7, 2, 1), (3, 1, 3)])
def test_fold_jobs_share_the_cores_and_the_last_round_takes_them_all(run_dir, cores, fold_threads, refit_threads):
    """k = 3 folds and the refit: 4 training jobs. On 2 cores, two rounds of two; on 7, one round (2+2+2+1); on
    3, a round of three folds on a thread each, then the refit alone on all 3 (not on 1 with 2 cores idle)."""
    commands = snakemake(run_dir, "--dry-run", "--printshellcmds", "--forcerun", "train", "refit",
                         "--cores", str(cores)).stdout
    jobs = [line for line in commands.splitlines() if re.search(r"ensemble (train|predict|predict-test) ", line)]
    assert len(jobs) == 3 + 1 + 3 + 1  # the k = 3 folds and the refit, trained and predicted
    for job in jobs:
        refit = " --full " in job or "predict-test" in job
        assert f"--threads {refit_threads if refit else fold_threads} " in job, job


def test_several_models_train_every_model_and_fold(run_dir, tmp_path):
    override = tmp_path / "two.yaml"
    override.write_text(yaml.safe_dump({"models": {"r34": {"backbone": "resnet34", "image_size": 32}},
                                        "blend": {"weights": "fitted"}}))
    plan = planned_jobs(run_dir, "--configfile", str(run_dir / "config.yaml"), str(override))
    assert plan["train"] == 3 and plan["predict"] == 3 and plan["average"] == 1  # only the new model's folds
    assert {"blend", "postprocess", "submit"} <= set(plan)


def test_several_seeds_are_members_with_their_own_folds(run_dir, tmp_path):
    override = tmp_path / "seeds.yaml"
    override.write_text(yaml.safe_dump({"models": {"r18": {"seeds": [0, 5]}}}))
    done = snakemake(run_dir, "--dry-run", "--printshellcmds", "--configfile", str(run_dir / "config.yaml"),
                     str(override))
    assert done.returncode == 0, done.stderr
    trained = set(re.findall(r"--seed (\d+) .*?--out-model results/tiny/train/(r18-seed\d)/fold\d/model.pt",
                             done.stdout))
    assert trained == {("0", "r18-seed0"), ("5", "r18-seed5")}
    assert "--groups r18 r18" in done.stdout


RETRAIN = {"train", "predict", "refit", "predict_refit", "average", "blend", "postprocess", "plots", "submit", "score",
           "tracking_finish", "all"}


@pytest.mark.parametrize("change,expected", [
    ({"clip": {"floor": 0.01}}, {"submit", "score", "tracking_finish", "all"}),
    ({"blend": {"pooling": "arithmetic"}}, RETRAIN - {"train", "predict", "refit", "predict_refit"}),
    ({"train": {"workers": 1, "deterministic": True, "compile": True}, "predict": {"batch_size": 7}},
     {"all"}),  # speed only
    ({"tracking": {"mlflow": {"experiment": "elsewhere"}}}, {"tracking_start", "tracking_finish", "all"}),
    ({"models": {"r18": {"lr": "auto"}}}, {"lr_find", *RETRAIN}),
    ({"models": {"r18": {"epochs": 3}}}, RETRAIN),
])
def test_a_config_edit_reruns_only_the_rules_that_use_it(run_dir, tmp_path, change, expected):
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump(change))
    plan = planned_jobs(run_dir, "--configfile", str(run_dir / "config.yaml"), str(override))
    assert set(plan) - {"provenance"} == expected


def test_workflow_passes_snakemake_lint():
    done = subprocess.run(["snakemake", "--lint"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "Congratulations, your workflow is in a good condition!" in done.stdout + done.stderr, done.stdout


@pytest.mark.parametrize("config,message", [
    ({**CONFIG, "folds": {"k": 3, "seeds": 1}}, "Additional properties are not allowed ('seeds'"),
    ({**CONFIG, "folds": {"k": "five"}}, "'five' is not of type 'integer'"),
    ({**CONFIG, "folds": {"k": 1}}, "1 is less than the minimum of 2"),
    ({**CONFIG, "run": ".."}, "'..' does not match"),
    ({**CONFIG, "models": {"..": {"backbone": "resnet18"}}}, "'..' does not match"),
    ({**CONFIG, "clip": {"floor": 0.5, "ceiling": 0.4}}, "clip.floor (0.5) must be below clip.ceiling (0.4)"),
    ({**CONFIG, "models": {"r18": {"backbone": "resnet19"}}}, "unknown backbone 'resnet19': did you mean resnet18"),
    ({**CONFIG, "models": {"r18": {"backbone": "convnext_tinny"}}}, "did you mean convnext_tiny"),
    ({**CONFIG, "models": {"r18": {"backbone": "resnet18", "keep": "first"}}}, "'first' is not one of"),
    ({**CONFIG, "models": {"r18": {"backbone": "resnet18", "refit": True, "keep": "best"}}},
     "models.r18: refit trains on every labelled image, with no validation set"),
])
def test_bad_config_fails_before_any_job_with_the_key_named(tmp_path, config, message):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(tmp_path, "--dry-run")
    assert done.returncode != 0 and message in done.stdout + done.stderr


def test_bad_data_stops_at_the_input_check_with_the_id_named(tmp_path):
    from conftest import write_kaggle_dataset

    labels = write_kaggle_dataset(tmp_path / "data", ["a", "b"], per_class=4, n_test=2)
    (tmp_path / "data" / "train" / f"{labels['id'][3]}.jpg").write_bytes(b"\xff\xd8 truncated")
    config = {**CONFIG, "data": {"dir": "data", "answers": None}, "folds": {"k": 2}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(tmp_path)
    assert done.returncode != 0
    log = (tmp_path / f"logs/{RUN}/check_inputs/train.log").read_text()
    assert labels["id"][3] in log and "unreadable" in log and "replace the files or remove the ids" in log
    written = {str(p.relative_to(tmp_path / "results")) for p in (tmp_path / "results").rglob("*")
               if p.is_file() and not {"provenance", "benchmarks"} & set(p.parts)}
    test_side = {w for w in written if w == f"{RUN}/inputs/test_report.json" or "/cache/" in w and "/test" in w}
    assert written - test_side == {  # nothing past the failed check ran (the test side may have been checked)
        f"{RUN}/inputs/train.json", f"{RUN}/inputs/test.json", ".data-hashes.json"}  # the data's stamps


def test_the_ablation_trains_its_rows_on_the_runs_folds_and_only_the_last_uses_tta(run_dir, tmp_path):
    override = tmp_path / "ablation.yaml"
    override.write_text(yaml.safe_dump({"ablation": {"two_phase": {"head_epochs": 1, "lr_groups": 2},
                                                     "sgdr": {"cycle_epochs": 1}}}))
    args = ("ablation", "--configfile", str(run_dir / "config.yaml"), str(override))
    assert planned_jobs(run_dir, *args) == {"train": 21, "predict": 21, "ablation_table": 1, "ablation": 1,
                                            "features": 6}  # the rows with a head phase
    done = snakemake(run_dir, "--dry-run", "--printshellcmds", *args)
    commands = done.stdout
    tta = {member: views for views, member in re.findall(
        r"--tta ([a-z ]+?) --device[^\n]*?--out-oof results/tiny/predict/(ablation-[a-z_]+)/fold0", commands)}
    assert tta == {"ablation-baseline": "original", "ablation-two_phase": "original", "ablation-sgdr": "original",
                   "ablation-augment": "original", "ablation-optimizer": "original", "ablation-layer_decay": "original",
                   "ablation-ema": "original hflip"}
    baseline = re.search(r"python -m ensemble train .*?--out-model results/tiny/train/ablation-baseline/fold0/",
                         commands).group(0)
    assert "--head-epochs 0" in baseline and "--epochs 2" in baseline and "--augment none" in baseline
    assert "--optimizer sgd" in baseline and "--lr 0.05" in baseline
    assert "--folds results/tiny/folds/folds.csv" in baseline  # the run's own folds, not new ones
    two_phase = re.search(r"python -m ensemble train .*?--out-model results/tiny/train/ablation-two_phase/fold0/",
                          commands).group(0)
    assert "--head-epochs 1" in two_phase and "--epochs 2" in two_phase  # head epochs on top of the same 2


def test_a_head_phase_plans_one_features_job_that_every_fold_reads(run_dir, tmp_path):
    override = tmp_path / "head.yaml"
    override.write_text(yaml.safe_dump({"models": {"r18": {"head_epochs": 1}}}))
    args = ("--configfile", str(run_dir / "config.yaml"), str(override))
    plan = planned_jobs(run_dir, *args)
    assert plan["features"] == 1 and plan["train"] == 3 and plan["refit"] == 1
    commands = snakemake(run_dir, "--dry-run", "--printshellcmds", *args).stdout
    assert commands.count(f"--features results/{RUN}/features/r18/features.pt") == 4  # 3 folds + the refit
    override.write_text(yaml.safe_dump({"models": {"r18": {"head_epochs": 1, "mixup": 0.2}}}))
    assert "features" not in planned_jobs(run_dir, *args)  # MixUp mixes pixels: through the backbone


def test_a_changed_image_reruns_exactly_what_reads_its_split(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, symlinks=True)  # file times kept: the copy is as finished as the run
    assert planned_jobs(copy) == {}
    image = sorted((copy / "data/demo/train").glob("*.jpg"))[5]
    original = image.read_bytes()
    Image.new("RGB", (32, 32)).save(image)  # same name, black pixels
    plan = planned_jobs(copy)
    assert plan["check_inputs"] == 1 and plan["cache"] == 1 and plan["train"] == 3 and plan["refit"] == 1
    image.write_bytes(original)  # put back: the stamp's content is what it was, so nothing is left to do
    assert planned_jobs(copy) == {}
    test_image = sorted((copy / "data/demo/test").glob("*.jpg"))[0]
    Image.new("RGB", (32, 32)).save(test_image)
    plan = planned_jobs(copy)
    assert plan["check_inputs"] == 1 and plan["cache"] == 1 and plan["predict"] == 3
    assert not {"train", "refit", "folds"} & set(plan)  # a test image never retrains


def save_resnet18(path: Path, seed: int) -> None:
    import torchvision

    torch.manual_seed(seed)
    torch.save(torchvision.models.resnet18().state_dict(), path)


UNUSUAL = {"classes": ["NA", "None", "null"], "ids": ["dog 1a2b (1)", "007", "0042", "NaN", "n/a x"]}


@pytest.fixture(scope="module")
def unusual_run(tmp_path_factory) -> Path:
    """A tiny real run on data whose class names and ids pandas' defaults would mangle."""
    from conftest import write_kaggle_dataset

    workdir = tmp_path_factory.mktemp("unusual")
    data = workdir / "user data"
    labels = write_kaggle_dataset(data, UNUSUAL["classes"], per_class=4, n_test=5, size=24)
    renamed = dict(zip(labels["id"][::3], ["dog 1a2b (1)", "007", "0042", "NaN"]))
    for old, new in renamed.items():
        (data / "train" / f"{old}.jpg").rename(data / "train" / f"{new}.jpg")
    labels.assign(id=labels["id"].replace(renamed)).to_csv(data / "labels.csv", index=False)
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str, keep_default_na=False)
    new_test = ["n_a x", "008", "None", "dog 9 (2)", sample["id"][4]]
    for old, new in zip(sample["id"], new_test):
        (data / "test" / f"{old}.jpg").rename(data / "test" / f"{new}.jpg")
    sample.assign(id=new_test).to_csv(data / "sample_submission.csv", index=False)
    (data / "test" / ".DS_Store").write_bytes(b"\x00")
    (data / "train" / "Thumbs.db").write_bytes(b"\x00")
    save_resnet18(workdir / "weights.pt", seed=1)  # a user's own weights file
    config = {**CONFIG, "data": {"dir": "user data", "answers": None}, "folds": {"k": 2},
              "models": {"r18": {**CONFIG["models"]["r18"], "epochs": 1, "image_size": 24, "refit": False,
                                 "weights": "weights.pt"}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def test_na_classes_and_spaced_or_zero_padded_ids_give_a_valid_submission(unusual_run):
    sample = (unusual_run / "user data/sample_submission.csv").read_text().splitlines()
    submission = (results(unusual_run) / "submission/submission.csv").read_text().splitlines()
    assert submission[0] == sample[0] == "id,NA,None,null"
    assert [row.split(",")[0] for row in submission[1:]] == [row.split(",")[0] for row in sample[1:]]
    assert "008" in submission[2] and "None" in submission[3]
    validate_submission(pd.read_csv(results(unusual_run) / "submission/submission.csv", dtype={"id": str},
                                    keep_default_na=False),
                        pd.read_csv(unusual_run / "user data/sample_submission.csv", dtype={"id": str},
                                    keep_default_na=False))
    oof = pd.read_csv(results(unusual_run) / "average/r18/oof.csv", dtype=str, keep_default_na=False)
    assert {"dog 1a2b (1)", "007", "0042", "NaN"} <= set(oof["id"]) and set(oof["breed"]) == set(UNUSUAL["classes"])


def test_a_copied_data_folder_with_new_file_times_reruns_nothing(unusual_run, tmp_path):
    shutil.copytree(unusual_run / "user data", unusual_run / "copied data", copy_function=shutil.copy)  # new mtimes
    override = tmp_path / "copied.yaml"
    override.write_text(yaml.safe_dump({"data": {"dir": "copied data"}}))
    plan = planned_jobs(unusual_run, "--configfile", str(unusual_run / "config.yaml"), str(override))
    assert set(plan) <= {"provenance", "all"}  # it records the new data.dir; nothing is trained or checked again


def test_new_bytes_in_a_local_weights_file_retrain_and_nothing_upstream(unusual_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(unusual_run, copy, symlinks=True)
    original = (copy / "weights.pt").read_bytes()
    save_resnet18(copy / "weights.pt", seed=2)  # same path, other weights
    plan = planned_jobs(copy)
    assert plan["train"] == 2 and plan["predict"] == 2 and "submit" in plan
    assert not {"check_inputs", "cache", "folds"} & set(plan)
    (copy / "weights.pt").write_bytes(original)  # new file time, the old bytes: nothing to do
    assert planned_jobs(copy) == {}


def test_answers_auto_scores_against_the_key_beside_the_data_only(unusual_run, tmp_path):
    override = tmp_path / "auto.yaml"
    override.write_text(yaml.safe_dump({"data": {"dir": "user data", "answers": "auto"}}))
    args = ("--configfile", str(unusual_run / "config.yaml"), str(override))
    assert "score" not in planned_jobs(unusual_run, *args)  # no key in the user's folder: never the demo's
    key = unusual_run / "user data" / "test_labels.csv"
    sample = pd.read_csv(unusual_run / "user data/sample_submission.csv", dtype=str, keep_default_na=False)
    sample[["id"]].assign(breed="NA").to_csv(key, index=False)
    try:
        assert planned_jobs(unusual_run, *args).get("score") == 1
    finally:
        key.unlink()


def test_a_convnext_and_a_vit_from_timm_train_a_fold_each_with_the_caches_they_need(tmp_path):
    config = {**CONFIG, "demo": {"classes": 3, "train": 36, "test": 6, "size": 32}, "folds": {"k": 3},
              "models": {name: {"backbone": backbone, "image_size": 32, "head_epochs": 0, "epochs": 1,
                                "batch_size": 8} for name, backbone in
                         [("convnext", "convnext_atto"), ("vit", "vit_tiny_patch16_224")]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    targets = [f"results/{RUN}/train/{name}/fold0/model.pt" for name in ("convnext", "vit")]
    done = snakemake(tmp_path, *targets)
    assert done.returncode == 0, done.stderr[-3000:]
    # crop 0.875 and 0.9 with bicubic resizing, from each model's pretrained_cfg: a cache each
    assert sorted(p.name for p in (tmp_path / f"results/{RUN}/cache").iterdir()) == ["36px-bicubic",
                                                                                   "37px-bicubic"]
    for target in targets:
        saved = torch.load(tmp_path / target, weights_only=True)
        assert saved["preprocessing"]["interpolation"] == "bicubic" and saved["epoch"] == 1
