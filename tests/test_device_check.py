"""benchmarks/device_check.sh, the prepared check for a GPU machine, in its CPU mode: the same steps at a tiny
size (smoke test, the real DAG with two jobs contending for one pretend GPU's slot, the throughput benchmark),
leaving its tar and table where $OUT says."""

from __future__ import annotations

import os
import subprocess
import tarfile

from conftest import REPO


def test_the_device_check_runs_end_to_end_in_its_cpu_mode(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "DEVICE_CHECK_WORK": str(tmp_path / "work"),
           "DEVICE_CHECK_MODE": "cpu"}
    done = subprocess.run(["bash", str(REPO / "benchmarks/device_check.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = (tmp_path / "out/device_check.md").read_text()
    assert "All checks passed." in table and "| yes |" in table  # a job waited for the slot lock
    assert table.count("| cpu | 0 |") == 2  # both folds ran on the device asked for, in slot 0
    assert table.count("| loader | False |") == 2  # on the CPU: per-image augmentation, no torch.compile
    assert "| resnet18 | off |" in table  # the throughput row
    with tarfile.open(tmp_path / "out/device_check.tar.gz") as tar:
        names = tar.getnames()
    assert "snakemake.log" in names and "results/device-check/train/r/fold1/metrics.json" in names
    assert "smoke: CPU" in done.stdout + done.stderr
