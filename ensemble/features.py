"""The frozen phase on cached features.

While the backbone is frozen (no gradients, BatchNorm in eval mode) it is a fixed function: the head sees
``backbone(view)`` and nothing else. So the features of every labelled image are computed once, for a fixed
number of augmented views and for the eval view, and shared by all folds (and the refit); head epoch ``e``
trains on view ``e % views``. On the same views this is the same training as through the backbone, at the
cost of a linear layer or two instead of a network per image (a test holds the two equal).

Views are drawn with the training transform, seeded by (seed, view), in image order, so the features file
is the same whichever job computes it. MixUp and CutMix mix pixels, not features: models using them train
their head phase through the backbone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ensemble.data import Images, image_dataset, make_loader
from ensemble.device import resolve_precision
from ensemble.hparams import TrainConfig
from ensemble.loops import autocast
from ensemble.models import build_model, model_preprocessing
from ensemble.transforms import eval_transform, train_transform

log = logging.getLogger(__name__)


def view_seed(seed: int, view: int) -> int:
    return seed * 1_000_003 + 7919 * (view + 1)


@torch.no_grad()
def backbone_features(model, images: Images, transform: Callable, *, device: torch.device,
                      dtype: torch.dtype | None, batch_size: int, workers: int,
                      seed: int | None = None) -> torch.Tensor:
    """(N, F) float32 pooled features of ``images`` under ``transform`` (random ones seeded per image from
    ``seed``), in image order, backbone in eval."""
    model.eval()
    loader = make_loader(image_dataset(images, None, transform, seed), batch_size=batch_size, shuffle=False,
                         workers=workers, device=device)
    out = []
    for x, _ in loader:
        x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
        with autocast(device, dtype):
            out.append(model.features(x).float().cpu())
    return torch.cat(out)


def compute_features(model, images: Images, ids: list[str], *, train_transform: Callable, eval_transform: Callable,
                     views: int, seed: int, device: torch.device, dtype: torch.dtype | None, batch_size: int,
                     workers: int) -> dict:
    """{"ids", "views": (V, N, F), "eval": (N, F)}: the frozen backbone's features of every image."""
    started = time.perf_counter()
    per_view = []
    for v in range(views):
        per_view.append(backbone_features(model, images, train_transform, device=device, dtype=dtype,
                                          batch_size=batch_size, workers=workers, seed=view_seed(seed, v)))
        log.info("features: view %d/%d of %d images (%.1f s)", v + 1, views, len(ids), time.perf_counter() - started)
    plain = backbone_features(model, images, eval_transform, device=device, dtype=dtype, batch_size=batch_size,
                              workers=workers)
    return {"ids": list(ids), "views": torch.stack(per_view), "eval": plain}


class FeatureBank:
    """A features file: rows by image id."""

    def __init__(self, path: Path):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        self.views, self.eval = saved["views"], saved["eval"]
        self.index = {i: r for r, i in enumerate(saved["ids"])}

    def rows(self, ids: list[str]) -> torch.Tensor:
        missing = [i for i in ids if i not in self.index]
        if missing:
            raise ValueError(f"{len(missing)} image(s) have no cached features, e.g. {missing[0]!r}; the features "
                             "file was computed on other data - delete it and rerun")
        return torch.tensor([self.index[i] for i in ids], dtype=torch.long)

    def train_view(self, epoch: int, rows: torch.Tensor) -> torch.Tensor:
        """The features head epoch ``epoch`` (0-based) trains on."""
        return self.views[epoch % len(self.views)][rows]


def features_for(images: Images, ids: list[str], config: TrainConfig, *, views: int, device: torch.device,
                 workers: int) -> dict:
    """The frozen starting backbone's features of every image (``ensemble.features``), shared by all folds of
    a model: the network every fold starts its head phase from."""
    torch.manual_seed(config.seed)
    model = build_model(config.backbone, n_classes=1, hidden=[], weights=config.weights,
                        image_size=config.image_size)
    model.to(device, memory_format=torch.channels_last)
    pre = model_preprocessing(config)
    return compute_features(model, images, ids,
                            train_transform=train_transform(pre["size"], pre["crop_pct"], config.augment,
                                                            pre["interpolation"]),
                            eval_transform=eval_transform(pre["size"], pre["crop_pct"], pre["interpolation"]),
                            views=views,
                            seed=config.seed, device=device, dtype=resolve_precision(config.precision, device),
                            batch_size=config.batch_size * 2, workers=workers)
