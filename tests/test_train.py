import logging

import pandas as pd
import pytest
import torch
import torchvision

import ensemble.train as train_module
from ensemble.hparams import TrainConfig
from ensemble.models import build_model
from ensemble.optim import make_optimizer
from ensemble.train import train_fold

CONFIG = TrainConfig(backbone="resnet18", hidden=(8,), image_size=24, head_epochs=0, epochs=2, batch_size=4,
                     lr=0.05, optimizer="sgd", weight_decay=5e-4, label_smoothing=0.0,
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


def _with(**changes) -> TrainConfig:
    return TrainConfig(**{**CONFIG.__dict__, **changes})


def test_the_optimizer_is_timms_by_name_with_no_decay_on_norms_and_biases():

    model = build_model("resnet18", n_classes=3, hidden=[8])
    for name, kind in (("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)):
        optimizer, _ = make_optimizer(model, _with(optimizer=name, weight_decay=0.05), "full", 5)
        assert isinstance(optimizer, kind)
        decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
        assert decay[id(model.backbone.conv1.weight)] == 0.05 and decay[id(model.backbone.bn1.bias)] == 0.0
    assert optimizer.param_groups[0]["nesterov"]  # timm's sgd is Nesterov's


def test_an_ema_that_follows_every_step_saves_the_plain_weights(fold_data, tmp_path):
    _, plain, _ = _train(fold_data, tmp_path / "plain", _with(optimizer="adamw", lr=1e-3))
    _, instant, _ = _train(fold_data, tmp_path / "instant", _with(optimizer="adamw", lr=1e-3, ema=1e-12))
    assert all(torch.equal(plain["model"][k], instant["model"][k]) for k in plain["model"])


def test_a_slow_ema_is_what_is_kept_and_validated(fold_data, tmp_path):
    _, plain, _ = _train(fold_data, tmp_path / "plain", _with(optimizer="adamw", lr=1e-3))
    metrics, averaged, paths = _train(fold_data, tmp_path / "ema", _with(optimizer="adamw", lr=1e-3, ema=0.9))
    key = "head.0.weight"
    assert not torch.equal(plain["model"][key], averaged["model"][key])
    # the kept weights lie between the start and the plain training's end, nearer the end
    torch.manual_seed(CONFIG.seed)

    start = build_model("resnet18", n_classes=3, hidden=[8]).state_dict()[key]
    moved, plain_moved = (averaged["model"][key] - start).norm(), (plain["model"][key] - start).norm()
    assert 0 < moved < plain_moved
    assert metrics["val_log_loss"] == pytest.approx(pd.read_csv(paths["history_path"])["val_loss"].iloc[-1])


def test_gradient_clipping_limits_each_step(fold_data, tmp_path):
    torch.manual_seed(CONFIG.seed)

    start = build_model("resnet18", n_classes=3, hidden=[8]).state_dict()["head.0.weight"]
    config = _with(optimizer="momentum", momentum=0.0, weight_decay=0.0, lr=0.05)  # plain SGD
    _, free, _ = _train(fold_data, tmp_path / "free", config)
    _, clipped, _ = _train(fold_data, tmp_path / "clipped", _with(**{**config.__dict__, "clip_grad": 1e-4}))
    steps = 2 * (len(fold_data.train_targets) // CONFIG.batch_size)
    # plain SGD moves a weight by lr x gradient, so each step's move is at most lr x clip_grad
    assert (clipped["model"]["head.0.weight"] - start).norm() <= steps * 0.05 * 1e-4 * 1.001
    assert (free["model"]["head.0.weight"] - start).norm() > 100 * steps * 0.05 * 1e-4


def test_a_corrupt_checkpoint_is_moved_aside_not_deleted(fold_data, tmp_path, caplog):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "ckpt.pt").write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.WARNING, logger="ensemble.checkpoint"):
        _train(fold_data, tmp_path)
    aside = list(tmp_path.glob("ckpt.pt.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"half a checkpoint"
    assert "moved it to" in caplog.text


def _key(fold_data, config=CONFIG, **context_changes):
    run = train_module.FoldRun(fold_data, config, torch.device("cpu"), 0, None,
                                data_digest=context_changes.get("data_digest", "abc"))
    return run.key


def test_the_checkpoint_key_covers_what_changes_the_weights_and_only_that(fold_data, tmp_path):
    base = _key(fold_data)
    assert _key(fold_data, data_digest="abd") != base  # the pixels changed
    assert _key(fold_data, TrainConfig(**{**CONFIG.__dict__, "precision": "bf16"})) != base
    weights = tmp_path / "w.pt"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), weights)
    with_file = _key(fold_data, TrainConfig(**{**CONFIG.__dict__, "weights": str(weights)}))
    torch.manual_seed(2)
    torch.save(torchvision.models.resnet18(num_classes=5).state_dict(), weights)  # same name, new bytes
    assert _key(fold_data, TrainConfig(**{**CONFIG.__dict__, "weights": str(weights)})) != with_file
    from ensemble.checkpoint import checkpoint_key, context

    ctx = context(weights="none", data_digest="x", image_source="files", features=0, precision="None")
    assert set(ctx) == {"data", "weights_file", "image_source", "features", "precision", "augment_on", "version",
                        "decode"}
    keys = {checkpoint_key({}, [], [], {**ctx, **change}) for change in
            [{}, {"image_source": "cache"}, {"features": 4}, {"features": 2}, {"version": "9"}, {"decode": 1},
             {"augment_on": "device"}]}
    assert len(keys) == 7  # the number of feature views too: a head phase never resumes on another bank
    assert _key(fold_data) == base  # and nothing else: workers, threads and the GPU slot are not in it


def test_a_diverged_fold_stops_at_once_naming_it_and_keeps_the_last_good_checkpoint(fold_data, tmp_path,
                                                                                     monkeypatch):
    import ensemble.loops as loops

    real, calls = loops.soft_nll, []

    def nan_in_epoch_two(log_probs, target, label_smoothing=0.0):
        calls.append(1)
        loss = real(log_probs, target, label_smoothing)
        return loss * float("nan") if len(calls) > 3 else loss  # 3 batches per epoch

    monkeypatch.setattr(loops, "soft_nll", nan_in_epoch_two)
    out = tmp_path / "results/run/train/r18/fold0"
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 4})
    with pytest.raises(ValueError, match=r"train/r18/fold0 diverged in epoch 2/4: the training loss is nan"):
        _train(fold_data, out, config)
    assert len(calls) == 4  # stopped at the first bad batch
    assert torch.load(out / "ckpt.pt", weights_only=True)["epoch"] == 1 and not (out / "model.pt").exists()


