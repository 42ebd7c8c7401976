"""Augmentation on the device: random resized crops, flips and colour jitter of whole uint8 batches.

On a GPU the per-image work of the CPU path (a PIL crop, resize and flip per image in loader workers) would
keep the loader, not the GPU, the bottleneck. So with the decode-once cache, training on CUDA loads each
cached row as it is stored (the CPU only slices the memory-mapped array: :class:`ensemble.data.CachedRows`)
and this module crops, resizes, flips and colour-jitters the whole batch where the model runs, with
parameters drawn per image. The code is device-agnostic, so it is tested on the CPU.

Crops follow torchvision's ``RandomResizedCrop.get_params``: up to 10 tries of an area fraction drawn from
``scale`` and a log-uniform aspect ratio from ``ratio``, the first that fits, else the whole image clamped to
the ratio range; the crop is resized to ``size`` by ``torchvision.ops.roi_align`` (bilinear sampling, batched).
Rows of portrait photos are stored transposed (``ensemble.cache``): they are cropped as stored and transposed
back, which leaves the scale and ratio distributions unchanged since the ratio range is symmetric in log.
Parameters come from a CPU generator the caller seeds per (seed, epoch), drawn in batch order, so they do not
depend on loader workers or on the device.
"""

from __future__ import annotations

import math

import torch

from ensemble.transforms import PRESETS

COLOUR = {"timm": 0.4}  # colour jitter strength (brightness, contrast, saturation) of the presets that have it
SCALE = {"light": (0.35, 1.0), "timm": (0.08, 1.0)}
SUPPORTED = tuple(SCALE)  # presets with no per-image operation beyond crop, flip and colour jitter
assert set(SUPPORTED) <= set(PRESETS)


def crop_params(widths: torch.Tensor, heights: torch.Tensor, scale: tuple[float, float],
                ratio: tuple[float, float], generator: torch.Generator, tries: int = 10) -> torch.Tensor:
    """(N, 4) crop boxes (x0, y0, x1, y1) in pixels, one per image of the given sizes, as torchvision's
    RandomResizedCrop draws them."""
    n = len(widths)
    w_img, h_img = widths.double()[:, None], heights.double()[:, None]
    area = w_img * h_img
    target = area * torch.empty(n, tries, dtype=torch.float64).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n, tries, dtype=torch.float64).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                                    generator=generator)
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (h > 0) & (w <= w_img) & (h <= h_img)
    first = torch.where(fits.any(1), fits.double().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    cw, ch = w[rows, first.clamp(min=0)], h[rows, first.clamp(min=0)]
    # no try fits: the whole image, clamped to the ratio range, centred (torchvision's fallback)
    whole = w_img[:, 0] / h_img[:, 0]
    fw = torch.where(whole < ratio[0], w_img[:, 0], torch.where(whole > ratio[1], torch.round(h_img[:, 0] * ratio[1]),
                                                                 w_img[:, 0]))
    fh = torch.where(whole < ratio[0], torch.round(w_img[:, 0] / ratio[0]), h_img[:, 0])
    missed = first < 0
    cw, ch = torch.where(missed, fw, cw), torch.where(missed, fh, ch)
    u = torch.rand(n, 2, dtype=torch.float64, generator=generator)
    x0 = torch.where(missed, torch.floor((w_img[:, 0] - cw) / 2), torch.floor(u[:, 0] * (w_img[:, 0] - cw + 1)))
    y0 = torch.where(missed, torch.floor((h_img[:, 0] - ch) / 2), torch.floor(u[:, 1] * (h_img[:, 0] - ch + 1)))
    return torch.stack([x0, y0, x0 + cw, y0 + ch], 1).float()


def colour_jitter(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation of each image of a float (N, 3, H, W) 0-255 batch scaled by factors
    drawn from [1 - strength, 1 + strength] (torchvision's ColorJitter, in a fixed order)."""
    n = len(x)
    factors = torch.empty(n, 3).uniform_(max(0.0, 1 - strength), 1 + strength, generator=generator)
    factors = factors.to(x.device)[:, :, None, None, None]
    x = x * factors[:, 0]
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    x = (x - grey.mean((2, 3), keepdim=True)) * factors[:, 1] + grey.mean((2, 3), keepdim=True)
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    return ((x - grey) * factors[:, 2] + grey).clamp(0, 255)


class BatchAugment:
    """Random resized crop, horizontal flip and the preset's colour jitter of a batch of cached rows."""

    def __init__(self, size: int, preset: str, hflip: float = 0.5, ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        if preset not in SUPPORTED:
            raise ValueError(f"augmentation on the device supports the presets {SUPPORTED}, not {preset!r}")
        self.size, self.scale, self.ratio, self.hflip = size, SCALE[preset], ratio, hflip
        self.colour = COLOUR.get(preset, 0.0)

    def __call__(self, rows: torch.Tensor, widths: torch.Tensor, portrait: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        """(N, side, W, 3) uint8 stored rows (valid up to each width), on any device -> (N, 3, size, size)
        uint8 crops, on that device."""
        from torchvision.ops import roi_align

        n, side = rows.shape[0], rows.shape[1]
        boxes = crop_params(widths.cpu(), torch.full((n,), side), self.scale, self.ratio, generator)
        flips = torch.rand(n, generator=generator) < self.hflip
        images = rows.permute(0, 3, 1, 2).float()  # (N, 3, side, W)
        indexed = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], boxes], 1).to(rows.device)
        out = roi_align(images, indexed, output_size=(self.size, self.size), spatial_scale=1.0, sampling_ratio=2,
                        aligned=True)
        portrait = portrait.to(rows.device).bool()[:, None, None, None]
        out = torch.where(portrait, out.transpose(2, 3), out)  # back to the photo's own orientation
        out = torch.where(flips.to(rows.device)[:, None, None, None], out.flip(3), out)
        if self.colour:
            out = colour_jitter(out, self.colour, generator)
        return out.round_().clamp_(0, 255).to(torch.uint8)
