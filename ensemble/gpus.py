"""GPU slots: every job that declares a GPU gets one GPU of its own, never one another job holds.

Snakemake's ``--resources gpu=N`` only caps how many GPU jobs run at once; it never says which GPU a job gets
(snakemake/snakemake#281). So each such job, on start, takes an exclusive ``flock`` on the lock file of one
free device in a folder on the local disk, points ``CUDA_VISIBLE_DEVICES`` at that device for its work, and
releases the lock when it ends. The kernel drops a flock when its process dies, even on ``kill -9``, so a
crashed job never leaves a slot taken. The folder is shared by every user of the machine (mode 1777, like
/tmp, and lock files 0666), so two people's jobs never share a GPU; the holder writes who it is (user, host,
pid, command, since when) into the lock file, and a job that waits says who holds each slot, once a minute.

Devices to choose from: those of a ``CUDA_VISIBLE_DEVICES`` set by a scheduler (SLURM, Kubernetes), else
every GPU ``nvidia-smi`` lists. ``ENSEMBLE_FAKE_GPUS=N`` makes the allocator believe N GPUs exist, so the
logic runs (and is tested) on machines without one; the work then runs wherever torch finds a device.
This module must not import torch: ``CUDA_VISIBLE_DEVICES`` only works if set before CUDA starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import logging
import os
import socket
import stat
import subprocess
import sys
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


def _shared_folder(folder: Path) -> None:
    """Create the lock folder writable by every user (sticky, as /tmp); leave another user's as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) != 0o1777:
        with contextlib.suppress(OSError):
            folder.chmod(0o1777)


def _open_lock(path: Path):
    """The lock file, created readable and writable by all; another user's older 0644 one opens read-only
    (flock works on any open file)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, 0o666)  # the umask took bits off
    except PermissionError:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            owner = path.parent.stat().st_uid
            raise PermissionError(f"cannot create {path}: the folder belongs to user id {owner} and is not "
                                  f"writable by all; ask them to run `chmod 1777 {path.parent}`, or set "
                                  f"{LOCK_DIR} to a folder shared by every user of the GPUs") from None
    return os.fdopen(fd, "r+" if os.access(path, os.W_OK) else "r")


def _holder_line() -> str:
    return (f"user {getpass.getuser()} host {socket.gethostname()} pid {os.getpid()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} command {' '.join(sys.argv)[:300]}")


def holders(devices: list[str], folder: Path) -> dict[str, str]:
    """{device: who holds its slot, as its holder wrote it} for the slots with a holder line."""
    found = {}
    for device in devices:
        with contextlib.suppress(OSError):
            text = (folder / f"gpu-{device}.lock").read_text().strip()
            if text:
                found[device] = text
    return found


@contextlib.contextmanager
def gpu_slot(devices: list[str], folder: Path, poll_seconds: float = 0.5,
             timeout_seconds: float | None = None, report_seconds: float = 60) -> Iterator[str | None]:
    """Hold one free device of ``devices`` exclusively for the block; yields its id (None without devices).
    While every slot is taken, logs who holds them every ``report_seconds``."""
    if not devices:
        yield None
        return
    _shared_folder(folder)
    started, reported = time.monotonic(), None
    while True:
        for device in devices:
            handle = _open_lock(folder / f"gpu-{device}.lock")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            if handle.writable():
                handle.seek(0)
                handle.truncate()
                handle.write(_holder_line() + "\n")
                handle.flush()
            log.info("gpu slot %s acquired at %.6f (pid %d)", device, time.time(), os.getpid())
            try:
                yield device
            finally:
                log.info("gpu slot %s released at %.6f (pid %d)", device, time.time(), os.getpid())
                if handle.writable():
                    handle.seek(0)
                    handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        waited = time.monotonic() - started
        if timeout_seconds is not None and waited > timeout_seconds:
            raise TimeoutError(f"no free GPU among {devices} in {folder} after {timeout_seconds:.0f}s; held by: "
                               + "; ".join(f"gpu {d}: {h}" for d, h in holders(devices, folder).items()))
        if reported is None or time.monotonic() - reported >= report_seconds:
            held = holders(devices, folder)
            log.info("all %d GPU slots in %s are busy (waiting %.0f s); held by: %s", len(devices), folder,
                     waited, "; ".join(f"gpu {d}: {held.get(d, 'unknown')}" for d in devices))
            reported = time.monotonic()
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
