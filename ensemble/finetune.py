"""Freeze, then unfreeze with learning rates that fall geometrically from the head to the stem.

Phase ``head``: the backbone is frozen (no gradients, BatchNorm layers in eval mode so their running
statistics do not move) and only the head trains. Phase ``full``: everything trains, in ``n_groups``
parameter groups: the head at ``lr``, then the backbone split by depth into ``n_groups - 1`` contiguous
chunks at ``lr * ratio``, ``lr * ratio**2``, ... down to the stem (Howard & Ruder, ULMFiT, arXiv:1801.06146).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from ensemble.models import Classifier


def freeze_backbone(model: Classifier, frozen: bool) -> None:
    """Stop (or restart) gradients to the backbone's parameters."""
    for p in model.backbone.parameters():
        p.requires_grad_(not frozen)


def set_train_mode(model: Classifier, frozen_backbone: bool) -> None:
    """Training mode, except a frozen backbone stays in eval mode (BatchNorm statistics fixed, no dropout)."""
    model.train()
    if frozen_backbone:
        model.backbone.eval()


def depth_units(backbone: nn.Module) -> list[list[nn.Parameter]]:
    """The backbone's parameters in forward order, bundled by block (the first two levels of their names)."""
    units: dict[str, list[nn.Parameter]] = {}
    for name, p in backbone.named_parameters():
        units.setdefault(".".join(name.split(".")[:2]), []).append(p)
    return list(units.values())


def param_groups(model: Classifier, *, lr: float, n_groups: int, ratio: float) -> list[dict]:
    """Optimizer groups, head first: group i (0 = head) trains at ``lr * ratio**i``; the stem is last."""
    if n_groups < 1:
        raise ValueError(f"lr_groups must be at least 1, got {n_groups}")
    if n_groups == 1:
        return [{"params": list(model.parameters()), "lr": lr}]
    units = depth_units(model.backbone)
    chunks = [c for c in np.array_split(np.arange(len(units)), n_groups - 1) if len(c)]
    groups = [{"params": list(model.head.parameters()), "lr": lr}]
    for depth, chunk in enumerate(reversed(chunks), start=1):  # deepest backbone chunk right after the head
        groups.append({"params": [p for i in chunk for p in units[i]], "lr": lr * ratio**depth})
    return groups
