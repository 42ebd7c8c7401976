"""One registry of backbones by name: torchvision's ResNets, RegNet-Y and EfficientNets, and timm's SE nets.

A backbone here is a network without its classifier: images in, pooled features out. Its preprocessing
(mean, std, default input size, eval crop ratio) is read from the library's own metadata (torchvision's
weights enum, timm's pretrained_cfg), so eval transforms derive from the model, never from config twice.

Importing this module does not import torch: the workflow checks names against ``NAMES`` at config time.
RegNet-Y and EfficientNet carry Squeeze-and-Excitation blocks, as do timm's (legacy_)se* models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

TORCHVISION = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf",
    "regnet_y_32gf", "regnet_y_128gf",
    *(f"efficientnet_b{i}" for i in range(8)), "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
)
TIMM = ("seresnext26d_32x4d", "seresnext50_32x4d", "seresnext101_32x4d", "legacy_seresnet50",
        "legacy_seresnet152", "legacy_senet154")
NAMES = TORCHVISION + TIMM


@dataclass(frozen=True)
class Preprocessing:
    """What the backbone's weights expect: normalisation, default input size (px), eval crop ratio."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    crop_pct: float


@dataclass(frozen=True)
class Backbone:
    """A named backbone of torchvision or timm."""

    name: str
    source: str  # torchvision | timm

    @property
    def classifier(self) -> str:
        """Attribute (and state-dict key prefix) of the full network's classifier."""
        if self.source == "timm":
            return "last_linear" if self.name.startswith("legacy_") else "fc"
        return "classifier" if self.name.startswith("efficientnet") else "fc"

    def build(self) -> tuple[nn.Module, int]:
        """(network with its classifier replaced by identity, width of its pooled features), random init."""
        if self.source == "timm":
            import timm

            net = timm.create_model(self.name, pretrained=False, num_classes=0)
            return net, net.num_features
        import torchvision
        from torch import nn

        net = torchvision.models.get_model(self.name, weights=None)
        head = getattr(net, self.classifier)
        width = head.in_features if isinstance(head, nn.Linear) else head[-1].in_features
        setattr(net, self.classifier, nn.Identity())
        return net, width

    def preprocessing(self) -> Preprocessing:
        if self.source == "timm":
            import timm

            cfg = timm.get_pretrained_cfg(self.name).to_dict()
            return Preprocessing(tuple(cfg["mean"]), tuple(cfg["std"]), cfg["input_size"][-1], cfg["crop_pct"])
        import torchvision

        t = torchvision.models.get_model_weights(self.name).DEFAULT.transforms()
        return Preprocessing(tuple(t.mean), tuple(t.std), t.crop_size[0], t.crop_size[0] / t.resize_size[0])


def get_backbone(name: str) -> Backbone:
    """Look a backbone up by name; an unknown name lists the valid ones."""
    if name in TORCHVISION:
        return Backbone(name, "torchvision")
    if name in TIMM:
        return Backbone(name, "timm")
    raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(NAMES)}")
