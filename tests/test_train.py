import logging

import pandas as pd
import pytest
import torch

import ensemble.train as train_module
from ensemble.hparams import TrainConfig
from ensemble.train import train_fold

CONFIG = TrainConfig(backbone="resnet18", hidden=(8,), image_size=24, epochs=2, batch_size=4, lr=0.05,
                     precision="fp32", seed=3)


def _train(fold_data, out, config=CONFIG):
    paths = {"checkpoint_path": out / "ckpt.pt", "model_path": out / "model.pt",
             "history_path": out / "history.csv", "metrics_path": out / "metrics.json"}
    metrics = train_fold(fold_data, config, device=torch.device("cpu"), workers=0, **paths)
    return metrics, torch.load(out / "model.pt", weights_only=True), paths


class Killed(Exception):
    pass


def _kill_after_first_checkpoint(monkeypatch):
    real_save = train_module.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        raise Killed

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)


def test_outputs_describe_the_training(fold_data, tmp_path):
    metrics, saved, paths = _train(fold_data, tmp_path)
    history = pd.read_csv(paths["history_path"])
    assert list(history.columns) == ["epoch", "phase", "train_loss", "val_loss", "val_accuracy", "lr",
                                      "lr_stem", "seconds", "on_features"]
    assert history["epoch"].tolist() == [1, 2]
    assert metrics["epoch_kept"] == 2 and metrics["optimistic"] is False
    assert metrics["val_log_loss"] == pytest.approx(history["val_loss"].iloc[-1])
    assert saved["classes"] == fold_data.classes and saved["config"]["backbone"] == "resnet18"
    assert not paths["checkpoint_path"].exists()  # superseded by the model file


def test_resumed_training_equals_training_never_stopped(fold_data, tmp_path, monkeypatch):
    _, straight, _ = _train(fold_data, tmp_path / "straight")
    with monkeypatch.context() as m:
        _kill_after_first_checkpoint(m)
        with pytest.raises(Killed):
            _train(fold_data, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "ckpt.pt").exists()
    assert not (tmp_path / "resumed" / "model.pt").exists()
    _, resumed, paths = _train(fold_data, tmp_path / "resumed")
    assert straight["model"].keys() == resumed["model"].keys()
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert pd.read_csv(paths["history_path"])["epoch"].tolist() == [1, 2]


def test_stale_checkpoint_is_discarded_not_resumed(fold_data, tmp_path, monkeypatch, caplog):
    with monkeypatch.context() as m:
        _kill_after_first_checkpoint(m)
        with pytest.raises(Killed):
            _train(fold_data, tmp_path / "a")
    changed = TrainConfig(**{**CONFIG.__dict__, "lr": 0.01})
    with caplog.at_level(logging.INFO, logger="ensemble.checkpoint"):
        _, after_change, _ = _train(fold_data, tmp_path / "a", changed)
    assert "discarding stale checkpoint" in caplog.text
    _, fresh, _ = _train(fold_data, tmp_path / "b", changed)
    for key, value in fresh["model"].items():
        assert torch.equal(value, after_change["model"][key]), key


def test_keep_best_keeps_the_lowest_validation_loss(fold_data, tmp_path):
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 3, "keep": "best"})
    metrics, _, paths = _train(fold_data, tmp_path, config)
    history = pd.read_csv(paths["history_path"])
    best = history.loc[history["val_loss"].idxmin()]
    assert metrics["epoch_kept"] == best["epoch"] and metrics["optimistic"] is True
    assert metrics["val_log_loss"] == pytest.approx(best["val_loss"])


def test_a_refit_trains_on_every_image_without_a_validation_score(fold_data, tmp_path):
    from dataclasses import replace

    everything = replace(fold_data, train_images=fold_data.train_images + fold_data.val_images,
                         train_targets=fold_data.train_targets + fold_data.val_targets, val_images=[], val_targets=[])
    metrics, saved, paths = _train(everything, tmp_path)
    assert metrics["train_images"] == 18 and metrics["val_images"] == 0
    assert metrics["val_log_loss"] is None and metrics["epoch_kept"] == 2
    assert pd.read_csv(paths["history_path"])["val_loss"].isna().all()
    with pytest.raises(ValueError, match="no validation set"):
        _train(everything, tmp_path / "best", replace(CONFIG, keep="best"))
