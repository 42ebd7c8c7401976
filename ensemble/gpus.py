"""GPU slots: every job that declares a GPU gets one GPU of its own, never one another job holds.

Snakemake's ``--resources gpu=N`` only caps how many GPU jobs run at once; it never says which GPU a job gets
(snakemake/snakemake#281). So each such job, on start, takes an exclusive ``flock`` on the lock file of one
free device in a folder on the local disk, points ``CUDA_VISIBLE_DEVICES`` at that device for its work, and
releases the lock when it ends. The kernel drops a flock when its process dies, even on ``kill -9``, so a
crashed job never leaves a slot taken.

Devices to choose from: those of a ``CUDA_VISIBLE_DEVICES`` set by a scheduler (SLURM, Kubernetes), else
every GPU ``nvidia-smi`` lists. ``ENSEMBLE_FAKE_GPUS=N`` makes the allocator believe N GPUs exist, so the
logic runs (and is tested) on machines without one; the work then runs wherever torch finds a device.
This module must not import torch: ``CUDA_VISIBLE_DEVICES`` only works if set before CUDA starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

FAKE_GPUS = "ENSEMBLE_FAKE_GPUS"
LOCK_DIR = "ENSEMBLE_GPU_LOCK_DIR"
SLOT = "ENSEMBLE_GPU_SLOT"  # set for the job's work: the device it holds
DEFAULT_LOCK_DIR = Path("/tmp/ensemble-gpu-locks")


def visible_gpus(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Device ids this job may choose from (empty: no GPU)."""
    if environ.get(FAKE_GPUS):
        return [str(i) for i in range(int(environ[FAKE_GPUS]))]
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [d.strip() for d in environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.splitlines() if line.strip()]


def lock_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The node-local folder of the lock files (``ENSEMBLE_GPU_LOCK_DIR``, else /tmp/ensemble-gpu-locks).

    Inside a SLURM job, a subfolder of its own: SLURM has given the job its GPUs already and, with
    ConstrainDevices, every job numbers its GPUs from 0, so jobs of different allocations on one node must not
    wait on each other's "GPU 0". Jobs that share one allocation (a local run inside salloc) share the folder.
    """
    folder = Path(environ.get(LOCK_DIR) or DEFAULT_LOCK_DIR)
    job = environ.get("SLURM_JOB_ID")
    return folder / f"slurm-{job}" if job else folder


@contextlib.contextmanager
def gpu_slot(devices: list[str], folder: Path, poll_seconds: float = 0.5,
             timeout_seconds: float | None = None) -> Iterator[str | None]:
    """Hold one free device of ``devices`` exclusively for the block; yields its id (None without devices)."""
    if not devices:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    started, waiting_logged = time.monotonic(), False
    while True:
        for device in devices:
            handle = open(folder / f"gpu-{device}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            log.info("gpu slot %s acquired at %.6f (pid %d)", device, time.time(), os.getpid())
            try:
                yield device
            finally:
                log.info("gpu slot %s released at %.6f (pid %d)", device, time.time(), os.getpid())
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if timeout_seconds is not None and time.monotonic() - started > timeout_seconds:
            raise TimeoutError(f"no free GPU among {devices} in {folder} after {timeout_seconds:.0f}s")
        if not waiting_logged:
            log.info("all %d GPU slots in %s are busy; waiting for one", len(devices), folder)
            waiting_logged = True
        time.sleep(poll_seconds)


@contextlib.contextmanager
def pinned_gpu(environ: dict[str, str] = os.environ) -> Iterator[str | None]:
    """The wrapper every GPU job runs in: hold a slot and point CUDA_VISIBLE_DEVICES (and SLOT) at it."""
    with gpu_slot(visible_gpus(environ), lock_dir(environ)) as device:
        if device is not None:
            environ["CUDA_VISIBLE_DEVICES"] = device
            environ[SLOT] = device
        yield device


def current_slot() -> str | None:
    """The GPU slot this process holds, for the record in its results (None: no slot)."""
    return os.environ.get(SLOT)
