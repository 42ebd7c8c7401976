"""SGDR inside training: restarts in the history, snapshots, early stopping that judges at cycle ends."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import CONFIG, _train

import ensemble.train as train_module
from ensemble.folds import assign_folds
from ensemble.hparams import TrainConfig, should_stop
from ensemble.lr_finder import find_lr
from ensemble.predict import load_model, predict_files, predict_fold


def _history(losses):
    return [{"epoch": i + 1, "val_loss": v} for i, v in enumerate(losses)]


def test_plain_cosine_judges_every_epoch():
    config = TrainConfig("resnet18", head_epochs=0, epochs=6, patience=2)
    assert not should_stop(config, _history([1.0, 0.9, 0.95]))
    assert should_stop(config, _history([1.0, 0.9, 0.95, 0.97]))
    plain = TrainConfig("resnet18", head_epochs=0, epochs=6)
    assert not should_stop(plain, _history([1.0, 2, 3, 4, 5]))  # patience 0: off


def test_sgdr_judges_only_at_cycle_ends():
    config = TrainConfig("resnet18", head_epochs=0, epochs=8, cycle_epochs=2, patience=1)
    assert config.cycle_ends() == [2, 4, 6, 8]
    # The restart at epoch 3 raises the loss, but the cycle end at epoch 4 is better than epoch 2: go on.
    assert not should_stop(config, _history([1.0, 0.8, 1.5, 0.7]))
    assert should_stop(config, _history([1.0, 0.8, 1.5, 0.9]))


def test_head_phase_is_never_judged():
    config = TrainConfig("resnet18", head_epochs=2, epochs=2, patience=1)
    assert [e for e in range(1, 5) if config.judged(e)] == [3, 4]


def test_sgdr_restarts_and_keeps_a_snapshot_per_cycle(fold_data, tmp_path):
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 4, "cycle_epochs": 2, "snapshots": True,
                            "warmup_epochs": 0.0})
    metrics, saved, paths = _train(fold_data, tmp_path, config)
    history = pd.read_csv(paths["history_path"])
    lr = history["lr"].tolist()  # the rate at each epoch's first batch
    assert lr[0] == pytest.approx(CONFIG.lr) and lr[2] == pytest.approx(CONFIG.lr)  # cycle starts at the peak
    assert lr[1] < lr[0] and lr[3] < lr[2]
    assert [s["epoch"] for s in saved["snapshots"]] == [2, 4] and metrics["snapshot_epochs"] == [2, 4]
    for key, value in saved["snapshots"][-1]["model"].items():  # the last cycle ends with the final model
        assert torch.equal(value, saved["model"][key])


def test_predictions_average_the_snapshots(fold_data, tiny_dataset, tmp_path):
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 4, "cycle_epochs": 2, "snapshots": True})
    _, saved, paths = _train(fold_data, tmp_path, config)
    folds = assign_folds(pd.read_csv(tiny_dataset / "labels.csv", dtype=str), k=3, seed=0)
    test_ids = pd.read_csv(tiny_dataset / "sample_submission.csv", dtype=str)["id"].tolist()
    oof, test, scores = predict_fold(paths["model_path"], folds, 0, tiny_dataset, test_ids,
                                     device=torch.device("cpu"), workers=0, batch_size=8)
    model, saved = load_model(paths["model_path"], torch.device("cpu"))
    test_paths = [tiny_dataset / "test" / f"{i}.jpg" for i in test_ids]
    each = []
    for snapshot in saved["snapshots"]:
        model.load_state_dict(snapshot["model"])
        each.append(predict_files(model, saved, test_paths, device=torch.device("cpu"), workers=0, batch_size=8))
    np.testing.assert_allclose(test.iloc[:, 1:].to_numpy(), np.mean(each, axis=0), rtol=1e-6)
    assert scores["n_members"] == 2 and {"log_loss", "log_loss_final_model"} <= set(scores)
    json.dumps(scores)  # written as JSON by the predict verb


def test_training_stops_early_and_says_so(fold_data, tmp_path, monkeypatch):
    losses = iter([1.0, 1.2, 1.3, 1.4])
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: (next(losses), 0.5))
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 4, "patience": 1})
    metrics, _, paths = _train(fold_data, tmp_path, config)
    assert pd.read_csv(paths["history_path"])["epoch"].tolist() == [1, 2]
    assert metrics["early_stopped"] and metrics["epochs_run"] == 2 and metrics["optimistic"]


@pytest.mark.parametrize("optimizer", ["adamw", "lamb"])
def test_two_phases_sgdr_snapshots_and_the_lr_finder_work_with_other_optimizers(fold_data, tmp_path, optimizer):
    config = TrainConfig(**{**CONFIG.__dict__, "optimizer": optimizer, "lr": 1e-3, "weight_decay": 0.05,
                            "head_epochs": 1, "epochs": 4, "cycle_epochs": 2, "snapshots": True,
                            "warmup_epochs": 0.0, "ema": 0.9})
    metrics, saved, paths = _train(fold_data, tmp_path, config)
    history = pd.read_csv(paths["history_path"])
    assert history["phase"].tolist() == ["head", "full", "full", "full", "full"]
    lr = history["lr"].tolist()
    assert lr[1] == pytest.approx(1e-3) and lr[3] == pytest.approx(1e-3) and lr[2] < lr[1]  # a restart
    assert metrics["snapshot_epochs"] == [3, 5]
    for key, value in saved["snapshots"][-1]["model"].items():  # the EMA at the last cycle end is the model kept
        assert torch.equal(value, saved["model"][key])
    table, suggested = find_lr(fold_data, config, device=torch.device("cpu"), workers=0, num_steps=8)
    assert len(table) > 1 and 0 < suggested < 10
