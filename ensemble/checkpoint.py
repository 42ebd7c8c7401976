"""Per-epoch training checkpoints, keyed so that a changed config is never resumed.

The key is a hash of everything that changes the weights: the resolved training config, the class list, the
fold's training ids, and the context around them (:func:`context`: the data's digest, the bytes of a local
weights file, whether images come from the decode-once cache, how many cached feature views the head phase
cycles over (0: it runs through the backbone), the resolved precision, whether crops run in the loader or on
the device, the package and decode versions).
Speed-only settings (workers, threads, the GPU slot, torch.compile) are not in it. A checkpoint whose key
differs is stale: it is deleted with a log line, and training starts afresh. One that cannot be read is
moved aside (``.corrupt-<time>``), never deleted. Checkpoints hold only tensors and plain containers, so they
load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from ensemble.atomic import torch_save

log = logging.getLogger(__name__)


def context(*, weights: str, data_digest: str | None, image_source: str, features: int,
            precision: str, augment_on: str = "loader") -> dict[str, Any]:
    """What changes the weights besides the config, classes and ids (see the module's docstring)."""
    from ensemble import __version__
    from ensemble.fingerprint import content_hash
    from ensemble.layout import DECODE

    local = Path(weights)
    return {"data": data_digest, "weights_file": content_hash(local) if local.is_file() else None,
            "image_source": image_source, "features": features, "precision": precision, "augment_on": augment_on,
            "version": __version__, "decode": DECODE}


def checkpoint_key(config: dict[str, Any], classes: list[str], train_ids: list[str],
                   context: dict[str, Any] | None = None) -> str:
    """A stable hash of everything that makes two trainings the same training."""
    blob = json.dumps({"config": config, "classes": classes, "train_ids": sorted(train_ids), "context": context},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_checkpoint(path: Path, key: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists and matches ``key``; a stale one is deleted."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a checkpoint from another version or a damaged file: never fatal, never lost
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(aside)
        log.warning("cannot read checkpoint %s (%s): moved it to %s; training from scratch", path, e, aside)
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
