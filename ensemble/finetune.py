"""Freeze, then unfreeze with learning rates that fall by depth, and weight decay only where it belongs.

Phase ``head``: the backbone is frozen (no gradients, BatchNorm layers in eval mode so their running
statistics do not move) and only the head trains. Phase ``full``: everything trains, each backbone layer at
a multiple of the head's rate that falls towards the stem, in one of two ways:
- ``layer_decay`` (BEiT, arXiv:2106.08254; timm's ``--layer-decay``): layer i of n (0 = stem) trains at
  ``lr * layer_decay**(n - i)``;
- ``lr_groups`` / ``lr_ratio`` (ULMFiT's discriminative rates, arXiv:1801.06146): the layers split into
  ``lr_groups - 1`` contiguous chunks at ``lr * ratio``, ``lr * ratio**2``, ... down to the stem.
Layers are timm's own grouping for timm backbones (``group_matcher``) and blocks (the first two levels of the
parameter names) for torchvision's. As in timm, norms and biases get no weight decay.
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


def layer_ids(backbone: nn.Module) -> dict[str, int]:
    """{parameter name: layer}, 0 = the stem, in forward order: timm's grouping for a timm backbone, else one
    layer per block (the first two levels of the names)."""
    if hasattr(backbone, "group_matcher"):
        from timm.models import group_parameters

        return group_parameters(backbone, backbone.group_matcher(coarse=False), reverse=True)
    units: dict[str, int] = {}
    return {name: units.setdefault(".".join(name.split(".")[:2]), len(units))
            for name, _ in backbone.named_parameters()}


def depth_scales(n_layers: int, *, n_groups: int = 1, ratio: float = 1.0,
                 layer_decay: float | None = None) -> list[float]:
    """Rate multiplier of each backbone layer (0 = the stem); the head's is 1."""
    if n_groups < 1:
        raise ValueError(f"lr_groups must be at least 1, got {n_groups}")
    if layer_decay is not None:
        if n_groups > 1:
            raise ValueError("layer_decay and lr_groups > 1 both set rates by depth: use one of them")
        return [layer_decay ** (n_layers - i) for i in range(n_layers)]
    scales = [1.0] * n_layers
    if n_groups > 1:
        chunks = [c for c in np.array_split(np.arange(n_layers), n_groups - 1) if len(c)]
        for depth, chunk in enumerate(reversed(chunks), start=1):  # the deepest chunk right after the head
            for i in chunk:
                scales[i] = ratio**depth
    return scales


def _decays(name: str, param: nn.Parameter) -> bool:
    """timm's rule: weight decay on weight matrices and kernels, none on norms and biases."""
    return param.ndim > 1 and not name.endswith(".bias")


def param_groups(model: Classifier, *, lr: float, weight_decay: float = 0.0, n_groups: int = 1,
                 ratio: float = 1.0, layer_decay: float | None = None, head_only: bool = False) -> list[dict]:
    """Optimizer groups by (rate, decay), from the head's rate down to the stem's: the first group trains at
    ``lr``, the last at the stem's rate. ``head_only``: the head's parameters alone."""
    scaled: list[tuple[float, str, nn.Parameter]] = [(1.0, n, p) for n, p in model.head.named_parameters()]
    if not head_only:
        ids = layer_ids(model.backbone)
        n_layers = max(ids.values(), default=-1) + 1
        scales = depth_scales(n_layers, n_groups=n_groups, ratio=ratio, layer_decay=layer_decay)
        scaled += [(scales[ids[n]], n, p) for n, p in model.backbone.named_parameters()]
    groups: dict[tuple[float, bool], dict] = {}
    for scale, name, param in sorted(scaled, key=lambda s: -s[0]):  # stable: forward order within a rate
        decays = _decays(name, param) and weight_decay > 0
        group = groups.setdefault((scale, decays), {"params": [], "lr": lr * scale,
                                                     "weight_decay": weight_decay if decays else 0.0})
        group["params"].append(param)
    return list(groups.values())
