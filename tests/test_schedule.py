"""Calling contract of the per-batch schedules, with a 5-line fake optimizer."""

import math

import pytest

from ensemble.schedule import Cosine, cycle_bounds


class FakeOptimizer:
    def __init__(self, *lrs):
        self.param_groups = [{"lr": lr} for lr in lrs]


def rates(schedule, n):
    out = [schedule.optimizer.param_groups[0]["lr"]]
    for _ in range(n - 1):
        schedule.step()
        out.append(schedule.optimizer.param_groups[0]["lr"])
    return out


def test_cycle_bounds_grow_and_are_cut_at_the_end():
    assert cycle_bounds(10, None) == [(0, 10)]
    assert cycle_bounds(14, 2, 2.0) == [(0, 2), (2, 6), (6, 14)]
    assert cycle_bounds(10, 3) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    with pytest.raises(ValueError):
        cycle_bounds(10, 0)


def test_plain_cosine_warms_up_then_anneals_to_zero():
    lr = rates(Cosine(FakeOptimizer(0.1), total_steps=20, warmup_steps=4), 20)
    assert all(a < b for a, b in zip(lr[:5], lr[1:5]))  # rising through warmup
    assert lr[4] == pytest.approx(0.1)  # peak right after warmup
    assert all(a >= b for a, b in zip(lr[4:], lr[5:]))  # then falling
    assert lr[12] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert lr[-1] < 0.1 * 0.01


def test_sgdr_restarts_at_cycle_starts_with_decaying_peaks():
    cycles = [(0, 10), (10, 30), (30, 40)]
    schedule = Cosine(FakeOptimizer(1.0), total_steps=40, warmup_steps=2, cycles=cycles, cycle_decay=0.5)
    lr = rates(schedule, 40)
    assert lr[2] == pytest.approx(1.0)  # end of warmup: first peak
    assert lr[10] == pytest.approx(0.5) and lr[30] == pytest.approx(0.25)  # restarts, decayed peaks
    assert lr[9] < 0.05 and lr[29] < 0.01 and lr[39] < 0.01  # each cycle ends near zero
    assert lr[20] == pytest.approx(0.5 * 0.5)  # mid-cycle: half the peak


def test_groups_keep_their_ratio_and_state_round_trips():
    schedule = Cosine(FakeOptimizer(0.1, 0.03, 0.009), total_steps=30, warmup_steps=3,
                      cycles=[(0, 10), (10, 30)])
    for _ in range(13):
        schedule.step()
    lrs = [g["lr"] for g in schedule.optimizer.param_groups]
    assert lrs[1] / lrs[0] == pytest.approx(0.3) and lrs[2] / lrs[1] == pytest.approx(0.3)
    other = Cosine(FakeOptimizer(0.1, 0.03, 0.009), total_steps=30, warmup_steps=3, cycles=[(0, 10), (10, 30)])
    other.load_state_dict(schedule.state_dict())
    assert [g["lr"] for g in other.optimizer.param_groups] == lrs


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="warmup"):
        Cosine(FakeOptimizer(0.1), total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="cycles must run"):
        Cosine(FakeOptimizer(0.1), total_steps=10, cycles=[(0, 5)])
