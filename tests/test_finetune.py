import pandas as pd
import pytest
import torch
import torchvision
from test_train import CONFIG, Killed, _kill_after_first_checkpoint, _train

from ensemble.finetune import layer_ids, param_groups, set_train_mode
from ensemble.hparams import TrainConfig
from ensemble.models import build_model
from ensemble.schedule import Cosine


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("resnet18", n_classes=3, hidden=[8])


def _group_of(groups, param):
    return next(i for i, g in enumerate(groups) if any(p is param for p in g["params"]))


def _rates(groups):
    return sorted({g["lr"] for g in groups}, reverse=True)


def test_rates_fall_geometrically_from_head_to_stem(model):
    groups = param_groups(model, lr=0.1, n_groups=3, ratio=0.5)
    assert _rates(groups) == pytest.approx([0.1, 0.05, 0.025])
    assert groups[0]["lr"] == 0.1 and groups[-1]["lr"] == pytest.approx(0.025)  # head first, stem last
    assert groups[_group_of(groups, model.head[0].weight)]["lr"] == 0.1
    assert groups[_group_of(groups, model.backbone.layer4[1].conv2.weight)]["lr"] == pytest.approx(0.05)
    assert groups[_group_of(groups, model.backbone.conv1.weight)]["lr"] == pytest.approx(0.025)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # every parameter exactly once


def test_each_group_really_trains_at_its_rate_under_the_schedule(model):
    groups = param_groups(model, lr=0.1, n_groups=4, ratio=0.3)
    optimizer = torch.optim.SGD(groups, lr=0.1)
    schedule = Cosine(optimizer, total_steps=20, warmup_steps=5)
    for _ in range(7):
        schedule.step()
    rates = _rates(optimizer.param_groups)
    assert rates[0] == pytest.approx(0.1 * schedule.factor(7))
    for shallower, deeper in zip(rates, rates[1:]):
        assert deeper / shallower == pytest.approx(0.3)


def test_single_group_is_one_rate_for_everything(model):
    groups = param_groups(model, lr=0.02, n_groups=1, ratio=0.1)
    assert _rates(groups) == [0.02]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_no_weight_decay_on_norms_and_biases(model):
    groups = param_groups(model, lr=0.1, weight_decay=0.05)
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay_of[id(model.backbone.conv1.weight)] == 0.05
    assert decay_of[id(model.head[0].weight)] == 0.05
    assert decay_of[id(model.backbone.bn1.weight)] == 0.0
    assert decay_of[id(model.head[0].bias)] == 0.0


def test_layer_decay_gives_every_block_its_own_rate(model):
    groups = param_groups(model, lr=1.0, layer_decay=0.5)
    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    n = len(set(layer_ids(model.backbone).values()))
    assert rate_of[id(model.head[0].weight)] == 1.0
    assert rate_of[id(model.backbone.layer4[1].conv2.weight)] == 0.5  # the deepest block
    assert rate_of[id(model.backbone.layer4[0].conv1.weight)] == 0.25
    assert rate_of[id(model.backbone.conv1.weight)] == pytest.approx(0.5**n)  # the stem
    with pytest.raises(ValueError, match="use one of them"):
        param_groups(model, lr=1.0, layer_decay=0.5, n_groups=3)


def test_layer_decay_follows_timms_own_grouping_for_timm_backbones():
    torch.manual_seed(0)
    model = build_model("seresnext26d_32x4d", n_classes=3, hidden=[])
    ids = layer_ids(model.backbone)
    assert ids["conv1.0.weight"] == 0 and ids["layer4.1.se.fc2.weight"] == max(ids.values())
    groups = param_groups(model, lr=1.0, layer_decay=0.8)
    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    n = max(ids.values()) + 1
    assert rate_of[id(model.backbone.conv1[0].weight)] == pytest.approx(0.8**n)
    assert rate_of[id(model.backbone.layer4[1].se.fc2.weight)] == pytest.approx(0.8)


def test_head_only_groups_hold_the_head_alone(model):
    groups = param_groups(model, lr=0.1, weight_decay=0.01, head_only=True)
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in model.head.parameters())


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


def test_every_optimizer_the_schema_offers_trains_both_phases(model):
    """The schema's names are timm's; each builds through make_optimizer in the head and the full phase and
    moves the weights of that phase alone, at the schedule's rate."""
    from pathlib import Path

    import yaml

    from ensemble.optim import make_optimizer

    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    names = schema["$defs"]["model"]["properties"]["optimizer"]["enum"]
    assert {"adamw", "sgd", "muon"} <= set(names)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    for name in names:
        for phase in ("head", "full"):
            torch.manual_seed(0)
            net = build_model("resnet18", n_classes=3, hidden=[8])
            config = TrainConfig(backbone="resnet18", optimizer=name, lr=1e-3, head_epochs=1, epochs=1, warmup_epochs=0)
            optimizer, schedule = make_optimizer(net, config, phase, steps_per_epoch=2)
            before = {k: v.clone() for k, v in net.state_dict().items()}
            net.train()
            for _ in range(2):  # ADOPT's first step only sets its second moment
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(net(x), y).backward()
                optimizer.step()
                schedule.step()
            moved = {k for k, v in net.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])}
            head_moved = {k for k in moved if k.startswith("head.")}
            assert head_moved, (name, phase)
            weights = {k for k in moved if k.endswith("weight") and not k.startswith("head.")}
            if phase == "head":
                assert not weights, (name, weights)  # the frozen backbone keeps its weights
            else:
                assert "backbone.conv1.weight" in moved, name  # the stem trains too
