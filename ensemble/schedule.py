"""Learning-rate schedules stepped once per batch: cosine annealing, with or without warm restarts (SGDR).

``Cosine`` multiplies each param group's base rate by a factor that
- rises linearly from near 0 to 1 over ``warmup_steps`` (within the first cycle),
- then follows half a cosine down to 0 at the end of the cycle.
By default one cycle spans all ``total_steps`` (plain cosine). ``cycle_bounds(total, cycle, mult)`` gives
SGDR's cycles: cycle i is ``cycle * mult**i`` long, and with ``cycle_decay`` it peaks at ``cycle_decay**i``
(Loshchilov & Hutter, SGDR: Stochastic Gradient Descent with Warm Restarts, arXiv:1608.03983). Compute
cycles in epochs and scale them to steps, so restarts fall on epoch boundaries.

Calling contract: construct after the optimizer (it sets every group's rate for step 0); call ``step()`` once
after each ``optimizer.step()``. Every group keeps its ratio to the others (differential rates survive).
Its state is the step counter: ``state_dict()`` / ``load_state_dict()`` for checkpoints.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def cycle_bounds(total: int, cycle: int | None, mult: float = 1.0) -> list[tuple[int, int]]:
    """[(start, end), ...] of every cycle in units of steps (or epochs), the last one cut at ``total``."""
    if cycle is None:
        return [(0, total)]
    if cycle < 1 or mult < 1:
        raise ValueError(f"cycle length must be >= 1 and cycle_mult >= 1, got {cycle} and {mult}")
    bounds, start, length = [], 0, float(cycle)
    while start < total:
        end = min(total, start + max(1, round(length)))
        bounds.append((start, end))
        start, length = end, length * mult
    return bounds


class Cosine:
    """Per-batch warmup + cosine annealing, optionally restarting (SGDR) with growing, decaying cycles."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                 cycles: list[tuple[int, int]] | None = None, cycle_decay: float = 1.0):
        self.cycles = cycles or [(0, total_steps)]
        if self.cycles[0][0] != 0 or self.cycles[-1][1] != total_steps:
            raise ValueError(f"cycles must run from step 0 to total_steps={total_steps}, got {self.cycles}")
        if total_steps < 1 or not 0 <= warmup_steps < self.cycles[0][1]:
            raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps < the first cycle's length, got "
                             f"{total_steps} and {warmup_steps}")
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.cycle_decay = cycle_decay
        self.base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        """Multiplier of the base rates at ``step`` (0-based batch counter)."""
        i, (start, end) = next(((i, c) for i, c in enumerate(self.cycles) if step < c[1]),
                               (len(self.cycles) - 1, self.cycles[-1]))
        peak = self.cycle_decay**i
        if i == 0 and step < self.warmup_steps:
            return peak * (step + 1) / (self.warmup_steps + 1)
        start = start + (self.warmup_steps if i == 0 else 0)
        progress = min(1.0, (step - start) / max(1, end - start))
        return peak * 0.5 * (1 + math.cos(math.pi * progress))

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
