"""Backbones by name, the write-up's head, and the weights they start from.

A model is a backbone that maps an image batch to pooled features, followed by the head of the design:
``fc hidden[0], relu, ..., fc n_classes`` (default hidden = [4096]; [] is a single linear layer). The model
returns logits; training and prediction apply log-softmax, so the loss is a true multi-class log loss.

Each backbone carries its preprocessing (mean, std, default input size), so eval transforms come from the
model, never from config twice. Weights: ``none`` (random init), ``imagenet`` (torchvision's weights API and
its cache), or the path of a local state-dict file (a full model or a backbone only; its classifier is
dropped and the drop logged).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone, and the preprocessing its weights expect."""

    name: str
    build: Callable[[], nn.Module]  # random-init network with its classifier still attached
    classifier: str  # attribute name of the classifier to drop (replaced by nn.Identity)
    num_features: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224


def _torchvision(name: str, num_features: int) -> Backbone:
    return Backbone(name, lambda: torchvision.models.get_model(name, weights=None), "fc", num_features)


BACKBONES: dict[str, Backbone] = {
    b.name: b for b in (
        _torchvision("resnet18", 512), _torchvision("resnet34", 512), _torchvision("resnet50", 2048),
        _torchvision("resnet101", 2048), _torchvision("resnet152", 2048),
    )
}


def get_backbone(name: str) -> Backbone:
    """Look a backbone up by name; an unknown name lists the valid ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(sorted(BACKBONES))}") from None


class Classifier(nn.Module):
    """Backbone features -> head -> logits."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (N, 3, H, W) -> (N, F) -> (N, K)


def make_head(num_features: int, hidden: list[int], n_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """``fc h1, relu, [dropout], ..., fc n_classes``; hidden=[] gives one linear layer."""
    layers: list[nn.Module] = []
    width = num_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def build_model(backbone: str, *, n_classes: int, hidden: list[int], dropout: float = 0.0,
                weights: str = "none") -> Classifier:
    """Build backbone + head, with the backbone's starting weights loaded as ``weights`` says."""
    spec = get_backbone(backbone)
    net = spec.build()
    state = load_backbone_weights(spec, weights)
    if state is not None:
        _load_features(net, spec, state)
    setattr(net, spec.classifier, nn.Identity())
    return Classifier(net, make_head(spec.num_features, hidden, n_classes, dropout))


def load_backbone_weights(spec: Backbone, weights: str) -> dict[str, torch.Tensor] | None:
    """Return the state dict that ``weights`` names (None for ``none``)."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return _imagenet_state(spec)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found; weights must be 'none', 'imagenet' or the "
                                "path of a state-dict file")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a checkpoint of this project or of torchvision's references
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def _imagenet_state(spec: Backbone) -> dict[str, torch.Tensor]:
    entry = torchvision.models.get_model_weights(spec.name).DEFAULT
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(entry.url)
    try:
        return entry.get_state_dict(progress=False)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; no network here
        raise RuntimeError(f"could not download ImageNet weights for {spec.name} ({e}). Offline? Download "
                           f"{entry.url} elsewhere and put it at {target} (TORCH_HOME moves that folder), "
                           "or set weights to the path of a local state-dict file") from e


def _load_features(net: nn.Module, spec: Backbone, state: dict[str, torch.Tensor]) -> None:
    """Load everything but the classifier; a dropped classifier is logged, a missing feature key is an error."""
    prefixes = ("module.", "backbone.")
    clean = {}
    for key, value in state.items():
        for p in prefixes:
            key = key.removeprefix(p)
        clean[key] = value
    dropped = sorted(k for k in clean if k.startswith(spec.classifier + "."))
    if dropped:
        log.info("replacing the weights file's classifier (%s) with a new head", ", ".join(dropped))
    features = {k: v for k, v in clean.items() if not k.startswith(spec.classifier + ".")}
    own = {k for k in net.state_dict() if not k.startswith(spec.classifier + ".")}
    missing, unexpected = sorted(own - set(features)), sorted(set(features) - own)
    if missing or unexpected:
        raise ValueError(f"weights do not fit {spec.name}: missing {missing[:5]} ({len(missing)}), "
                         f"unexpected {unexpected[:5]} ({len(unexpected)}); is it a {spec.name} state dict?")
    net.load_state_dict(features, strict=False)  # only the classifier is absent, checked above
    log.info("loaded %d backbone tensors for %s", len(features), spec.name)
