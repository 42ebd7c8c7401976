"""A training job's live progress, for ``python -m ensemble status``: one small JSON file per job, beside its
checkpoint (results/{run}/checkpoints/{member}/fold{k}/progress.json).

It is not a declared output, so Snakemake never deletes it when the job fails: a failed job's file keeps the
exception's line. It is rewritten atomically at the start, after every epoch, at the end, on failure, and
every ``interval`` seconds during an epoch (the heartbeat), so a reader never sees half a file and a job
killed without a word (SIGKILL, a node lost) is told apart by its heartbeat going stale.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from pathlib import Path

from ensemble.atomic import write_json

log = logging.getLogger(__name__)
FILE = "progress.json"


def progress_path(checkpoint_path: Path) -> Path:
    """Where the job with this checkpoint writes its progress."""
    return Path(checkpoint_path).with_name(FILE)


class Progress:
    """Writes one job's progress file. Call ``start``, then ``batch`` per training batch, ``epoch`` per
    finished epoch, and ``done`` or ``failed`` once; each epoch and the end also go to ``tracker`` (the job's
    MLflow run, ``ensemble.tracking.FoldTracker``) when one is set."""

    def __init__(self, path: Path, *, epochs: int, interval: float = 10.0):
        self.path, self.interval = Path(path), interval
        self.state = {"state": "running", "epochs": epochs, "epoch": 0, "batches_done": 0, "batches": None,
                      "train_loss": None, "val_loss": None, "images_per_second": None, "epoch_seconds": None,
                      "pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        self.tracker = None
        self._written = 0.0
        self._epoch_started = time.time()
        self._images = 0

    def _write(self) -> None:
        self.state["heartbeat"] = self._written = time.time()
        try:
            write_json(self.state, self.path)
        except OSError as e:  # progress is for people: never the reason a job fails
            log.warning("could not write %s: %s", self.path, e)

    def start(self, epoch: int, history: list[dict]) -> None:
        """The job begins, or resumes after ``epoch`` finished epochs with their ``history`` rows."""
        self.state.update(epoch=epoch, resumed_at=epoch if epoch else None)
        if history:
            self._epoch_row(history[-1], [h["seconds"] for h in history])
        self._write()

    def begin_epoch(self, batches: int) -> None:
        self._epoch_started, self._images = time.time(), 0
        self.state.update(batches_done=0, batches=batches, epoch_started=self._epoch_started)

    def batch(self, images: int) -> None:
        """A training batch of ``images`` is done; writes at most every ``interval`` seconds."""
        self._images += images
        self.state["batches_done"] += 1
        now = time.time()
        if now - self._written >= self.interval:
            self.state["images_per_second"] = self._images / max(now - self._epoch_started, 1e-9)
            self._write()

    def _epoch_row(self, row: dict, seconds: list[float]) -> None:
        self.state.update(epoch=row["epoch"], train_loss=row["train_loss"],
                          val_loss=row["val_loss"] if row["val_loss"] == row["val_loss"] else None,
                          epoch_seconds=sum(seconds) / len(seconds), last_epoch_seconds=seconds[-1])

    def epoch(self, row: dict, history: list[dict]) -> None:
        """An epoch finished with its history ``row`` (``history`` includes it)."""
        self._epoch_row(row, [h["seconds"] for h in history])
        if self._images:
            self.state["images_per_second"] = self._images / max(row["seconds"], 1e-9)
        self.state.update(batches_done=0, epoch_started=time.time())  # the next epoch begins now
        self._write()
        if self.tracker is not None:
            self.tracker.epoch(row)

    def done(self, metrics: dict) -> None:
        self.state.update(state="done", val_log_loss=metrics.get("val_log_loss"))
        self._write()
        if self.tracker is not None:
            self.tracker.finish(metrics)

    def failed(self, error: BaseException) -> None:
        """The job raised ``error``: its last line (type and message) and where it was raised are kept."""
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None
        message = str(error).splitlines()[0] if str(error) else ""
        self.state.update(state="failed", error=f"{type(error).__name__}: {message}", raised_at=where)
        self._write()
        if self.tracker is not None:
            self.tracker.finish(None, failed=True)
