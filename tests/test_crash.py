"""Nothing lost: SIGKILL mid-epoch resumes exactly, Ctrl-C leaves nothing half-written, a failed fold
leaves the finished ones alone, and no shell command can be injected through a config value."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, write_kaggle_dataset

import ensemble.atomic as atomic
from ensemble.folds import assign_folds
from ensemble.status import classify, report


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("crash") / "data"
    labels = write_kaggle_dataset(root, ["a", "b", "c"], per_class=20, n_test=6, size=32)
    folds = root.parent / "folds.csv"
    assign_folds(labels, k=3, seed=0).to_csv(folds, index=False)
    return root, folds


def _train_cmd(data: Path, folds: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "ensemble", "train", "--data", str(data), "--folds", str(folds), "--fold", "0",
            "--backbone", "resnet18", "--hidden", "8", "--image-size", "32", "--head-epochs", "0", "--epochs", "3",
            "--batch-size", "4", "--optimizer", "sgd", "--lr", "0.05", "--weight-decay", "0.0005",
            "--precision", "fp32", "--threads", "1", "--checkpoint", str(out / "ckpt.pt"),
            "--out-model", str(out / "model.pt"), "--out-history", str(out / "history.csv"),
            "--out-metrics", str(out / "metrics.json")]


def _same(a, b) -> bool:
    """Two saved objects hold the same values: tensors bit for bit, the rest by ==."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _start_and_signal(cmd: list[str], checkpoint: Path, sig: int,
                      states: list[str] | None = None) -> subprocess.CompletedProcess:
    """Start training, wait for its first checkpoint (epoch 1 done), let epoch 2 begin, then send ``sig``;
    ``states`` gets the job's status (``ensemble status``) just before."""
    # a suite started in the background (`pytest &`, nohup) hands its children SIGINT ignored: restore it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # into epoch 2
    assert proc.poll() is None, "training finished before it could be interrupted"
    if states is not None:
        states.append(classify(json.loads((checkpoint.parent / "progress.json").read_text()), now=time.time())[0])
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("recipe", [(), ("--optimizer", "adamw", "--lr", "0.001", "--ema", "0.9", "--clip-grad", "1",
                                    "--layer-decay", "0.7", "--augment", "timm")],
                         ids=["sgd", "adamw-ema-clip-layer-decay-timm-augment"])
def test_sigkill_mid_epoch_then_rerun_equals_a_run_never_killed(dataset, tmp_path, recipe):
    data, folds = dataset
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # the run never killed trains beside the one killed and rerun: one thread each, so the same bits
    log = tmp_path / "straight.log"  # a file, not a pipe: nobody reads it while the reference writes
    with log.open("w") as err:
        reference = subprocess.Popen(_train_cmd(data, folds, straight) + list(recipe), stdout=subprocess.DEVNULL,
                                     stderr=err)
    states = []
    done = _start_and_signal(_train_cmd(data, folds, killed) + list(recipe), killed / "ckpt.pt", signal.SIGKILL,
                             states)
    assert done.returncode == -signal.SIGKILL
    assert not (killed / "model.pt").exists()
    states.append(classify(json.loads((killed / "progress.json").read_text()), now=time.time())[0])
    assert states == ["running", "stopped"]  # as `ensemble status` shows the job before and after the kill
    rerun = subprocess.run(_train_cmd(data, folds, killed) + list(recipe), check=True, capture_output=True,
                           text=True)
    assert re.search(r"resuming from .* after epoch [12]", rerun.stderr)
    assert reference.wait(timeout=300) == 0, log.read_text()[-2000:]
    a = torch.load(straight / "model.pt", weights_only=True)
    b = torch.load(killed / "model.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # everything a prediction reads (weights and buffers, EMA or not, snapshots, classes, preprocessing) is equal,
    # so the two predict alike without running predict twice
    assert _same(a, b)


def test_a_failing_job_shows_as_failed_with_its_line_and_log(dataset, tmp_path):
    data, folds = dataset
    broken = tmp_path / "data"
    shutil.copytree(data, broken)
    missing = pd.read_csv(folds).query("fold != 0")["id"].iloc[0]
    (broken / "train" / f"{missing}.jpg").unlink()  # a training image of fold 0 gone: its first epoch fails
    run = tmp_path / "results" / "r"
    cmd = _train_cmd(broken, folds, run / "train" / "m" / "fold0")
    cmd[cmd.index("--checkpoint") + 1] = str(run / "checkpoints" / "m" / "fold0" / "ckpt.pt")
    assert subprocess.run(cmd, capture_output=True).returncode != 0
    text, _ = report(run)
    line = text.splitlines()[1]
    assert line.split()[:3] == ["m", "fold0", "failed"], text
    assert f"FileNotFoundError: [Errno 2] No such file or directory: '{broken / 'train' / missing}.jpg'" in line
    assert f"(log: {tmp_path / 'logs/r/train/m/fold0.log'})" in line


def test_ctrl_c_leaves_nothing_half_written(dataset, tmp_path):
    data, folds = dataset
    done = _start_and_signal(_train_cmd(data, folds, tmp_path), tmp_path / "ckpt.pt", signal.SIGINT)
    assert done.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "progress.json"]  # no outputs, no temp files
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["epoch"] >= 1  # and the checkpoint is whole


