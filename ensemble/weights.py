"""The weights a backbone starts from: ``none``, ``imagenet`` (the library's own weights and cache), or a file.

A file may hold a full network (its classifier is dropped, and the log says so) or a backbone only, as a
plain state dict, a checkpoint with a ``model`` or ``state_dict`` entry, or safetensors. Every ``torch.load``
uses ``weights_only=True``: a weights file cannot run code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from ensemble.backbones import Backbone

log = logging.getLogger(__name__)
STRIPPED_PREFIXES = ("module.", "backbone.")  # DataParallel, and this project's own Classifier


def load_pretrained(net: nn.Module, backbone: Backbone, weights: str) -> None:
    """Load ``weights`` into the classifier-less ``net`` (in place); ``none`` keeps the random init."""
    if weights == "none":
        return
    state = imagenet_state(backbone) if weights == "imagenet" else read_state_file(Path(weights).expanduser())
    load_features(net, backbone, state)


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pt/.pth/.bin file (weights only) or a .safetensors file."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found; weights must be 'none', 'imagenet' or the "
                                "path of a state-dict file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):  # checkpoints of this project, torchvision's references, Lightning
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def imagenet_state(backbone: Backbone) -> dict[str, torch.Tensor]:
    """ImageNet weights through torchvision's weights API or timm's hub download, each with its own cache."""
    if backbone.source == "timm":
        import timm

        cfg = timm.get_pretrained_cfg(backbone.name).to_dict()
        hub = cfg.get("hf_hub_id")
        if hub:
            from huggingface_hub.constants import HF_HUB_CACHE

            where = (f"https://huggingface.co/{hub}/resolve/main/model.safetensors; or fill the Hugging Face cache "
                     f"folder {HF_HUB_CACHE}/models--{hub.replace('/', '--')}/ (HF_HOME moves it)")
        else:
            where = cfg.get("url")
        try:
            return timm.create_model(backbone.name, pretrained=True, num_classes=0).state_dict()
        except Exception as e:  # hub and network errors come in many types
            raise RuntimeError(
                f"could not download ImageNet weights for {backbone.name} ({type(e).__name__}: {e}). Offline? "
                f"Download {where} elsewhere, then set weights to the file's path") from e
    import torchvision

    entry = torchvision.models.get_model_weights(backbone.name).DEFAULT
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(entry.url)
    try:
        return entry.get_state_dict(progress=False)
    except (OSError, RuntimeError) as e:  # URLError is an OSError
        raise RuntimeError(f"could not download ImageNet weights for {backbone.name} ({e}). Offline? Download "
                           f"{entry.url} elsewhere and put it at {target} (TORCH_HOME moves that folder), "
                           "or set weights to the path of a local state-dict file") from e


def load_features(net: nn.Module, backbone: Backbone, state: dict[str, torch.Tensor]) -> None:
    """Load every feature tensor; a classifier in ``state`` is dropped and logged, anything else must fit."""
    clean = {}
    for key, value in state.items():
        for prefix in STRIPPED_PREFIXES:
            key = key.removeprefix(prefix)
        clean[key] = value
    head = backbone.classifier + "."
    dropped = sorted(k for k in clean if k.startswith(head))
    if dropped:
        log.info("replacing the weights file's classifier (%s) with a new head", ", ".join(dropped))
    features = {k: v for k, v in clean.items() if not k.startswith(head)}
    own = set(net.state_dict())
    missing, unexpected = sorted(own - set(features)), sorted(set(features) - own)
    if missing or unexpected:
        raise ValueError(f"weights do not fit {backbone.name}: missing {missing[:5]} ({len(missing)}), "
                         f"unexpected {unexpected[:5]} ({len(unexpected)}); is it a {backbone.name} state dict?")
    net.load_state_dict(features)
    log.info("loaded %d backbone tensors for %s", len(features), backbone.name)
