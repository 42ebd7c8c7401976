import contextlib
import logging
import unittest.mock
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from ensemble.backbones import TIMM, TORCHVISION, build_table, get_backbone, table
from ensemble.models import build_model, make_head


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


@contextlib.contextmanager
def meta_parameters():
    """Create parameters and buffers on the meta device (shapes, no memory), other tensors as usual.

    torch.device("meta") as a context would also move the plain tensors some builders compute their layer
    widths with (torchvision's RegNet), which then cannot be read back.
    """
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module, name, tensor, persistent=True):
        register_buffer(module, name, None if tensor is None else tensor.to("meta"), persistent)

    with unittest.mock.patch.object(nn.Module, "register_parameter", parameter), \
            unittest.mock.patch.object(nn.Module, "register_buffer", buffer):
        yield


@pytest.mark.parametrize("name", TORCHVISION + TIMM)
def test_every_backbone_builds_and_carries_its_preprocessing(name):
    with meta_parameters():  # shapes only: no memory for resnet152's or senet154's weights
        model = build_model(name, n_classes=120, hidden=[4096])
    x = torch.zeros(2, 3, 224, 224, device="meta")
    features, out = model.backbone(x), model(x)
    assert out.shape == (2, 120)
    assert features.shape == (2, model.head[0].in_features)
    pre = get_backbone(name).preprocessing()
    assert pre.input_size >= 224 and 0.8 < pre.crop_pct <= 1 and len(pre.mean) == len(pre.std) == 3


def test_se_nets_come_from_timm_and_torchvision():
    assert {"seresnext26d_32x4d", "seresnext50_32x4d", "legacy_seresnet152"} <= set(TIMM)
    assert get_backbone("legacy_seresnet152").classifier == "last_linear"
    assert get_backbone("efficientnet_b0").classifier == "classifier"
    assert get_backbone("regnet_y_400mf").source == "torchvision"


def test_unknown_backbone_names_the_closest_valid_ones():
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet19': did you mean resnet18.*resnet\d"):
        get_backbone("resnet19")
    with pytest.raises(ValueError, match="did you mean convnext_tiny"):
        get_backbone("convnext_tinny")


@pytest.mark.parametrize("name,family", [
    ("resnet152.tv_in1k", "ResNet"), ("seresnext26d_32x4d", "SE-ResNeXt"), ("convnext_atto", "ConvNeXt"),
    ("efficientnetv2_rw_t", "EfficientNetV2"), ("vit_tiny_patch16_224", "ViT"),
    ("convnext_tiny.fb_in22k_ft_in1k", "ConvNeXt tag")])
def test_any_timm_model_by_name_or_tag_builds_and_runs(name, family):
    pre = get_backbone(name).preprocessing()
    with meta_parameters():  # at its own input size, shapes only
        model = build_model(name, n_classes=120, hidden=[4096])
        x = torch.zeros(2, 3, pre.input_size, pre.input_size, device="meta")
        assert model(x).shape == (2, 120)
    small = build_model(name, n_classes=5, hidden=[], image_size=32)  # and for real at a tiny size
    assert small(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 5)
    assert get_backbone(name).source == "timm"


def test_preprocessing_is_what_the_weights_expect():
    assert get_backbone("convnext_tiny.fb_in22k_ft_in1k").preprocessing().interpolation == "bicubic"
    a1 = get_backbone("resnet50.a1_in1k").preprocessing()
    assert (a1.crop_pct, a1.interpolation) == (0.95, "bicubic")
    tv = get_backbone("resnet50").preprocessing()  # torchvision's own: IMAGENET1K_V2, resize 232, crop 224
    assert (tv.input_size, round(tv.crop_pct, 3), tv.interpolation) == (224, 0.966, "bilinear")
    assert get_backbone("vit_tiny_patch16_224").preprocessing().fixed_input_size


def test_the_name_table_is_the_installed_timms_and_torchvisions():
    live = build_table()
    assert live["timm"] == table()["timm"] and live["torchvision"] == table()["torchvision"], (
        "timm or torchvision changed: python -m ensemble backbones --write-table ensemble/backbones.json.gz")


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
    with caplog.at_level(logging.INFO, logger="ensemble.weights"):
        model = build_model("resnet18", n_classes=3, hidden=[], weights=str(path))
    assert torch.equal(model.backbone.conv1.weight, net.conv1.weight.half().float())
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var.half().float())
    assert model.head[-1].out_features == 3
    assert ("replacing the weights file's classifier" in caplog.text) != drop_fc


def test_timm_full_model_file_loads_with_its_classifier_dropped(tmp_path, caplog):
    import timm

    torch.manual_seed(0)
    full = timm.create_model("seresnext26d_32x4d", num_classes=1000)
    path = tmp_path / "se.pt"
    torch.save({"state_dict": full.state_dict()}, path)
    with caplog.at_level(logging.INFO, logger="ensemble.weights"):
        model = build_model("seresnext26d_32x4d", n_classes=5, hidden=[], weights=str(path))
    assert torch.equal(model.backbone.layer1[0].se.fc1.weight, full.layer1[0].se.fc1.weight)
    assert "fc.bias, fc.weight" in caplog.text
    model.eval(), full.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.backbone(x), full.forward_head(full.forward_features(x), pre_logits=True))


def test_safetensors_backbone_file_loads(tmp_path):
    from safetensors.torch import save_file

    net, state = _reference_state()
    save_file({k: v.contiguous() for k, v in state.items() if not k.startswith("fc.")}, tmp_path / "w.safetensors")
    model = build_model("resnet18", n_classes=3, hidden=[], weights=str(tmp_path / "w.safetensors"))
    assert torch.equal(model.backbone.layer2[0].conv1.weight, net.layer2[0].conv1.weight.half().float())


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


@pytest.mark.parametrize("name", ["convnext_atto", "vit_tiny_patch16_224"])
def test_a_timm_models_own_weights_file_loads_like_any_users(tmp_path, name, caplog):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(2)
    full = timm.create_model(name, pretrained=False, num_classes=1000)  # as timm's hub ships it, classifier too
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, tmp_path / "model.safetensors")
    with caplog.at_level(logging.INFO, logger="ensemble.weights"):
        model = build_model(name, n_classes=3, hidden=[], weights=str(tmp_path / "model.safetensors"))
    assert "replacing the weights file's classifier" in caplog.text
    own = full.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in model.backbone.state_dict().items())
