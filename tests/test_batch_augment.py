"""Augmentation on the device (ensemble/batch_augment.py), tested on the CPU: its crops are drawn as the CPU
path's are, it flips half the images, turns portrait rows upright, and trains a fold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import CONFIG
from torchvision import transforms as T

from ensemble.batch_augment import BatchAugment, crop_params
from ensemble.cache import build_cache, cache_side
from ensemble.data import CachedRows, FoldData, source
from ensemble.hparams import TrainConfig
from ensemble.layout import Layout
from ensemble.train import train_fold

N = 10_000


def _cpu_path(width: int, height: int, scale) -> torch.Tensor:
    """(N, 2) area fraction and log aspect ratio of torchvision's RandomResizedCrop on a width x height image."""
    torch.manual_seed(0)
    image = torch.zeros(3, height, width)
    boxes = [T.RandomResizedCrop.get_params(image, scale, (3 / 4, 4 / 3)) for _ in range(N)]  # (top, left, h, w)
    h, w = torch.tensor([b[2] for b in boxes], dtype=torch.float64), torch.tensor([b[3] for b in boxes],
                                                                                  dtype=torch.float64)
    return torch.stack([h * w / (width * height), torch.log(w / h)], 1)


@pytest.mark.parametrize("width,height,scale", [(37, 37, (0.35, 1.0)), (74, 37, (0.35, 1.0)), (60, 37, (0.08, 1.0))])
def test_crops_are_drawn_as_the_cpu_paths_scale_and_ratio(width, height, scale):
    boxes = crop_params(torch.full((N,), width), torch.full((N,), height), scale, (3 / 4, 4 / 3),
                        torch.Generator().manual_seed(1)).double()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    device = torch.stack([h * w / (width * height), torch.log(w / h)], 1)
    cpu = _cpu_path(width, height, scale)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    for column in range(2):
        q = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
        assert torch.allclose(torch.quantile(device[:, column], q), torch.quantile(cpu[:, column], q), atol=0.03)
        assert abs(device[:, column].mean() - cpu[:, column].mean()) < 0.01


def test_half_the_images_are_flipped_as_on_the_cpu_path():
    rows = torch.zeros(N, 8, 16, 3, dtype=torch.uint8)
    rows[:, :, 8:] = 255  # bright right half
    augment = BatchAugment(8, "light")
    augment.scale, augment.ratio = (1.0, 1.0), (2.0, 2.0)  # the whole stored row: only the flip varies
    out = augment(rows, torch.full((N,), 16), torch.zeros(N, dtype=torch.bool), torch.Generator().manual_seed(0))
    flipped = (out[:, 0, :, :4].float().mean((1, 2)) > out[:, 0, :, 4:].float().mean((1, 2))).double().mean()
    torch.manual_seed(0)
    image = rows[0].permute(2, 0, 1)
    cpu = torch.tensor([bool(T.RandomHorizontalFlip()(image)[0, 0, 0]) for _ in range(N)]).double().mean()
    assert abs(flipped - 0.5) < 0.02 and abs(cpu - 0.5) < 0.02


def test_a_whole_row_crop_is_the_photo_resized_and_portrait_rows_come_back_upright():
    y, x = np.mgrid[0:16, 0:32]
    row = torch.from_numpy(np.stack([x * 8, y * 16, x * 0 + 100], -1).astype(np.uint8))  # smooth gradients
    augment = BatchAugment(16, "light", hflip=0.0)
    augment.scale, augment.ratio = (1.0, 1.0), (2.0, 2.0)
    out = augment(torch.stack([row, row]), torch.tensor([32, 32]), torch.tensor([False, True]),
                  torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.uint8
    expected = torch.nn.functional.interpolate(row.permute(2, 0, 1)[None].float(), size=(16, 16), mode="bilinear",
                                               antialias=True, align_corners=False)[0]
    assert (out[0].float() - expected).abs().mean() < 4  # bilinear resampling, up to its sampling grid
    assert torch.equal(out[1], out[0].transpose(1, 2))  # stored transposed, returned as the photo


def test_a_fold_trains_with_device_augmentation_the_same_for_any_worker_count(tiny_dataset, tmp_path):
    torch.set_num_threads(1)
    layout = Layout(tiny_dataset)
    build_cache(tiny_dataset, tmp_path / "cache", cache_side(24), splits=("train",))
    from ensemble.cache import ImageCache

    cache = ImageCache(tmp_path / "cache")
    labels = (tiny_dataset / "labels.csv").read_text().split()[1:]
    ids, classes = [line.split(",")[0] for line in labels], [line.split(",")[1] for line in labels]
    index = {c: i for i, c in enumerate(sorted(set(classes)))}
    data = FoldData(sorted(set(classes)), ids[:12], source(layout, cache, "train", ids[:12]),
                    [index[c] for c in classes[:12]], source(layout, cache, "train", ids[12:]),
                    [index[c] for c in classes[12:]], ids[12:])
    assert isinstance(CachedRows(data.train_images, data.train_targets)[0][0][0], torch.Tensor)
    config = TrainConfig(**{**CONFIG.__dict__, "augment": "timm", "image_size": 24})
    saved = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        metrics = train_fold(data, config, device=torch.device("cpu"), workers=workers, checkpoint_path=out / "c.pt",
                             model_path=out / "model.pt", history_path=out / "h.csv", metrics_path=out / "m.json",
                             device_augment=True)
        assert metrics["augment_on"] == "device" and np.isfinite(metrics["val_log_loss"])
        saved.append(torch.load(out / "model.pt", weights_only=True)["model"])
    assert all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])
