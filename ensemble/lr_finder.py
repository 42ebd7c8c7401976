"""LR range test (Smith, Cyclical Learning Rates, arXiv:1506.01186; the fast.ai "LR finder").

Train for ``num_steps`` batches while the learning rate grows exponentially from ``start_lr`` to ``end_lr``,
record the loss, smooth it with a bias-corrected exponential moving average, and stop once the smoothed loss
exceeds ``diverge`` times its minimum. The suggested rate is the one at the minimum smoothed loss divided by
10: a rate safely below the point where training stops improving, the usual rule of thumb.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ensemble.data import FoldData, make_loader
from ensemble.finetune import set_train_mode
from ensemble.hparams import TrainConfig
from ensemble.loops import autocast
from ensemble.optim import make_optimizer
from ensemble.train import FoldRun

log = logging.getLogger(__name__)


def lr_range_test(model, loader, optimizer, *, device: torch.device, dtype: torch.dtype | None,
                  frozen_backbone: bool, start_lr: float = 1e-6, end_lr: float = 10.0, num_steps: int = 100,
                  beta: float = 0.98, diverge: float = 4.0) -> pd.DataFrame:
    """Sweep the rate of every param group (keeping their ratios); returns step, lr, loss, smoothed loss.

    The optimizer's groups hold the rates at a multiplier of 1; the sweep scales them all together.
    """
    base = [g["lr"] for g in optimizer.param_groups]
    gamma = (end_lr / start_lr) ** (1 / max(1, num_steps - 1))
    rows, avg, best = [], 0.0, math.inf
    set_train_mode(model, frozen_backbone)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # as many epochs as the sweep needs
    for step, (x, y) in zip(range(num_steps), batches):
        lr = start_lr * gamma**step
        for group, b in zip(optimizer.param_groups, base):
            group["lr"] = lr * b / base[0]
        x = x.to(device, memory_format=torch.channels_last)
        with autocast(device, dtype):
            logits = model(x)
        loss = F.nll_loss(F.log_softmax(logits.float(), dim=1), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        avg = beta * avg + (1 - beta) * value
        smoothed = avg / (1 - beta ** (step + 1))
        rows.append({"step": step, "lr": lr, "loss": value, "smoothed_loss": smoothed})
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or (step > 5 and smoothed > diverge * best):
            log.info("loss diverged at lr %.3g (step %d): stopping the sweep", lr, step)
            break
    return pd.DataFrame(rows)


def suggest_lr(table: pd.DataFrame) -> float:
    """The rate at the minimum smoothed loss, divided by 10."""
    if table.empty:
        raise ValueError("the LR range test recorded no step")
    return float(table.loc[table["smoothed_loss"].idxmin(), "lr"] / 10)


def plot_lr_find(table: pd.DataFrame, suggestion: float, path: Path, title: str) -> None:
    """Smoothed loss against the rate (log axis), with the suggestion marked; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(table["lr"], table["loss"], color="0.8", lw=0.8, label="loss")
    ax.plot(table["lr"], table["smoothed_loss"], label="smoothed loss")
    ax.axvline(suggestion, color="C3", ls="--", label=f"suggested lr {suggestion:.3g}")
    ax.set_xscale("log")
    low, high = table["smoothed_loss"].min(), table["smoothed_loss"].iloc[0]
    ax.set_ylim(low - 0.1 * abs(high - low) - 1e-3, max(high, low) + 0.5 * abs(high - low) + 1e-3)
    ax.set(xlabel="learning rate", ylabel="training loss", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def find_lr(data: FoldData, config: TrainConfig, *, device: torch.device, workers: int,
            num_steps: int = 100) -> tuple[pd.DataFrame, float]:
    """LR range test of the first phase ``config`` would train (head only, or the whole network in its depth
    groups); returns the sweep table and the suggested base rate."""
    run = FoldRun(data, config, device, workers, checkpoint_path=None, device_augment=False)
    phase = config.phase(0)
    optimizer, _ = make_optimizer(run.model, config, phase, run.steps)
    run.train_set.seed = config.seed
    loader = make_loader(run.train_set, batch_size=config.batch_size, shuffle=True, workers=workers,
                         device=device, drop_last=run.drop_last,
                         generator=torch.Generator().manual_seed(config.seed))
    table = lr_range_test(run.model, loader, optimizer, device=device, dtype=run.dtype,
                          frozen_backbone=phase == "head", num_steps=num_steps)
    return table, suggest_lr(table)
