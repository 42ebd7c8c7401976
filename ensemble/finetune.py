"""Freeze, then unfreeze with learning rates that fall by depth, and weight decay only where it belongs.

Phase ``head``: the backbone is frozen (no gradients, BatchNorm layers in eval mode so their running
statistics do not move) and only the head trains. Phase ``full``: everything trains but the first stages it
keeps frozen (``freeze_stages``, as detectron2's ``FREEZE_AT``: no gradients, so no backward pass through
them either, while their BatchNorm statistics still follow the new images), each backbone layer at a
multiple of the head's rate that falls towards the stem, in one of two ways:
- ``layer_decay`` (BEiT, arXiv:2106.08254; timm's ``--layer-decay``): layer i of n (0 = stem) trains at
  ``lr * layer_decay**(n - i)``;
- ``lr_groups`` / ``lr_ratio`` (ULMFiT's discriminative rates, arXiv:1801.06146): the layers split into
  ``lr_groups - 1`` contiguous chunks at ``lr * ratio``, ``lr * ratio**2``, ... down to the stem.
Layers are timm's own grouping for timm backbones (``group_matcher``) and blocks (the first two levels of the
parameter names) for torchvision's. Stages are timm's coarse grouping (the stem, then each stage of blocks),
with matchers of the same form for torchvision's families. As in timm, norms and biases get no weight decay.
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


# timm's coarse group matchers (the stem, then the stages of blocks), written for torchvision's families
TORCHVISION_STAGES = {
    "ResNet": {"stem": r"^conv1|^bn1", "blocks": r"^layer(\d+)"},
    "RegNet": {"stem": r"^stem", "blocks": r"^trunk_output\.block(\d+)"},
    "EfficientNet": {"stem": r"^features\.0\.", "blocks": r"^features\.(\d+)"},
}


def stage_ids(backbone: nn.Module) -> dict[str, int]:
    """{parameter name: stage}, 0 = the stem, then each stage of blocks in forward order (timm's coarse
    grouping; for a ViT, which has no stages, each block)."""
    from timm.models import group_parameters

    if hasattr(backbone, "group_matcher"):
        matcher = backbone.group_matcher(coarse=True)
    elif type(backbone).__name__ in TORCHVISION_STAGES:
        matcher = TORCHVISION_STAGES[type(backbone).__name__]
    else:
        raise ValueError(f"no stages known for a {type(backbone).__name__} backbone: set freeze_stages: 0")
    return group_parameters(backbone, matcher, reverse=True)


def stage_count(backbone: nn.Module) -> int:
    """The backbone's stages, the stem counted (5 for a ResNet)."""
    return max(stage_ids(backbone).values()) + 1


def freeze_stages(backbone: nn.Module, n: int) -> None:
    """Stop gradients to the first ``n`` stages (the stem counts as one); the rest keep theirs. In training mode
    their BatchNorm statistics still adapt."""
    if n <= 0:
        return
    ids, stages = stage_ids(backbone), stage_count(backbone)
    if n >= stages:
        raise ValueError(f"freeze_stages {n} leaves nothing of the backbone to train: it has {stages} stages, "
                         f"the stem counted; use at most {stages - 1} (head_epochs train the head alone)")
    for name, param in backbone.named_parameters():
        if ids[name] < n:
            param.requires_grad_(False)


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
    """Optimizer groups by (rate, decay) of the parameters that train, from the head's rate down to the
    stem's: the first group trains at ``lr``, the last at the lowest rate. ``head_only``: the head's
    parameters alone."""
    scaled: list[tuple[float, str, nn.Parameter]] = [(1.0, n, p) for n, p in model.head.named_parameters()]
    if not head_only:
        ids = layer_ids(model.backbone)
        n_layers = max(ids.values(), default=-1) + 1
        scales = depth_scales(n_layers, n_groups=n_groups, ratio=ratio, layer_decay=layer_decay)
        scaled += [(scales[ids[n]], n, p) for n, p in model.backbone.named_parameters() if p.requires_grad]
    groups: dict[tuple[float, bool], dict] = {}
    for scale, name, param in sorted(scaled, key=lambda s: -s[0]):  # stable: forward order within a rate
        decays = _decays(name, param) and weight_decay > 0
        group = groups.setdefault((scale, decays), {"params": [], "lr": lr * scale,
                                                     "weight_decay": weight_decay if decays else 0.0})
        group["params"].append(param)
    return list(groups.values())