@pytest.mark.parametrize("augment", ["light", "timm"])
def test_results_do_not_depend_on_the_number_of_loader_workers(fold_data, tmp_path, augment):
    config = TrainConfig(**{**CONFIG.__dict__, "augment": augment, "dropout": 0.5})
    saved = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        train_fold(fold_data, config, device=torch.device("cpu"), workers=workers, checkpoint_path=out / "c.pt",
                   model_path=out / "model.pt", history_path=out / "h.csv", metrics_path=out / "m.json")
        saved.append(torch.load(out / "model.pt", weights_only=True)["model"])
    assert all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])


def test_a_compiled_forward_trains_the_same_and_saves_the_plain_weights(fold_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ENSEMBLE_COMPILE_BACKEND", "eager")  # dynamo's graph capture, no code generation
    config = TrainConfig(**{**CONFIG.__dict__, "epochs": 1, "ema": 0.9})
    _, plain, _ = _train(fold_data, tmp_path / "plain", config)
    out = tmp_path / "compiled"
    metrics = train_fold(fold_data, config, device=torch.device("cpu"), workers=0, checkpoint_path=out / "c.pt",
                         model_path=out / "model.pt", history_path=out / "h.csv", metrics_path=out / "m.json",
                         compile_model=True)
    compiled = torch.load(out / "model.pt", weights_only=True)
    assert compiled["model"].keys() == plain["model"].keys()  # no "_orig_mod." prefix: loads anywhere
    assert all(torch.allclose(compiled["model"][k].float(), plain["model"][k].float(), atol=1e-5)
               for k in plain["model"])
    assert metrics["compiled"] is True and metrics["compile_seconds"] is not None
    assert compiled["config"] == plain["config"]  # not part of the training's identity
