"""The model of the design: a backbone's pooled features, then the head ``fc hidden..., relu, fc n_classes``.

Default hidden = [4096] (the write-up's head); [] is a single linear layer. The model returns logits;
training and prediction apply log-softmax, so the loss is a true multi-class log loss. Backbones and their
preprocessing come from ``ensemble.backbones``; starting weights from ``ensemble.weights``.
"""

from __future__ import annotations

import torch
from torch import nn

from ensemble.backbones import get_backbone
from ensemble.weights import load_pretrained


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
    net, width = spec.build()
    load_pretrained(net, spec, weights)
    return Classifier(net, make_head(width, hidden, n_classes, dropout))
