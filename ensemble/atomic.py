"""Atomic file writes: a reader (or Snakemake) never sees a half-written output.

Everything is written to a temporary file in the destination folder, flushed, given the mode a plain
``open()`` would give it (0666 less the umask: readable by a colleague or a container host, where a bare
temporary file would be 0600), then renamed over the destination. A crash or Ctrl-C leaves at most a stray
``.tmp-<name>.<pid>.*`` file, never a truncated output; the next write of that output removes the strays
of processes no longer alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() gives a new file


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_temps(path: Path, prefix: str) -> list[Path]:
    """Remove ``{prefix}.<pid>.*`` files beside ``path`` left by processes that died (a kill mid-write)."""
    removed = []
    for stray in path.parent.glob(f"{prefix}.*"):
        pid = stray.name[len(prefix) + 1:].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            stray.unlink(missing_ok=True)
            removed.append(stray)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".tmp-{path.name}"
    clean_stale_temps(path, prefix)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}.{os.getpid()}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **kwargs: Any) -> None:
    """Write a table atomically (no index column unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically, indented for people."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically."""
    import torch  # lazily: the light verbs (folds, submit, ...) never pay for importing torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
