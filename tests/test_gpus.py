"""GPU slots without a GPU: ENSEMBLE_FAKE_GPUS makes the allocator believe N devices exist."""

from __future__ import annotations

import getpass
import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, write_kaggle_dataset

from ensemble.gpus import gpu_slot, holders, pinned_gpu, visible_gpus


def test_visible_gpus_come_from_fakes_then_the_scheduler_then_nvidia_smi(monkeypatch):
    assert visible_gpus({"ENSEMBLE_FAKE_GPUS": "3"}) == ["0", "1", "2"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"]  # a scheduler's choice is respected
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    monkeypatch.setenv("PATH", "/nonexistent")
    assert visible_gpus({}) == []  # no nvidia-smi: no GPU


def test_holders_get_different_devices_and_a_third_waits(tmp_path):
    with gpu_slot(["0", "1"], tmp_path) as a, gpu_slot(["0", "1"], tmp_path) as b:
        assert {a, b} == {"0", "1"}
        with pytest.raises(TimeoutError, match="no free GPU"):
            with gpu_slot(["0", "1"], tmp_path, poll_seconds=0.05, timeout_seconds=0.3):
                pass
    with gpu_slot(["0", "1"], tmp_path) as again:
        assert again == "0"  # released at the end of the block


def test_the_wrapper_points_cuda_visible_devices_at_its_slot(tmp_path):
    environ = {"ENSEMBLE_FAKE_GPUS": "2", "ENSEMBLE_GPU_LOCK_DIR": str(tmp_path)}
    with pinned_gpu(environ) as device:
        assert environ["CUDA_VISIBLE_DEVICES"] == device == environ["ENSEMBLE_GPU_SLOT"] == "0"
    with gpu_slot([], tmp_path) as none:
        assert none is None  # no GPU: no slot, nothing to wait for


def test_a_killed_holder_frees_its_slot(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom ensemble.gpus import gpu_slot\n"
         f"with gpu_slot(['0'], Path({str(tmp_path)!r})):\n    print('held', flush=True)\n    time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(TimeoutError):
        with gpu_slot(["0"], tmp_path, poll_seconds=0.05, timeout_seconds=0.3):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with gpu_slot(["0"], tmp_path, poll_seconds=0.05, timeout_seconds=5) as device:
        assert device == "0"


def _intervals(log_dir: Path) -> dict[str, list[tuple[float, float, str]]]:
    """{slot: [(acquired, released, job log)]} from the jobs' logs."""
    held: dict[str, list[tuple[float, float, str]]] = {}
    for log in sorted(log_dir.rglob("*.log")):
        text = log.read_text()
        for slot, start in re.findall(r"gpu slot (\S+) acquired at ([\d.]+)", text):
            end = re.search(rf"gpu slot {re.escape(slot)} released at ([\d.]+)", text)
            assert end, f"{log} acquired slot {slot} but never released it"
            held.setdefault(slot, []).append((float(start), float(end[1]), log.name))
    return held


def test_four_folds_on_two_fake_gpus_never_share_one(tmp_path):
    data = tmp_path / "data"
    write_kaggle_dataset(data, ["a", "b", "c"], per_class=12, n_test=3, size=32)
    config = {"run": "g", "data": {"dir": str(data), "answers": None}, "folds": {"k": 4},
              "train": {"device": "auto"},
              "models": {"m": {"backbone": "resnet18", "hidden": [8], "image_size": 32, "head_epochs": 0,
                               "epochs": 1, "batch_size": 8, "precision": "fp32"}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {"PATH": __import__("os").environ["PATH"], "ENSEMBLE_FAKE_GPUS": "2",
           "ENSEMBLE_GPU_LOCK_DIR": str(tmp_path / "locks"), "HOME": str(tmp_path)}
    targets = [f"results/g/train/m/fold{k}/metrics.json" for k in range(4)]
    done = subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), *targets, "--cores", "4",
                           "--resources", "gpu=2", "--set-threads", "train=1"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    held = _intervals(tmp_path / "logs/g/train")
    assert set(held) == {"0", "1"}, held  # both GPUs used
    assert sum(len(v) for v in held.values()) == 4
    for slot, spans in held.items():
        spans.sort()
        for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
            assert end <= start, f"{a} and {b} held GPU {slot} at once"
    recorded = {json.loads((tmp_path / t).read_text())["gpu_slot"] for t in targets}
    assert recorded == {"0", "1"}


def test_each_slurm_job_gets_a_lock_folder_of_its_own(tmp_path):
    from ensemble.gpus import lock_dir

    assert lock_dir({"ENSEMBLE_GPU_LOCK_DIR": str(tmp_path)}) == tmp_path
    assert lock_dir({"ENSEMBLE_GPU_LOCK_DIR": str(tmp_path), "SLURM_JOB_ID": "77"}) == tmp_path / "slurm-77"


def test_the_lock_folder_is_shared_by_every_user_and_a_waiting_job_says_who_holds_each_slot(tmp_path, caplog):
    folder = tmp_path / "locks"
    with gpu_slot(["0"], folder):
        assert folder.stat().st_mode & 0o7777 == 0o1777  # like /tmp: any user adds lock files, none removes others'
        assert (folder / "gpu-0.lock").stat().st_mode & 0o777 == 0o666
        held = holders(["0"], folder)["0"]
        assert f"pid {os.getpid()}" in held and "user " in held and "since " in held
        with caplog.at_level(logging.INFO, logger="ensemble.gpus"):
            with pytest.raises(TimeoutError, match=rf"held by: gpu 0: user .* pid {os.getpid()}"):
                with gpu_slot(["0"], folder, poll_seconds=0.05, timeout_seconds=0.3, report_seconds=0.1):
                    pass
        assert caplog.text.count("are busy") >= 2  # said again while it waits, not once and then silence
        assert f"gpu 0: user {getpass.getuser()}" in caplog.text
    assert holders(["0"], folder) == {}  # released: no holder line


def test_another_users_lock_folder_that_is_not_shared_says_how_to_fix_it(tmp_path, monkeypatch):
    folder = tmp_path / "locks"
    folder.mkdir()
    real_open = os.open

    def as_another_user(path, flags, mode=0o777):
        if flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", as_another_user)
    with pytest.raises(PermissionError, match=r"chmod 1777 .*ENSEMBLE_GPU_LOCK_DIR"):
        with gpu_slot(["0"], folder):
            pass
