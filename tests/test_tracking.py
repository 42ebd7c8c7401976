"""MLflow tracking (ensemble/tracking.py): a resumed fold keeps its run, a real `mlflow server` receives the
runs, a server that is down costs a job a warning and at most 5 s. The shared tiny run of the DAG logs to
MLflow's default local store (tests/test_pipeline.py checks what it holds)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import write_kaggle_dataset

from ensemble.folds import assign_folds

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

from ensemble.tracking import FoldTracker, finish_run, start_or_warn, start_run, tracking_file  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nested(client: MlflowClient, parent: str) -> list:
    experiment = client.get_run(parent).info.experiment_id
    return client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")


def test_a_fold_killed_mid_epoch_resumes_into_the_same_mlflow_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a sqlite store keeps its artifacts in ./mlruns
    data = tmp_path / "data"
    labels = write_kaggle_dataset(data, ["a", "b"], per_class=16, n_test=4, size=32)
    folds = tmp_path / "folds.csv"
    assign_folds(labels, k=2, seed=0).to_csv(folds, index=False)
    run = tmp_path / "results" / "r"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    state = start_run(run, name="r", uri=uri, experiment="resume")
    checkpoint = run / "checkpoints" / "m" / "fold0" / "checkpoint.pt"
    out = run / "train" / "m" / "fold0"
    cmd = [sys.executable, "-m", "ensemble", "train", "--data", str(data), "--folds", str(folds), "--fold", "0",
           "--backbone", "resnet18", "--hidden", "8", "--image-size", "32", "--head-epochs", "0", "--epochs", "3",
           "--batch-size", "4", "--precision", "fp32", "--threads", "1", "--checkpoint", str(checkpoint),
           "--out-model", str(out / "model.pt"), "--out-history", str(out / "history.csv"),
           "--out-metrics", str(out / "metrics.json")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    client = MlflowClient(uri)
    [killed] = _nested(client, state["parent_run_id"])
    assert killed.info.status == "RUNNING"  # nobody told MLflow: the process died
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    [resumed] = _nested(client, state["parent_run_id"])
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(resumed.info.run_id, "val_loss")] == [1, 2, 3]
    metrics = json.loads((out / "metrics.json").read_text())
    assert resumed.data.metrics["val_log_loss"] == pytest.approx(metrics["val_log_loss"])
    assert resumed.data.params["backbone"] == "resnet18" and resumed.data.tags["ensemble.part"] == "fold0"


def test_a_job_trained_again_from_scratch_supersedes_its_earlier_nested_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "results" / "r"
    state = start_run(run, name="r", uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="again")
    killed = FoldTracker(run, "m", "fold0", None, {"epochs": 1})  # killed: never finished, never resumed
    other = FoldTracker(run, "m", "fold1", None, {"epochs": 1})
    other.finish({"val_log_loss": 0.5})
    again = FoldTracker(run, "m", "fold0", None, {"epochs": 3})  # a new config: trained from scratch
    again.finish({"val_log_loss": 0.4})
    client = MlflowClient(state["uri"])
    runs = {r.info.run_id: r for r in _nested(client, state["parent_run_id"])}
    assert runs[killed.run_id].data.tags["ensemble.superseded_by"] == again.run_id
    assert runs[killed.run_id].info.status == "KILLED"
    assert "ensemble.superseded_by" not in runs[again.run_id].data.tags | runs[other.run_id].data.tags
    where = "tags.`ensemble.superseded_by` IS NULL and tags.`ensemble.level` = 'fold'"  # the current models
    current = client.search_runs([runs[again.run_id].info.experiment_id], filter_string=where)
    assert {r.info.run_id for r in current} == {again.run_id, other.run_id}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` on localhost, with its own store."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--default-artifact-root",
                             str(root / "artifacts"), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


def test_a_real_mlflow_server_receives_the_run_its_folds_and_their_epochs(server, tmp_path):
    run = tmp_path / "results" / "served"
    state = start_run(run, name="served", uri=server, experiment="served")
    trackers = [FoldTracker(run, "m", f"fold{k}", None, {"lr": 0.1}) for k in range(2)]
    for epoch in (1, 2):
        for k, tracker in enumerate(trackers):
            tracker.epoch({"epoch": epoch, "train_loss": 2.0 / epoch, "val_loss": 1.5 / epoch + k, "seconds": 1.0})
    for tracker in trackers:
        tracker.finish({"val_log_loss": 0.7, "epochs_run": 2})
    (tmp_path / "submission.csv").write_text("id,a\nx,1\n")
    finish_run(tracking_file(run), metrics={"cv_log_loss": 0.8}, artifacts=[tmp_path / "submission.csv"],
               config={"models": {"m": {"lr": 0.1}}})
    client = MlflowClient(server)
    parent = client.get_run(state["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["cv_log_loss"] == 0.8
    assert parent.data.params["models.m.lr"] == "0.1"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["config.json", "submission.csv"]
    nested = sorted(_nested(client, parent.info.run_id), key=lambda r: r.data.tags["ensemble.part"])
    assert [r.info.run_name for r in nested] == ["m/fold0", "m/fold1"]
    assert [[m.value for m in client.get_metric_history(r.info.run_id, "val_loss")] for r in nested] == \
        [[1.5, 0.75], [2.5, 1.75]]
    again = start_run(run, name="served", uri=server, experiment="served")
    assert again["parent_run_id"] == parent.info.run_id  # one parent per run, found again by its tags
    finish_run(tracking_file(run), metrics={"cv_log_loss": 0.7}, artifacts=[], config={"models": {"m": {"lr": 0.2}}})
    parent = client.get_run(parent.info.run_id)
    assert parent.data.metrics["cv_log_loss"] == 0.7 and parent.data.params["models.m.lr"] == "0.1"  # set once
    assert mlflow.artifacts.load_dict(f"{parent.info.artifact_uri}/config.json") == {"models": {"m": {"lr": 0.2}}}


def test_with_the_server_down_a_job_warns_and_loses_at_most_5_seconds(tmp_path, caplog):
    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    run = tmp_path / "results" / "r"
    started = time.monotonic()
    state = start_or_warn(run, tracking_file(run), name="r", uri=down, experiment="e")
    assert "off" in state and "MLflow tracking is off" in caplog.text
    json.loads(tracking_file(run).read_text())["off"]  # the jobs read it and do not try again
    tracker = FoldTracker(run, "m", "fold0", None, {})
    tracker.epoch({"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "seconds": 1.0})
    tracker.finish({"val_log_loss": 1.0})
    tracking_file(run).write_text(json.dumps({"uri": down, "experiment_id": "1", "parent_run_id": "p",
                                              "run": "r"}))  # the server went down after the run started
    tracker = FoldTracker(run, "m", "fold1", None, {"lr": 1})
    assert tracker.run_id is None and "MLflow tracking stopped for this job" in caplog.text
    tracker.epoch({"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "seconds": 1.0})  # no more attempts
    assert time.monotonic() - started < 5
