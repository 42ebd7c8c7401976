"""Train, eval and test-time-augmentation transforms (torchvision.transforms.v2), built from the crop size and
the backbone's eval crop ratio and resize interpolation (bilinear or bicubic, as its weights expect). They
take a PIL image or a uint8 (3, H, W) tensor (a cached square) and return a uint8 tensor: normalisation
happens on whole batches inside the model (``ensemble.models``).

Augmentation presets for training; no vertical flips anywhere, since photos have an up:
- ``none``: the eval transform (resize, centre crop), for ablations.
- ``light``: random resized crop (scale 0.35-1, most of the subject stays in view), horizontal flip.
- ``standard``: light + TrivialAugmentWide (Müller & Hutter, arXiv:2103.10158).
- ``heavy``: random resized crop (scale 0.08-1) + flip + RandAugment (Cubuk et al., arXiv:1909.13719) +
  random erasing (Zhong et al., arXiv:1708.04896).
- ``timm``: what timm's train.py does by default, from timm's own ``create_transform``: random resized crop
  (scale 0.08-1, ratio 3/4-4/3, bilinear or bicubic at random), flip, colour jitter 0.4. Its crops draw from
  Python's ``random``, which training seeds per epoch like torch's.

Eval: resize the shorter side to size / crop_pct, centre-crop ``size``.
TTA views: ``original`` (the eval transform), ``hflip`` (its mirror), ``full`` (resized so the shorter side is
the crop size, then centre-cropped: the whole centre square, nothing cut from the shorter side), ``scale:S``
(resize to S times the eval resize, then centre-crop: S > 1 zooms in on the centre), ``hflip+full`` and
``hflip+scale:S`` (their mirrors), ``five_crop`` (four corners and the centre of the eval resize: five views).
"""

from __future__ import annotations

from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

PRESETS = ("none", "light", "standard", "heavy", "timm")


def _to_tensor() -> list:
    return [v2.ToImage()]


def mode(interpolation: str) -> v2.InterpolationMode:
    """torchvision's mode of a name: bilinear or bicubic."""
    return v2.InterpolationMode(interpolation)


def _resize_crop(resize: int, size: int, interpolation: str) -> list:
    """Resize the shorter side to ``resize`` px, then centre-crop ``size``."""
    return [v2.Resize(resize, interpolation=mode(interpolation), antialias=True), v2.CenterCrop(size)]


def _eval_steps(size: int, crop_pct: float, interpolation: str = "bilinear") -> list:
    return _resize_crop(round(size / crop_pct), size, interpolation)


def train_transform(size: int, crop_pct: float = 0.875, preset: str = "light",
                    interpolation: str = "bilinear") -> v2.Compose:
    """Augmenting transform for training images, by preset."""
    if preset not in PRESETS:
        raise ValueError(f"augmentation preset must be one of {PRESETS}, got {preset!r}")
    if preset == "none":
        return v2.Compose([*_eval_steps(size, crop_pct, interpolation), *_to_tensor()])
    if preset == "timm":
        from timm.data import create_transform

        crop, colour, _ = create_transform(size, is_training=True, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                           hflip=0.5, color_jitter=0.4, interpolation="random", separate=True)
        return v2.Compose([*crop.transforms, *colour.transforms, *_to_tensor()])  # uint8 out, not normalised
    scale = (0.08, 1.0) if preset == "heavy" else (0.35, 1.0)
    steps = [v2.RandomResizedCrop(size, scale=scale, interpolation=mode(interpolation), antialias=True),
             v2.RandomHorizontalFlip()]
    if preset == "standard":
        steps.append(v2.TrivialAugmentWide())
    if preset == "heavy":
        steps.append(v2.RandAugment(num_ops=2, magnitude=9))
    steps += _to_tensor()
    if preset == "heavy":
        steps.append(v2.RandomErasing(p=0.25))
    return v2.Compose(steps)


def eval_transform(size: int, crop_pct: float, interpolation: str = "bilinear") -> v2.Compose:
    """Deterministic transform for validation and test images."""
    return v2.Compose([*_eval_steps(size, crop_pct, interpolation), *_to_tensor()])


FIVE_CROP = ("top_left", "top_right", "bottom_left", "bottom_right", "centre")


def view_names(views: list[str]) -> list[str]:
    """The names of the views ``tta_transforms`` makes: ``five_crop`` expands into five."""
    return [name for v in views for name in ([f"five_crop:{c}" for c in FIVE_CROP] if v == "five_crop" else [v])]


class _Corner:
    """One of FiveCrop's five crops (0-3 corners, 4 centre), as a transform of its own."""

    def __init__(self, size: int, index: int):
        self.size, self.index = size, index

    def __call__(self, image):
        return TF.five_crop(image, [self.size, self.size])[self.index]


def _view_steps(view: str, size: int, crop_pct: float, interpolation: str) -> list:
    """The steps of one TTA view other than five_crop, before the tensor conversion."""
    if view == "original":
        return _eval_steps(size, crop_pct, interpolation)
    if view == "hflip":
        return [*_eval_steps(size, crop_pct, interpolation), v2.RandomHorizontalFlip(p=1.0)]
    if view.startswith("hflip+") and view.removeprefix("hflip+").startswith(("full", "scale:")):
        return [*_view_steps(view.removeprefix("hflip+"), size, crop_pct, interpolation),
                v2.RandomHorizontalFlip(p=1.0)]
    if view == "full":
        return _resize_crop(size, size, interpolation)
    if view.startswith("scale:"):
        factor = float(view.split(":", 1)[1])
        resize = round(size / crop_pct * factor)
        if resize < size:
            raise ValueError(f"TTA view {view!r} resizes to {resize} px, below the {size} px crop (the eval resize "
                             f"is {round(size / crop_pct)} px); use full for the whole centre square")
        return _resize_crop(resize, size, interpolation)
    raise ValueError(f"unknown TTA view {view!r}; valid: original, hflip, full, scale:<factor>, hflip+full, "
                     "hflip+scale:<factor>, five_crop")


def tta_transforms(views: list[str], size: int, crop_pct: float,
                   interpolation: str = "bilinear") -> dict[str, v2.Compose]:
    """{view name: transform} for test-time augmentation; ``five_crop`` expands into five named views."""
    out: dict[str, v2.Compose] = {}
    for view in views:
        if view == "five_crop":
            resize = round(size / crop_pct)
            for i, name in enumerate(FIVE_CROP):
                out[f"five_crop:{name}"] = v2.Compose([v2.Resize(resize, interpolation=mode(interpolation),
                                                                 antialias=True), _Corner(size, i), *_to_tensor()])
        else:
            out[view] = v2.Compose([*_view_steps(view, size, crop_pct, interpolation), *_to_tensor()])
    return out
