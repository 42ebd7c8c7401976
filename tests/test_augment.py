"""Augmentation presets, test-time augmentation, soft-target losses, and the speed switches really used."""

import random

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_train import CONFIG, _train
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

from ensemble.folds import assign_folds
from ensemble.hparams import TrainConfig
from ensemble.loops import batch_mixer, run_epoch, soft_nll
from ensemble.models import build_model
from ensemble.predict import load_model, predict_files, predict_fold
from ensemble.schedule import Cosine
from ensemble.transforms import PRESETS, eval_transform, train_transform, tta_transforms, view_names


@pytest.fixture
def image():
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))


def _steps(compose):
    return [type(t).__name__ for t in compose.transforms]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_makes_crops_of_the_size_and_never_flips_vertically(preset, image):
    transform = train_transform(32, 0.875, preset)
    assert transform(image).shape == (3, 32, 32)
    assert "RandomVerticalFlip" not in _steps(transform)


def test_presets_add_what_they_promise():
    assert "TrivialAugmentWide" in _steps(train_transform(32, 0.875, "standard"))
    heavy = _steps(train_transform(32, 0.875, "heavy"))
    assert "RandAugment" in heavy and "RandomErasing" in heavy
    assert _steps(train_transform(32, 0.875, "none")) == _steps(eval_transform(32, 0.875))
    with pytest.raises(ValueError, match="preset"):
        train_transform(32, 0.875, "extreme")


def test_the_timm_preset_is_timms_own_train_transform_seeded_like_the_rest(image):
    transform = train_transform(32, 0.875, "timm")
    assert _steps(transform) == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "ColorJitter",
                                 "ToImage"]
    crop = transform.transforms[0]
    assert crop.scale == (0.08, 1.0) and len(crop.interpolation) == 2  # bilinear or bicubic, at random
    assert transform.transforms[2].brightness == (0.6, 1.4)  # colour jitter 0.4
    out = transform(image)
    assert out.dtype == torch.uint8 and out.shape == (3, 32, 32)  # normalised by the model, not here
    draws = []
    for _ in range(2):
        random.seed(7)
        torch.manual_seed(7)
        draws.append(transform(image))
    assert torch.equal(*draws)  # training seeds both generators at every epoch start


def test_tta_views(image):
    names = ["original", "hflip", "full", "hflip+full", "scale:1.2", "hflip+scale:1.2", "five_crop"]
    views = tta_transforms(names, 32, 0.875)
    assert list(views) == view_names(names)
    assert len(views) == 11
    original = views["original"](image)
    assert torch.equal(views["hflip"](image), original.flip(-1))
    assert original.dtype == torch.uint8  # the model normalises whole batches
    assert torch.equal(views["five_crop:centre"](image), original)
    zoomed = views["scale:1.2"](image)
    assert not torch.equal(zoomed, original) and zoomed.shape == original.shape
    assert torch.equal(views["hflip+scale:1.2"](image), zoomed.flip(-1))
    whole = views["full"](image)  # the shorter side whole, at the crop size; the longer one's ends cut
    assert torch.equal(whole, v2.ToImage()(v2.CenterCrop(32)(v2.Resize(32, antialias=True)(image))))
    assert torch.equal(views["hflip+full"](image), whole.flip(-1))
    with pytest.raises(ValueError, match="below the 32 px crop"):
        tta_transforms(["scale:0.8"], 32, 0.875)
    with pytest.raises(ValueError, match="unknown TTA view"):
        tta_transforms(["vflip"], 32, 0.875)
    with pytest.raises(ValueError, match="unknown TTA view"):
        tta_transforms(["hflip+five_crop"], 32, 0.875)


def test_tta_averages_probabilities_of_the_views(fold_data, tiny_dataset, tmp_path):
    _, _, paths = _train(fold_data, tmp_path)
    folds = assign_folds(pd.read_csv(tiny_dataset / "labels.csv", dtype=str), k=3, seed=0)
    test_ids = pd.read_csv(tiny_dataset / "sample_submission.csv", dtype=str)["id"].tolist()
    cpu = torch.device("cpu")
    _, test, scores = predict_fold(paths["model_path"], folds, 0, tiny_dataset, test_ids, device=cpu, workers=0,
                                   batch_size=8, tta=("original", "hflip"))
    model, saved = load_model(paths["model_path"], cpu)
    pre = saved["preprocessing"]
    views = tta_transforms(["original", "hflip"], pre["size"], pre["crop_pct"])
    files = [tiny_dataset / "test" / f"{i}.jpg" for i in test_ids]
    each = [predict_files(model, saved, files, device=cpu, workers=0, batch_size=8, transform=t)
            for t in views.values()]
    np.testing.assert_allclose(test.iloc[:, 1:].to_numpy(), (each[0] + each[1]) / 2, rtol=1e-6)
    assert {"log_loss", "log_loss_no_tta"} <= set(scores) and scores["tta_views"] == ["original", "hflip"]


def test_soft_targets_and_label_smoothing_match_torch():
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    logp = F.log_softmax(logits, dim=1)
    assert torch.allclose(soft_nll(logp, y), F.cross_entropy(logits, y))
    assert torch.allclose(soft_nll(logp, y, 0.1), F.cross_entropy(logits, y, label_smoothing=0.1))
    assert torch.allclose(soft_nll(logp, F.one_hot(y, 4).float()), F.cross_entropy(logits, y))


def test_mixup_and_cutmix_give_soft_targets():
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8) % 4
    assert batch_mixer(0.0, 0.0, 4) is None
    torch.manual_seed(0)
    mixed_x, soft = batch_mixer(0.4, 1.0, 4)(x, y)
    assert soft.shape == (8, 4) and torch.allclose(soft.sum(1), torch.ones(8)) and (soft < 1).any()


class _Recorder:
    def __init__(self, module):
        self.seen = []
        module.register_forward_hook(lambda m, inputs, out: self.seen.append(
            (inputs[0].is_contiguous(memory_format=torch.channels_last), out.dtype)))


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="this CPU has no oneDNN bf16")
def test_bf16_and_channels_last_are_really_used_when_switched_on():
    torch.manual_seed(0)
    model = build_model("resnet18", n_classes=3, hidden=[8]).to(memory_format=torch.channels_last)
    recorder = _Recorder(model.backbone.conv1)
    loader = DataLoader(TensorDataset(torch.rand(8, 3, 32, 32), torch.arange(8) % 3), batch_size=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    run_epoch(model, loader, optimizer, Cosine(optimizer, 2), scaler, device=torch.device("cpu"),
              dtype=torch.bfloat16, frozen_backbone=False)
    assert recorder.seen == [(True, torch.bfloat16)] * 2
    recorder.seen.clear()
    run_epoch(model, loader, optimizer, Cosine(optimizer, 2), scaler, device=torch.device("cpu"), dtype=None,
              frozen_backbone=False)
    assert recorder.seen == [(True, torch.float32)] * 2


def test_training_with_mixing_and_a_preset_runs_and_records_bf16(fold_data, tmp_path):
    config = TrainConfig(**{**CONFIG.__dict__, "augment": "heavy", "mixup": 0.2, "cutmix": 1.0,
                            "label_smoothing": 0.1, "precision": "bf16"})
    metrics, _, paths = _train(fold_data, tmp_path, config)
    assert metrics["precision"] == "bfloat16"
    assert np.isfinite(pd.read_csv(paths["history_path"])["train_loss"]).all()
