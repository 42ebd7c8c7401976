"""Where a job runs and at what precision."""

from __future__ import annotations

import logging
import os
import platform

import torch

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when this process sees a GPU, else the CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda, but this process sees no GPU (check CUDA_VISIBLE_DEVICES and the "
                           "driver), or set device: auto / cpu")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (auto|fp32|bf16|fp16) on ``device``; None means plain fp32.

    ``auto`` picks bf16 where the hardware runs it fast (CUDA with bf16; CPUs that compute bf16 natively,
    ``cpu_bf16_is_fast``), fp16 on older GPUs, else fp32.
    """
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_bf16_is_fast() else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision fp16 needs CUDA; use bf16 or fp32 on the CPU")
        return torch.float16
    raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")


def cpu_bf16_is_fast() -> bool:
    """Whether this CPU computes bf16 natively, so that bf16 autocast speeds training up (on a CPU with AMX,
    it roughly halves a ResNet-18 step). oneDNN also runs bf16 on x86 CPUs with AVX-512 but neither
    AVX512-BF16 nor AMX, by converting to fp32 and back: there a training step (ResNet-18 with an fc 4096 head,
    batch 32, 112 px, one thread) took 2.77 s against fp32's 1.28 s (``benchmarks/train_step.py --precision
    both``)."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return True  # Arm: oneDNN reports bf16 only where the CPU has its bf16 instructions


def set_deterministic(on: bool) -> None:
    """Deterministic algorithms everywhere (slower on GPUs): same seed, same bits, also on CUDA.

    CPU runs with a fixed thread count are reproducible without it; on GPUs cuDNN's autotuner and atomic-add
    kernels vary from run to run unless this is on. Call before any CUDA work.
    """
    if not on:
        torch.backends.cudnn.benchmark = True  # fastest kernels for fixed input sizes
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)
    log.info("deterministic algorithms on")
