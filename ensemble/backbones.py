"""One registry of backbones by name: torchvision's ResNets, RegNet-Y and EfficientNets, and any timm model.

A backbone here is a network without its classifier: images in, pooled features out. Its preprocessing
(mean, std, default input size, eval crop ratio, resize interpolation) is what its weights expect, read from
the library's own metadata (torchvision's weights enum, timm's ``pretrained_cfg``), so transforms, TTA views
and the decode-once cache derive from the model, never from config twice.

Names: the 24 torchvision names below by their torchvision name (the write-up's ``resnet152`` among them);
any other name is timm's, as an architecture (``seresnext50_32x4d``, ``convnext_tiny``: its default
weights) or a pretrained tag (``convnext_tiny.fb_in22k_ft_in1k``, ``resnet152.tv_in1k``: torchvision's
weights through timm). Importing this module does not import torch or timm: names and preprocessing come from
``backbones.json.gz``, a table written from the installed torchvision and timm (``python -m ensemble
backbones --write-table``; a test holds it equal to them), so the workflow checks names and sizes at load.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
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
        "legacy_seresnet152", "legacy_senet154")  # the write-up's Squeeze-and-Excitation nets, among timm's
TABLE = Path(__file__).with_name("backbones.json.gz")


@functools.cache
def table() -> dict[str, dict[str, dict]]:
    """{"torchvision": {name: preprocessing}, "timm": {name or tag: preprocessing}}."""
    with gzip.open(TABLE, "rt") as f:
        return json.load(f)


def names() -> list[str]:
    """Every backbone name: torchvision's, then timm's architectures and pretrained tags."""
    return [*table()["torchvision"], *(n for n in table()["timm"] if n not in TORCHVISION)]


@dataclass(frozen=True)
class Preprocessing:
    """What the backbone's weights expect: normalisation, default input size (px), eval crop ratio."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    crop_pct: float
    interpolation: str = "bilinear"  # of the eval resize: bilinear | bicubic
    fixed_input_size: bool = False  # a ViT's position embedding: other sizes need dynamic_img_size


@dataclass(frozen=True)
class Backbone:
    """A named backbone of torchvision or timm."""

    name: str
    source: str  # torchvision | timm

    @property
    def classifier(self) -> str:
        """Attribute (and state-dict key prefix) of the full network's classifier."""
        if self.source == "timm":
            import timm

            cfg = timm.get_pretrained_cfg(self.name)
            return (cfg.classifier if cfg is not None and isinstance(cfg.classifier, str) else "fc")
        return "classifier" if self.name.startswith("efficientnet") else "fc"

    def build(self, image_size: int | None = None) -> tuple[nn.Module, int]:
        """(network with its classifier replaced by identity, width of its pooled features), random init. A
        model with a fixed input size (a ViT) built for another ``image_size`` interpolates its position
        embedding at run time (timm's ``dynamic_img_size``)."""
        if self.source == "timm":
            import timm

            extra = {}
            if self.preprocessing().fixed_input_size and image_size not in (None, self.preprocessing().input_size):
                extra["dynamic_img_size"] = True
            try:
                net = timm.create_model(self.name, pretrained=False, num_classes=0, **extra)
            except TypeError as e:
                raise ValueError(f"{self.name} takes only its own input size ({self.preprocessing().input_size} px)"
                                 f": set image_size to it, or null ({e})") from e
            return net, net.num_features
        import torchvision
        from torch import nn

        net = torchvision.models.get_model(self.name, weights=None)
        head = getattr(net, self.classifier)
        width = head.in_features if isinstance(head, nn.Linear) else head[-1].in_features
        setattr(net, self.classifier, nn.Identity())
        return net, width

    def preprocessing(self) -> Preprocessing:
        cfg = table()[self.source][self.name]
        return Preprocessing(tuple(cfg["mean"]), tuple(cfg["std"]), cfg["input_size"], cfg["crop_pct"],
                             cfg["interpolation"], cfg["fixed_input_size"])


def get_backbone(name: str) -> Backbone:
    """Look a backbone up by name; an unknown name fails with the closest valid ones."""
    if name in TORCHVISION:
        return Backbone(name, "torchvision")
    if name in table()["timm"]:
        return Backbone(name, "timm")
    close = difflib.get_close_matches(name, names(), n=6, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "no name is close"
    raise ValueError(f"unknown backbone {name!r}: {hint} (every name: python -m ensemble backbones)")


def _interpolation(mode) -> str:
    name = str(getattr(mode, "value", mode)).lower()
    return "bicubic" if "bicubic" in name else "bilinear"


def build_table() -> dict[str, dict[str, dict]]:
    """The table from the installed torchvision and timm (imports both: slow, for writing the file)."""
    import timm
    import torchvision

    tv = {}
    for name in TORCHVISION:
        t = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        tv[name] = {"mean": list(t.mean), "std": list(t.std), "input_size": t.crop_size[0],
                    "crop_pct": t.crop_size[0] / t.resize_size[0], "interpolation": _interpolation(t.interpolation),
                    "fixed_input_size": False}
    tm = {}
    for name in sorted({*timm.list_models(), *timm.list_pretrained()}):
        cfg = timm.get_pretrained_cfg(name)
        cfg = cfg.to_dict() if cfg is not None else {}
        tm[name] = {"mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
                    "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
                    "input_size": int(cfg.get("input_size", (3, 224, 224))[-1]),
                    "crop_pct": float(cfg.get("crop_pct", 0.875)),
                    "interpolation": _interpolation(cfg.get("interpolation", "bilinear")),
                    "fixed_input_size": bool(cfg.get("fixed_input_size", False))}
    return {"torchvision": tv, "timm": tm, "versions": {"timm": timm.__version__,
                                                        "torchvision": torchvision.__version__}}


def write_table(path: Path = TABLE) -> None:
    with gzip.open(path, "wt") as f:
        json.dump(build_table(), f, sort_keys=True, separators=(",", ":"))
