"""The model of the design: a backbone's pooled features, then the head ``fc hidden..., relu, fc n_classes``.

Default hidden = [4096] (the write-up's head); [] is a single linear layer. The model returns logits;
training and prediction apply log-softmax, so the loss is a true multi-class log loss. Backbones and their
preprocessing come from ``ensemble.backbones``; starting weights from ``ensemble.weights``.
"""

from __future__ import annotations

import torch
from torch import nn

from ensemble.backbones import get_backbone
from ensemble.hparams import TrainConfig
from ensemble.weights import load_pretrained


class Classifier(nn.Module):
    """Images -> normalised -> backbone features -> head -> logits.

    Input: (N, 3, H, W) images on the 0-255 scale, uint8 (as loaders deliver them) or float (after MixUp).
    Normalisation by the backbone's mean and std happens here, on the whole batch and on the model's device;
    its constants are buffers that are not saved (they follow from the backbone). Without mean and std the
    input passes unchanged (inputs normalised already).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, mean: tuple[float, ...] | None = None,
                 std: tuple[float, ...] | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        if mean is None or std is None:
            scale, shift = torch.ones(1), torch.zeros(1)
        else:
            std_ = torch.tensor(std).view(1, -1, 1, 1)
            scale, shift = 1 / (255 * std_), -torch.tensor(mean).view(1, -1, 1, 1) / std_
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale + self.shift  # keeps channels_last

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images -> (N, F) pooled backbone features."""
        return self.backbone(self.normalise(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, 3, H, W) -> (N, F) -> (N, K)


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
                weights: str = "none", image_size: int | None = None) -> Classifier:
    """Build backbone + head, with the backbone's starting weights loaded as ``weights`` says, for inputs of
    ``image_size`` px (None: the backbone's own)."""
    spec = get_backbone(backbone)
    net, width = spec.build(image_size)
    load_pretrained(net, spec, weights)
    pre = spec.preprocessing()
    return Classifier(net, make_head(width, hidden, n_classes, dropout), pre.mean, pre.std)


def model_preprocessing(config: TrainConfig) -> dict:
    """The backbone's normalisation and eval crop, at the configured size (or the backbone's own)."""
    pre = get_backbone(config.backbone).preprocessing()
    return {"mean": list(pre.mean), "std": list(pre.std), "size": config.image_size or pre.input_size,
            "crop_pct": pre.crop_pct, "interpolation": pre.interpolation}
