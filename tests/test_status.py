"""`python -m ensemble status`: each training job's state, read from its progress file, metrics and
predictions, on a run folder built by hand (the crash tests check a real killed and a real failed job)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ensemble.progress import Progress
from ensemble.status import classify, report

NOW = 1_000_000.0


def _progress(folder: Path, member: str, part: str, **state) -> None:
    path = folder / "checkpoints" / member / part / "progress.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    base = {"state": "running", "epochs": 4, "epoch": 1, "batches_done": 5, "batches": 10, "train_loss": 1.5,
            "val_loss": 1.2, "images_per_second": 80.0, "epoch_seconds": 30.0, "pid": os.getpid(),
            "host": socket.gethostname(), "heartbeat": NOW - 5}
    path.write_text(json.dumps({**base, **state}))


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_each_job_shows_as_done_running_failed_stopped_or_not_started(tmp_path):
    run = tmp_path / "results" / "r"
    (run / "provenance").mkdir(parents=True)
    config = {"seed": 0, "folds": {"k": 6}, "models": {"m": {"backbone": "resnet18", "head_epochs": 1, "epochs": 3}}}
    (run / "provenance" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "train/m/fold0").mkdir(parents=True)
    (run / "train/m/fold0/metrics.json").write_text(json.dumps({"val_log_loss": 0.9, "epochs_run": 4,
                                                                 "seconds": 120.0}))
    (run / "predict/m/fold0").mkdir(parents=True)
    (run / "predict/m/fold0/scores.json").write_text(json.dumps({"log_loss": 0.8765}))
    _progress(run, "m", "fold1")
    _progress(run, "m", "fold2", state="failed", error="FileNotFoundError: [Errno 2] No such file: 'x.jpg'")
    _progress(run, "m", "fold3", pid=_dead_pid())  # SIGKILLed: its process is gone, whatever the heartbeat
    _progress(run, "m", "fold4", host="another-node", heartbeat=NOW - 1000)  # elsewhere, silent for 1000 s
    text, active = report(run, now=NOW)
    lines = {line.split()[1]: line for line in text.splitlines()[1:]}
    assert text.splitlines()[0].startswith("run r: training: 1 of 6 jobs done; ETA ")
    assert "done" in lines["fold0"] and "OOF log loss 0.8765" in lines["fold0"]
    assert "running" in lines["fold1"] and "epoch 2/4 (50%)" in lines["fold1"] and "val loss 1.2000" in lines["fold1"]
    assert "ETA 1m15s" in lines["fold1"]  # 2.5 epochs left x 30 s
    assert "failed" in lines["fold2"] and "FileNotFoundError: [Errno 2] No such file: 'x.jpg'" in lines["fold2"]
    assert "logs/r/train/m/fold2.log" in lines["fold2"]
    assert "stopped" in lines["fold3"] and "process is gone" in lines["fold3"]
    assert "stopped" in lines["fold4"] and "no heartbeat for 1000 s" in lines["fold4"]
    assert "not started" in lines["fold5"]
    assert active


def test_a_run_that_retrains_is_not_done_and_shows_no_stale_scores(tmp_path):
    run = tmp_path / "results" / "r"
    (run / "provenance").mkdir(parents=True)
    config = {"seed": 0, "folds": {"k": 2}, "models": {"m": {"backbone": "resnet18", "head_epochs": 0, "epochs": 3}}}
    (run / "provenance" / "config.yaml").write_text(yaml.safe_dump(config))
    for folder in ("submission", "predict/m/fold0", "train/m/fold0"):
        (run / folder).mkdir(parents=True)
    (run / "submission/submission.csv").write_text("id\n")  # the last run's
    (run / "predict/m/fold0/scores.json").write_text(json.dumps({"log_loss": 0.8765}))  # the old model's
    os.utime(run / "predict/m/fold0/scores.json", (NOW - 100, NOW - 100))
    (run / "train/m/fold0/metrics.json").write_text(json.dumps({"val_log_loss": 0.5, "epochs_run": 3,
                                                                 "seconds": 60.0}))  # retrained since
    _progress(run, "m", "fold1", state="done", epoch=3, epochs=3)  # the old job's file; its outputs are gone
    _progress(run, "ablation-ema", "fold0")  # a row of `snakemake ablation`, running
    text, active = report(run, now=NOW)
    lines = text.splitlines()
    assert lines[0].startswith("run r: training: 1 of 2 jobs done")
    assert "val log loss 0.5000" in lines[1] and "0.8765" not in text
    assert "not started" in lines[2]
    assert "ablation-ema" in lines[3] and "running" in lines[3]
    assert active


def test_a_job_elsewhere_is_running_until_three_epochs_pass_without_a_heartbeat():
    fresh = {"state": "running", "epochs": 4, "epoch": 1, "batches_done": 0, "batches": 10, "train_loss": None,
             "val_loss": None, "epoch_seconds": 100.0, "pid": 1, "host": "another-node"}
    assert classify({**fresh, "heartbeat": NOW - 290}, now=NOW)[0] == "running"
    assert classify({**fresh, "heartbeat": NOW - 310}, now=NOW)[0] == "stopped"
    assert classify({**fresh, "heartbeat": NOW - 100, "epoch_seconds": None}, now=NOW, min_stale=120)[0] == "running"
    assert classify({**fresh, "heartbeat": NOW - 130, "epoch_seconds": None}, now=NOW, min_stale=120)[0] == "stopped"


def test_a_running_job_s_eta_follows_the_pace_of_its_epoch_not_a_quick_head_epoch():
    job = {"state": "running", "epochs": 4, "epoch": 1, "batches_done": 5, "batches": 10, "train_loss": 2.0,
           "val_loss": None, "epoch_seconds": 1.0, "last_epoch_seconds": 1.0, "epoch_started": NOW - 20,
           "pid": os.getpid(), "host": socket.gethostname(), "heartbeat": NOW - 1}
    assert "ETA 1m40s" in classify(job, now=NOW)[1]  # half an epoch in 20 s: 2.5 epochs of 40 s left
    assert "ETA 0m03s" in classify({**job, "batches_done": 0}, now=NOW)[1]  # too early: the last epoch's pace, 3 left


def test_the_progress_file_is_written_at_each_step_and_never_fails_the_job(tmp_path):
    progress = Progress(tmp_path / "progress.json", epochs=3, interval=0.0)
    progress.start(0, [])
    progress.begin_epoch(batches=2)
    progress.batch(8)
    state = json.loads((tmp_path / "progress.json").read_text())
    assert state["state"] == "running" and state["batches_done"] == 1 and state["images_per_second"] > 0
    progress.epoch({"epoch": 1, "train_loss": 2.0, "val_loss": 1.5, "seconds": 3.0}, [{"seconds": 3.0}])
    state = json.loads((tmp_path / "progress.json").read_text())
    assert (state["epoch"], state["val_loss"], state["epoch_seconds"]) == (1, 1.5, 3.0)
    try:
        raise ValueError("bad thing\nmore detail")
    except ValueError as e:
        progress.failed(e)
    state = json.loads((tmp_path / "progress.json").read_text())
    assert state["state"] == "failed" and state["error"] == "ValueError: bad thing"
    blocked = Progress(tmp_path / "progress.json" / "x.json", epochs=1)  # a file where its folder should be
    blocked.start(0, [])  # logged, not raised


def test_the_status_verb_prints_the_table_and_finds_the_latest_run(tmp_path):
    run = tmp_path / "results" / "latest"
    (run / "provenance").mkdir(parents=True)
    (run / "provenance" / "config.yaml").write_text(yaml.safe_dump(
        {"seed": 0, "folds": {"k": 2}, "models": {"m": {"backbone": "resnet18"}}}))
    _progress(run, "m", "fold0", heartbeat=time.time())
    done = subprocess.run([sys.executable, "-m", "ensemble", "status", "--results", str(tmp_path / "results")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[0].startswith("run latest: training: 0 of 2 jobs done")
    assert "running" in done.stdout and "not started" in done.stdout
