import pandas as pd
import pytest
import torch
import torchvision
from test_train import CONFIG, Killed, _kill_after_first_checkpoint, _train

from ensemble.finetune import freeze_stages, layer_ids, param_groups, set_train_mode, stage_ids
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


@pytest.mark.parametrize("name,stem,first_stage,second_stage", [
    ("resnet18", "conv1.weight", "layer1.1.bn2.bias", "layer2.0.conv1.weight"),
    ("regnet_y_400mf", "stem.1.weight", "trunk_output.block1.block1-0.proj.0.weight",
     "trunk_output.block2.block2-0.proj.0.weight"),
    ("efficientnet_b0", "features.0.0.weight", "features.1.0.block.0.0.weight", "features.2.0.block.0.0.weight"),
    ("seresnext26d_32x4d", "conv1.0.weight", "layer1.1.se.fc2.weight", "layer2.0.conv1.weight"),  # timm's own
])
def test_stages_are_the_stem_then_each_stage_of_blocks(name, stem, first_stage, second_stage):
    backbone = build_model(name, n_classes=3, hidden=[]).backbone
    ids = stage_ids(backbone)
    assert set(ids) == {n for n, _ in backbone.named_parameters()}
    assert (ids[stem], ids[first_stage], ids[second_stage]) == (0, 1, 2)
    assert sorted(set(ids.values())) == list(range(max(ids.values()) + 1))


def test_freezing_stages_leaves_them_out_of_the_optimizer_and_of_training(model):
    """Phase 2 with the stem and the first stage frozen: their weights never move and the optimizer does not hold
    them, while their BatchNorm statistics still adapt and every later stage trains."""
    from ensemble.optim import make_optimizer

    config = TrainConfig(backbone="resnet18", freeze_stages=2, lr=1e-2, head_epochs=1, epochs=1, warmup_epochs=0)
    optimizer, _ = make_optimizer(model, config, "full", steps_per_epoch=2)
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    frozen = [*model.backbone.conv1.parameters(), *model.backbone.bn1.parameters(), *model.backbone.layer1.parameters()]
    assert not any(id(p) in held or p.requires_grad for p in frozen)
    assert all(id(p) in held for p in [*model.backbone.layer2.parameters(), *model.head.parameters()])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_train_mode(model, frozen_backbone=False)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    moved = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert "backbone.layer2.0.conv1.weight" in moved and "head.0.weight" in moved
    params = {n for n, _ in model.named_parameters()}
    assert not {k for k in moved & params if k.startswith(("backbone.conv1.", "backbone.bn1.", "backbone.layer1."))}
    assert {"backbone.bn1.running_mean", "backbone.layer1.0.bn1.running_var"} <= moved  # statistics adapt
    make_optimizer(model, config, "head", steps_per_epoch=2)
    assert not any(p.requires_grad for p in model.backbone.parameters())  # the head phase freezes it all


def test_freeze_stages_counts_the_stem_and_refuses_to_freeze_everything(model):
    freeze_stages(model.backbone, 0)
    assert all(p.requires_grad for p in model.backbone.parameters())
    freeze_stages(model.backbone, 4)  # all but layer4
    assert [n for n, p in model.backbone.named_parameters() if p.requires_grad][0] == "layer4.0.conv1.weight"
    with pytest.raises(ValueError, match="leaves nothing of the backbone to train: it has 5 stages"):
        freeze_stages(model.backbone, 5)


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


def _history_of_a_run_that_resumes_exactly(fold_data, tmp_path, monkeypatch, config) -> pd.DataFrame:
    """Train ``config`` straight, and again killed after its first epoch and resumed: the same weights."""
    _, straight, paths = _train(fold_data, tmp_path / "straight", config)
    with monkeypatch.context() as m:
        _kill_after_first_checkpoint(m)
        with pytest.raises(Killed):
            _train(fold_data, tmp_path / "resumed", config)
    _, resumed, _ = _train(fold_data, tmp_path / "resumed", config)
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    return pd.read_csv(paths["history_path"])


def test_two_phases_resume_across_the_boundary_exactly(fold_data, tmp_path, monkeypatch):
    config = TrainConfig(**{**CONFIG.__dict__, "head_epochs": 1, "epochs": 1, "lr_groups": 3, "lr_ratio": 0.5})
    history = _history_of_a_run_that_resumes_exactly(fold_data, tmp_path, monkeypatch, config)
    assert history["phase"].tolist() == ["head", "full"]
    assert history["lr_stem"].iloc[1] == pytest.approx(history["lr"].iloc[1] * 0.25)
    assert history["lr_stem"].iloc[0] == 0  # the frozen head phase: the stem does not train


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


def test_gradual_unfreezing_puts_top_stage_epochs_between_the_head_and_the_whole_network():
    config = TrainConfig("resnet18", head_epochs=2, top_stage_epochs=2, epochs=4, cycle_epochs=1, patience=1)
    assert [config.phase(e) for e in range(config.total_epochs)] == ["head"] * 2 + ["top"] * 2 + ["full"] * 2
    assert config.cycle_ends() == [5, 6]  # SGDR cycles over the whole-network epochs alone
    assert [e for e in range(1, 7) if config.judged(e)] == [5, 6]
    from ensemble.config import check_models

    with pytest.raises(ValueError, match=r"models.m: top_stage_epochs \(4\) counts among epochs \(4\)"):
        check_models({"m": {"backbone": "resnet18", "top_stage_epochs": 4, "epochs": 4}}, seed=0)


def test_the_top_phase_trains_the_last_stage_and_the_head_alone(model):
    from ensemble.optim import make_optimizer

    config = TrainConfig(**{**CONFIG.__dict__, "top_stage_epochs": 1, "epochs": 3})
    optimizer, schedule = make_optimizer(model, config, "top", steps_per_epoch=5)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {n for n, _ in model.named_parameters() if n.startswith(("backbone.layer4.", "head."))}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} <= \
        {id(p) for p in model.parameters() if p.requires_grad}
    assert schedule.cycles == [(0, 5)]  # one epoch of its own cosine
    optimizer, schedule = make_optimizer(model, config, "full", steps_per_epoch=5)
    assert all(p.requires_grad for p in model.parameters()) and schedule.cycles == [(0, 10)]  # the 2 left


def test_gradual_unfreezing_resumes_across_its_phases_exactly(fold_data, tmp_path, monkeypatch):
    config = TrainConfig(**{**CONFIG.__dict__, "head_epochs": 1, "top_stage_epochs": 1, "epochs": 2})
    history = _history_of_a_run_that_resumes_exactly(fold_data, tmp_path, monkeypatch, config)
    assert history["phase"].tolist() == ["head", "top", "full"]
    assert history["lr_stem"].tolist()[:2] == [0, 0] and history["lr_stem"].iloc[2] > 0  # the stem: full only
