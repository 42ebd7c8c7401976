import logging
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from ensemble.models import BACKBONES, build_model, get_backbone, make_head


@pytest.mark.parametrize("hidden,expected", [
    ([4096], [nn.Linear, nn.ReLU, nn.Linear]),
    ([], [nn.Linear]),
    ([64, 32], [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]),
])
def test_head_layers_follow_hidden_widths(hidden, expected):
    head = make_head(512, hidden, n_classes=120)
    assert [type(m) for m in head] == expected
    assert head[0].in_features == 512 and head[-1].out_features == 120
    assert head(torch.zeros(3, 512)).shape == (3, 120)


def test_model_maps_images_to_class_logits():
    model = build_model("resnet18", n_classes=7, hidden=[32])
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    assert isinstance(model.backbone.fc, nn.Identity)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_with_its_feature_width(name):
    with torch.device("meta"):  # no memory for resnet152's weights
        model = build_model(name, n_classes=120, hidden=[4096])
        out = model(torch.zeros(2, 3, 224, 224))
    assert out.shape == (2, 120)
    assert model.head[0].in_features == get_backbone(name).num_features


def test_unknown_backbone_lists_the_valid_names():
    with pytest.raises(ValueError, match="resnet152"):
        get_backbone("resnet19")


def _reference_state(prefix=""):
    torch.manual_seed(1)
    net = torchvision.models.resnet18(num_classes=10)
    return net, {prefix + k: v.half() for k, v in net.state_dict().items()}  # fp16, like ../shared/models


@pytest.mark.parametrize("prefix,drop_fc", [("", False), ("", True), ("module.", False)])
def test_local_weights_load_the_backbone_and_replace_the_classifier(tmp_path, caplog, prefix, drop_fc):
    net, state = _reference_state(prefix)
    if drop_fc:
        state = {k: v for k, v in state.items() if ".fc." not in f".{k}"}
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    with caplog.at_level(logging.INFO, logger="ensemble.models"):
        model = build_model("resnet18", n_classes=3, hidden=[], weights=str(path))
    assert torch.equal(model.backbone.conv1.weight, net.conv1.weight.half().float())
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var.half().float())
    assert model.head[-1].out_features == 3
    assert ("replacing the weights file's classifier" in caplog.text) != drop_fc


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "r34.pt"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(ValueError, match="do not fit resnet18"):
        build_model("resnet18", n_classes=3, hidden=[], weights=str(path))


def test_missing_weights_file_says_what_weights_can_be(tmp_path):
    with pytest.raises(FileNotFoundError, match="'none', 'imagenet'"):
        build_model("resnet18", n_classes=3, hidden=[], weights=str(tmp_path / "nope.pt"))


def test_imagenet_offline_names_the_file_and_where_to_put_it(monkeypatch, tmp_path):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError) as err:
        build_model("resnet50", n_classes=3, hidden=[], weights="imagenet")
    message = str(err.value)
    assert "resnet50-" in message and str(tmp_path / "hub" / "checkpoints") in message
