"""The frozen phase on cached features trains the head exactly as training through the frozen backbone."""

from dataclasses import replace

import pandas as pd
import pytest
import torch
from test_train import CONFIG, _train
from torch.utils.data import DataLoader, TensorDataset

from ensemble.atomic import torch_save
from ensemble.features import FeatureBank, features_for
from ensemble.loops import run_epoch
from ensemble.models import build_model
from ensemble.schedule import Cosine

HEAD = replace(CONFIG, head_epochs=2, epochs=0, dropout=0.3, hidden=(16,), augment="none")


def _head_training(on_features: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("resnet18", n_classes=3, hidden=[16], dropout=0.3).to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (12, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(12) % 3
    if on_features:
        with torch.no_grad():
            model.eval()
            images = model.features(images.contiguous(memory_format=torch.channels_last))
    optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1, momentum=0.9)
    schedule = Cosine(optimizer, 6)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for epoch in range(2):
        torch.manual_seed(10 + epoch)  # dropout masks
        loader = DataLoader(TensorDataset(images, targets), batch_size=4, shuffle=True,
                            generator=torch.Generator().manual_seed(epoch))
        run_epoch(model, loader, optimizer, schedule, scaler, device=torch.device("cpu"), dtype=None,
                  frozen_backbone=True, on_features=on_features)
    return model.head.state_dict()


def test_a_head_epoch_on_features_equals_one_through_the_frozen_backbone():
    through, cached = _head_training(on_features=False), _head_training(on_features=True)
    for key in through:
        torch.testing.assert_close(cached[key], through[key], rtol=1e-5, atol=1e-6)


def _bank(fold_data, tmp_path, config, views):
    images = fold_data.train_images + fold_data.val_images
    ids = fold_data.train_ids + fold_data.val_ids
    bank = features_for(images, ids, config, views=views, device=torch.device("cpu"), workers=0)
    torch_save(bank, tmp_path / "features.pt")
    return tmp_path / "features.pt", bank


def test_the_head_phase_of_a_fold_on_cached_features_matches_training_through_the_backbone(fold_data, tmp_path):
    path, bank = _bank(fold_data, tmp_path, HEAD, views=1)
    assert bank["views"].shape == (1, 18, 512) and bank["eval"].shape == (18, 512)
    torch.testing.assert_close(bank["views"][0], bank["eval"])  # augment none: the view is the eval view
    metrics, through, _ = _train(fold_data, tmp_path / "through", HEAD)
    cached_metrics, cached, paths = train_on(fold_data, tmp_path / "cached", HEAD, path)
    for key, value in through["model"].items():
        torch.testing.assert_close(cached["model"][key], value, rtol=1e-4, atol=1e-5)
    assert cached_metrics["val_log_loss"] == pytest.approx(metrics["val_log_loss"], rel=1e-4)
    assert pd.read_csv(paths["history_path"])["on_features"].tolist() == [True, True]


def train_on(fold_data, out, config, features):
    from ensemble.train import train_fold

    paths = {"checkpoint_path": out / "ckpt.pt", "model_path": out / "model.pt",
             "history_path": out / "history.csv", "metrics_path": out / "metrics.json"}
    metrics = train_fold(fold_data, config, device=torch.device("cpu"), workers=0, features=features, **paths)
    return metrics, torch.load(out / "model.pt", weights_only=True), paths


def test_augmented_views_cycle_over_head_epochs_and_the_full_phase_uses_images(fold_data, tmp_path):
    config = replace(HEAD, augment="light", epochs=1)
    path, bank = _bank(fold_data, tmp_path, config, views=2)
    assert not torch.allclose(bank["views"][0], bank["views"][1])  # two different augmentations
    features = FeatureBank(path)
    rows = features.rows(fold_data.train_ids)
    torch.testing.assert_close(features.train_view(2, rows), features.train_view(0, rows))
    _, _, paths = train_on(fold_data, tmp_path / "run", config, path)
    assert pd.read_csv(paths["history_path"])["on_features"].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="mix pixels, not features"):
        train_on(fold_data, tmp_path / "mix", replace(config, mixup=0.2), path)
    with pytest.raises(ValueError, match="no cached features"):
        features.rows(["not-an-image"])
