"""Learning-rate schedules, stepped once per batch.

``WarmupCosine``: a linear warmup from 0 to each group's base rate, then a cosine decay to 0 at the last step
(Loshchilov & Hutter, SGDR, arXiv:1608.03983, without restarts).

Calling contract: construct after the optimizer (it sets every group's rate for step 0), call ``step()`` once
after each ``optimizer.step()``. Its state is the step counter, saved in checkpoints with ``state_dict()``.
"""

from __future__ import annotations

import math

import torch


class WarmupCosine:
    """Per-batch linear warmup then cosine annealing; keeps each param group's ratio to its base rate."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0):
        if total_steps < 1 or not 0 <= warmup_steps < total_steps:
            raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps < total_steps, got {total_steps}, "
                             f"{warmup_steps}")
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        """Multiplier of the base rate at ``step`` (0-based batch counter)."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _apply(self) -> None:
        f = self.factor(self.last_step)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.last_step = int(state["last_step"])
        self.base_lrs = list(state["base_lrs"])
        self._apply()
