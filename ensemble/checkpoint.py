"""Per-epoch training checkpoints, keyed so that a changed config is never resumed.

The key is a hash of the resolved training config, the class list and the fold's training ids. A checkpoint
whose key differs is stale: it is deleted with a log line, and training starts afresh. Checkpoints hold only
tensors and plain containers, so they load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from ensemble.atomic import torch_save

log = logging.getLogger(__name__)


def checkpoint_key(config: dict[str, Any], classes: list[str], train_ids: list[str]) -> str:
    """A stable hash of everything that makes two trainings the same training."""
    blob = json.dumps({"config": config, "classes": classes, "train_ids": sorted(train_ids)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_checkpoint(path: Path, key: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists and matches ``key``; a stale one is deleted."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a checkpoint from another version or a damaged file: never fatal
        log.warning("discarding unreadable checkpoint %s (%s); training from scratch", path, e)
        path.unlink()
        return None
    if state.get("key") != key:
        log.info("discarding stale checkpoint %s: it was made with another config or fold (key %s, now %s)",
                 path, state.get("key"), key)
        path.unlink()
        return None
    log.info("resuming from %s after epoch %d", path, state["epoch"])
    return state


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a kill mid-write leaves the previous one intact."""
    torch_save(state, path)
