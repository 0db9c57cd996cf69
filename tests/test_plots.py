"""Each figure function writes a readable, non-blank PNG, with and without masks, for one or many methods; forecast
panels of a wide grid (a channel flow) fill their figure."""

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from dyffusion.metrics import LeadTimeScores
from dyffusion.plots import (
    plot_forecast_panels,
    plot_metrics_vs_lead_time,
    plot_rank_histogram,
    plot_spread_skill,
    plot_spring_mesh,
)

RNG = np.random.default_rng(0)


def _check_png(path):
    assert path.exists() and path.suffix == ".png"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert img[..., :3].std() > 0.01  # not blank
    return img


def _results(labels, leads=(1.0, 2.0, 3.0)):
    out = {}
    for i, label in enumerate(labels):
        s = LeadTimeScores(list(leads) + [4.0])  # the last lead stays NaN: plots must cope
        y = torch.randn(2, len(leads), 1, 8, 8)
        s.update(y + (0.5 + i) * torch.randn(4 + 3 * i, *y.shape), y)  # ensembles of different sizes
        out[label] = s.compute()
    return out


@pytest.mark.parametrize("labels", [["DYffusion"], ["DYffusion", "Dropout", "Perturbation"]])
def test_metric_figures(tmp_path, labels):
    res = _results(labels)
    _check_png(plot_metrics_vs_lead_time(res, tmp_path / "metrics.png", title="test"))
    _check_png(plot_spread_skill(res, tmp_path / "sub" / "spread.png"))
    _check_png(plot_rank_histogram(res, tmp_path / "ranks.png"))


@pytest.mark.parametrize("use_mask,members", [(False, 3), (True, 3), (True, 1)])
def test_forecast_panels(tmp_path, use_mask, members):
    l, c, h, w = 6, 2, 12, 16
    truth = RNG.normal(size=(l, c, h, w))
    ens = truth[None] + 0.3 * RNG.normal(size=(members, l, c, h, w))
    mask = None
    if use_mask:
        mask = np.ones((h, w), bool)
        mask[3:6, 4:9] = False
        truth[..., ~mask] = np.nan  # values at masked points must not matter
    path = plot_forecast_panels(truth[0], truth, ens, [1, 2, 3, 4, 5, 6], str(tmp_path / "panels.png"),
                                channel=1, channel_name="vorticity", mask=mask)
    _check_png(path)


@pytest.mark.parametrize("grid", [(42, 221), (12, 16), (60, 30)])
def test_forecast_panels_take_the_grid_aspect_ratio(tmp_path, grid):
    """Panels of the 42 x 221 Navier-Stokes channel once left wide blank bands between rows (fixed figure height):
    now at most a fifth of the image's pixel rows is blank, whatever the grid's shape."""
    h, w = grid
    truth = RNG.normal(size=(5, 1, h, w))
    ens = truth[None] + 0.3 * RNG.normal(size=(3, *truth.shape))
    img = _check_png(plot_forecast_panels(truth[0], truth, ens, [1, 2, 3, 4, 5], tmp_path / "panels.png"))
    blank_rows = (img[..., :3].min(axis=(1, 2)) > 0.99).mean()
    assert blank_rows < 0.2, blank_rows


@pytest.mark.parametrize("with_fixed", [False, True])
def test_spring_mesh(tmp_path, with_fixed):
    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0), indexing="xy"))
    truth = np.stack([grid + 0.1 * k for k in range(5)])
    ens = truth[None] + 0.05 * RNG.normal(size=(6, *truth.shape))
    fixed = np.zeros((10, 10), bool)
    fixed[-1] = True
    path = plot_spring_mesh(truth, ens, [1, 2, 3, 4, 5], tmp_path / "mesh.png", fixed_mask=fixed if with_fixed else None, max_leads=3)
    _check_png(path)
