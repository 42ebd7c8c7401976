import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ensemble.lr_finder import lr_range_test, plot_lr_find, suggest_lr
from ensemble.models import Classifier


def _problem(seed=0, n=512, d=10, k=3):
    """Softmax regression on standardised Gaussian clusters: the loss's curvature is at most about 0.5, so
    SGD is stable below lr ~ 2 / 0.5 = 4, and rates of ~0.05-1 train it well."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 0.4  # overlapping clusters: not separable
    y = torch.randint(0, k, (n,), generator=g)
    x = centres[y] + torch.randn(n, d, generator=g)
    x = (x - x.mean(0)) / x.std(0)
    return DataLoader(TensorDataset(x.view(n, d, 1, 1), y), batch_size=32, shuffle=True, generator=g)


def test_suggestion_lands_in_the_known_good_range():
    torch.manual_seed(0)
    model = Classifier(nn.Flatten(), nn.Linear(10, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    table = lr_range_test(model, _problem(), optimizer, device=torch.device("cpu"), dtype=None,
                          frozen_backbone=False, start_lr=1e-5, end_lr=100, num_steps=120)
    lr = suggest_lr(table)
    assert 0.01 <= lr <= 4, lr
    assert table["smoothed_loss"].iloc[-1] > table["smoothed_loss"].min()  # the sweep went past the valley
    assert np.all(np.diff(table["lr"]) > 0)


def test_sweep_stops_when_the_loss_diverges():
    torch.manual_seed(0)
    model = Classifier(nn.Flatten(), nn.Linear(10, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    table = lr_range_test(model, _problem(), optimizer, device=torch.device("cpu"), dtype=None,
                          frozen_backbone=False, start_lr=1e-5, end_lr=1e4, num_steps=200, diverge=1.5)
    assert len(table) < 200
    assert table["smoothed_loss"].iloc[-1] > 1.5 * table["smoothed_loss"].min()


def test_sweep_keeps_group_ratios():
    model = Classifier(nn.Flatten(), nn.Linear(10, 3))
    optimizer = torch.optim.SGD([{"params": [model.head.weight], "lr": 1.0},
                                 {"params": [model.head.bias], "lr": 0.1}])
    lr_range_test(model, _problem(), optimizer, device=torch.device("cpu"), dtype=None, frozen_backbone=False,
                  num_steps=10)
    rates = [g["lr"] for g in optimizer.param_groups]
    assert rates[1] / rates[0] == pytest.approx(0.1)


def test_plot_is_a_png(tmp_path):
    table = pd.DataFrame({"lr": np.logspace(-5, 0, 20), "loss": np.linspace(2, 1, 20),
                          "smoothed_loss": np.linspace(2, 1, 20)})
    plot_lr_find(table, 1e-2, tmp_path / "p.png", "test")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
