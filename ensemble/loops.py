"""The inner loops: one training epoch, and batched prediction. Both channels_last, with optional autocast."""

from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ensemble.finetune import set_train_mode


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Autocast to ``dtype`` on ``device``; a no-op for plain fp32 (dtype None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def batch_mixer(mixup: float, cutmix: float, n_classes: int):
    """MixUp and/or CutMix on whole batches (soft targets out), or None when both are off."""
    from torchvision.transforms import v2

    mixers = ([v2.MixUp(alpha=mixup, num_classes=n_classes)] if mixup > 0 else []) + \
        ([v2.CutMix(alpha=cutmix, num_classes=n_classes)] if cutmix > 0 else [])
    if not mixers:
        return None
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


def soft_nll(log_probs: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean negative log-likelihood of hard (N,) or soft (N, K) targets, with optional label smoothing."""
    if target.ndim == 1 and label_smoothing == 0:
        return F.nll_loss(log_probs, target)
    k = log_probs.shape[1]
    soft = F.one_hot(target, k).float() if target.ndim == 1 else target
    soft = soft * (1 - label_smoothing) + label_smoothing / k
    return -(soft * log_probs).sum(dim=1).mean()


def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Images (N, 3, H, W) go channels_last; feature rows (N, F) as they are."""
    if x.ndim == 4:
        return x.to(device, non_blocking=True, memory_format=torch.channels_last)
    return x.to(device, non_blocking=True)


class DivergedError(ValueError):
    """The training loss became NaN or infinite: the weights are lost, so training stops at once."""


def run_epoch(model, loader, optimizer, schedule, scaler, *, device: torch.device, dtype: torch.dtype | None,
              frozen_backbone: bool, mixer=None, label_smoothing: float = 0.0, on_features: bool = False,
              clip_grad: float | None = None, ema=None, step: int = 0, forward=None,
              step_seconds: list[float] | None = None, augment=None, on_batch=None) -> float:
    """One pass over ``loader`` with an optimizer and schedule step per batch; returns the mean loss.

    ``on_features``: the loader yields the frozen backbone's features and only the head runs (the frozen
    phase on cached features, ``ensemble.features``). ``clip_grad``: the gradients' global norm is clipped to
    it. ``ema`` (``timm.utils.ModelEmaV3``): updated after every optimizer step, ``step`` counting the steps
    before this epoch (its decay warms up with the step count). A non-finite loss raises ``DivergedError``
    before the optimizer steps on it. ``forward``: what computes the logits (``torch.compile(model)``), the
    plain ``model`` by default; parameters, clipping and the EMA always use ``model``. ``step_seconds``
    collects each step's wall time (the first holds a compilation). ``augment``: the loader yields stored rows
    ``(rows, widths, portrait)``, which ``augment(rows, widths, portrait)`` crops on the device
    (``ensemble.batch_augment``). ``on_batch(images)`` is called after every step (the job's progress).
    """
    set_train_mode(model, frozen_backbone)
    forward = model.head if on_features else (forward if forward is not None else model)
    total, n = 0.0, 0
    t0 = time.perf_counter()
    for x, y in tqdm(loader, desc="train", leave=False, mininterval=30):
        if augment is not None:
            rows, widths, portrait = x
            x = augment(rows.to(device, non_blocking=True), widths, portrait)
        if mixer is not None:
            x, y = mixer(x.float(), y)  # y becomes (N, K) soft targets; mixing needs float pixels
        x = _to_device(x, device)
        y = y.to(device, non_blocking=True)
        with autocast(device, dtype):
            logits = forward(x)
        loss = soft_nll(F.log_softmax(logits.float(), dim=1), y, label_smoothing)  # (N, K) log-probs -> mean
        value = loss.item()
        if not math.isfinite(value):
            raise DivergedError(f"the training loss is {value} at batch {n // max(len(y), 1) + 1}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad is not None:
            scaler.unscale_(optimizer)  # clip the true gradients, not the fp16 loss-scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        if ema is not None:
            step += 1
            ema.update(model, step=step)
        total += value * len(y)
        n += len(y)
        if on_batch is not None:
            on_batch(len(y))
        if step_seconds is not None:
            now = time.perf_counter()
            step_seconds.append(now - t0)
            t0 = now
    return total / max(n, 1)


@torch.no_grad()
def predict_log_probs(model, loader, *, device: torch.device, dtype: torch.dtype | None,
                      on_features: bool = False) -> torch.Tensor:
    """(N, K) log-probabilities in loader order, computed in fp32 from the logits (of the head alone when
    the loader yields features)."""
    model.eval()
    forward = model.head if on_features else model
    out = []
    for x, _ in tqdm(loader, desc="predict", leave=False, mininterval=30):
        x = _to_device(x, device)
        with autocast(device, dtype):
            logits = forward(x)
        out.append(F.log_softmax(logits.float(), dim=1).cpu())
    return torch.cat(out) if out else torch.empty(0)


def evaluate(model, loader, targets: list[int], *, device, dtype, on_features: bool = False) -> tuple[float, float]:
    if not targets:  # a full-data refit has no validation set
        return float("nan"), float("nan")
    logp = predict_log_probs(model, loader, device=device, dtype=dtype, on_features=on_features)
    y = torch.tensor(targets)
    return F.nll_loss(logp, y).item(), (logp.argmax(1) == y).float().mean().item()
