"""The inner loops: one training epoch, and batched prediction. Both channels_last, with optional autocast."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ensemble.finetune import set_train_mode


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``; a no-op for plain fp32 (dtype None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def run_epoch(model, loader, optimizer, schedule, scaler, *, device: torch.device, dtype: torch.dtype | None,
              frozen_backbone: bool) -> float:
    """One pass over ``loader`` with an optimizer and schedule step per batch; returns the mean loss."""
    set_train_mode(model, frozen_backbone)
    total, n = 0.0, 0
    for x, y in tqdm(loader, desc="train", leave=False, mininterval=30):
        x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = model(x)
        loss = F.nll_loss(F.log_softmax(logits.float(), dim=1), y)  # (N, K) log-probs -> mean NLL
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        total += loss.item() * len(y)
        n += len(y)
    return total / max(n, 1)


@torch.no_grad()
def predict_log_probs(model, loader, *, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    """(N, K) log-probabilities in loader order, computed in fp32 from the logits."""
    model.eval()
    out = []
    for x, _ in tqdm(loader, desc="predict", leave=False, mininterval=30):
        x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
        with autocast(device, dtype):
            logits = model(x)
        out.append(F.log_softmax(logits.float(), dim=1).cpu())
    return torch.cat(out) if out else torch.empty(0)
