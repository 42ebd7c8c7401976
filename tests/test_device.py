"""Which precision ``precision: auto`` resolves to, on CPUs with and without native bf16."""

import pytest
import torch

from ensemble import device as device_module
from ensemble.device import cpu_bf16_is_fast, resolve_precision

CPU = torch.device("cpu")


def _cpu(monkeypatch, machine: str, onednn_bf16: bool, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(device_module.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn_bf16)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("machine, onednn_bf16, avx512_bf16, amx, expected", [
    ("x86_64", True, False, True, torch.bfloat16),    # Sapphire Rapids and later: AMX
    ("x86_64", True, True, False, torch.bfloat16),    # Cooper Lake, Zen 4: AVX512-BF16
    ("x86_64", True, False, False, None),             # AVX-512 only: oneDNN emulates bf16, slower than fp32
    ("x86_64", False, False, False, None),            # AVX2
    ("AMD64", True, False, False, None),              # Windows spells it so
    ("aarch64", True, False, False, torch.bfloat16),  # Arm with its bf16 instructions (oneDNN checks them)
    ("aarch64", False, False, False, None),
])
def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, machine, onednn_bf16, avx512_bf16,
                                                               amx, expected):
    _cpu(monkeypatch, machine, onednn_bf16, avx512_bf16, amx)
    assert cpu_bf16_is_fast() is (expected is not None)
    assert resolve_precision("auto", CPU) is expected


def test_explicit_precisions_are_kept_whatever_the_cpu(monkeypatch):
    _cpu(monkeypatch, "x86_64", True, False, False)
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    assert resolve_precision("fp32", CPU) is None
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="auto, fp32, bf16 or fp16"):
        resolve_precision("half", CPU)
