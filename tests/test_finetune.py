import pandas as pd
import pytest
import torch
import torchvision
from test_train import CONFIG, Killed, _kill_after_first_checkpoint, _train

from ensemble.finetune import param_groups, set_train_mode
from ensemble.hparams import TrainConfig
from ensemble.models import build_model
from ensemble.schedule import Cosine


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("resnet18", n_classes=3, hidden=[8])


def _group_of(groups, param):
    return next(i for i, g in enumerate(groups) if any(p is param for p in g["params"]))


def test_rates_fall_geometrically_from_head_to_stem(model):
    groups = param_groups(model, lr=0.1, n_groups=3, ratio=0.5)
    assert [g["lr"] for g in groups] == pytest.approx([0.1, 0.05, 0.025])
    assert _group_of(groups, model.head[0].weight) == 0
    assert _group_of(groups, model.backbone.layer4[1].conv2.weight) == 1
    assert _group_of(groups, model.backbone.conv1.weight) == 2
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # every parameter exactly once


def test_each_group_really_trains_at_its_rate_under_the_schedule(model):
    groups = param_groups(model, lr=0.1, n_groups=4, ratio=0.3)
    optimizer = torch.optim.SGD(groups, lr=0.1)
    schedule = Cosine(optimizer, total_steps=20, warmup_steps=5)
    for _ in range(7):
        schedule.step()
    rates = [g["lr"] for g in optimizer.param_groups]
    assert rates[0] == pytest.approx(0.1 * schedule.factor(7))
    for shallower, deeper in zip(rates, rates[1:]):
        assert deeper / shallower == pytest.approx(0.3)


def test_single_group_is_one_rate_for_everything(model):
    groups = param_groups(model, lr=0.02, n_groups=1, ratio=0.1)
    assert len(groups) == 1 and len(groups[0]["params"]) == len(list(model.parameters()))


def test_frozen_backbone_keeps_batchnorm_in_eval_mode(model):
    set_train_mode(model, frozen_backbone=True)
    assert model.head.training and not model.backbone.training and not model.backbone.bn1.training
    set_train_mode(model, frozen_backbone=False)
    assert model.backbone.layer1[0].bn1.training


def test_head_phase_leaves_backbone_weights_and_statistics_bit_identical(fold_data, tmp_path):
    torch.manual_seed(5)
    start = torchvision.models.resnet18(num_classes=10)
    for m in start.modules():  # non-trivial BatchNorm statistics, which a train-mode pass would move
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    torch.save(start.state_dict(), tmp_path / "start.pt")
    config = TrainConfig(**{**CONFIG.__dict__, "weights": str(tmp_path / "start.pt"), "head_epochs": 2,
                            "epochs": 0})
    _, saved, paths = _train(fold_data, tmp_path, config)
    for key, value in start.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(saved["model"][f"backbone.{key}"], value), key
    assert pd.read_csv(paths["history_path"])["phase"].tolist() == ["head", "head"]
    torch.manual_seed(config.seed)  # the initial head of that training, which must have moved
    initial = build_model("resnet18", n_classes=3, hidden=[8])
    assert not torch.equal(saved["model"]["head.0.weight"], initial.head[0].weight)


def test_two_phases_resume_across_the_boundary_exactly(fold_data, tmp_path, monkeypatch):
    config = TrainConfig(**{**CONFIG.__dict__, "head_epochs": 1, "epochs": 1, "lr_groups": 3, "lr_ratio": 0.5})
    _, straight, paths = _train(fold_data, tmp_path / "straight", config)
    history = pd.read_csv(paths["history_path"])
    assert history["phase"].tolist() == ["head", "full"]
    assert history["lr_stem"].iloc[1] == pytest.approx(history["lr"].iloc[1] * 0.25)
    with monkeypatch.context() as m:
        _kill_after_first_checkpoint(m)
        with pytest.raises(Killed):
            _train(fold_data, tmp_path / "resumed", config)
    _, resumed, _ = _train(fold_data, tmp_path / "resumed", config)
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