def test_every_torch_load_is_weights_only():
    calls = [(p.name, line) for p in (REPO / "ensemble").glob("*.py") for line in p.read_text().splitlines()
             if "torch.load(" in line]
    assert calls, "expected torch.load calls to check"
    assert all("weights_only=True" in line for _, line in calls), calls


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args],
                          capture_output=True, text=True, timeout=600)


def test_a_data_path_cannot_inject_a_shell_command(tmp_path):
    evil = tmp_path / "data é $(touch pwned1); touch pwned2 `touch pwned3`"
    write_kaggle_dataset(evil, ["a", "b"], per_class=3, n_test=2)
    config = {"run": "evil", "data": {"dir": str(evil), "answers": None}, "folds": {"k": 2},
              "models": {"m": {"backbone": "resnet18"}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = _snakemake(tmp_path, "results/evil/inputs/train_report.json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"n_train": 6' in (tmp_path / "results/evil/inputs/train_report.json").read_text()
    assert not list(tmp_path.rglob("pwned*")) and not list(Path.cwd().glob("pwned*"))


def test_a_failed_fold_leaves_finished_folds_alone_and_rerun_trains_only_it(dataset, tmp_path):
    data, _ = dataset
    config = {"run": "r", "data": {"dir": str(data), "answers": None}, "folds": {"k": 2},
              "train": {"device": "cpu"}, "models": {"m": {"backbone": "resnet18", "hidden": [8], "image_size": 32,
                                                           "head_epochs": 0, "epochs": 1, "batch_size": 8,
                                                           "precision": "fp32"}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    blocker = tmp_path / "results/r/checkpoints/m/fold1"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("")  # a file where fold 1 needs the folder of its checkpoint: that job fails
    targets = [f"results/r/train/m/fold{k}/model.pt" for k in range(2)]
    done = _snakemake(tmp_path, *targets, "--keep-going", "--set-threads", "train=1")
    assert done.returncode != 0
    finished = (tmp_path / targets[0]).stat().st_mtime_ns
    assert not (tmp_path / targets[1]).exists()
    blocker.unlink()
    plan = _snakemake(tmp_path, "--dry-run", *targets)
    assert re.search(r"^train\s+1$", plan.stdout, re.M), plan.stdout
    assert re.search(r"output: results/r/train/m/fold1/model\.pt", plan.stdout), plan.stdout
    done = _snakemake(tmp_path, *targets, "--set-threads", "train=1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / targets[0]).stat().st_mtime_ns == finished


def test_outputs_get_the_umask_s_mode_and_killed_temp_files_are_cleaned(tmp_path):
    from ensemble.atomic import write_csv, write_json

    old = os.umask(0o027)
    try:
        importlib.reload(atomic)  # the mode is read from the umask once, at import
        proc = subprocess.Popen(["true"])
        proc.wait()
        stray = tmp_path / f".tmp-table.csv.{proc.pid}.x1y2"  # left by a writer killed mid-write
        stray.write_text("half")
        atomic.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "table.csv")
        assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o640
        assert not stray.exists()
    finally:
        os.umask(old)
        importlib.reload(atomic)
    write_json({"a": 1}, tmp_path / "x.json")
    write_csv(pd.DataFrame({"a": [1]}), tmp_path / "y.csv")
    expected = 0o666 & ~old
    assert {(tmp_path / n).stat().st_mode & 0o777 for n in ("x.json", "y.csv")} == {expected}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv", "x.json", "y.csv"]
