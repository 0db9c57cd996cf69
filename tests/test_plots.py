"""Each figure function writes a readable, non-blank PNG, with and without masks, for one or many methods."""

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from dyffusion.metrics import LeadTimeScores
from dyffusion.plots import plot_forecast_panels, plot_metrics_vs_lead_time, plot_spread_skill, plot_spring_mesh

RNG = np.random.default_rng(0)


def _check_png(path):
    assert path.exists() and path.suffix == ".png"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert img[..., :3].std() > 0.01  # not blank


def _results(labels, leads=(1.0, 2.0, 3.0)):
    out = {}
    for i, label in enumerate(labels):
        s = LeadTimeScores(list(leads) + [4.0])  # the last lead stays NaN: plots must cope
        y = torch.randn(2, len(leads), 1, 8, 8)
        s.update(y + (0.5 + i) * torch.randn(4, *y.shape), y)
        out[label] = s.compute()
    return out


@pytest.mark.parametrize("labels", [["DYffusion"], ["DYffusion", "Dropout", "Perturbation"]])
def test_metric_figures(tmp_path, labels):
    res = _results(labels)
    _check_png(plot_metrics_vs_lead_time(res, tmp_path / "metrics.png", title="test"))
    _check_png(plot_spread_skill(res, tmp_path / "sub" / "spread.png"))


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


@pytest.mark.parametrize("with_fixed", [False, True])
def test_spring_mesh(tmp_path, with_fixed):
    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0), indexing="xy"))
    truth = np.stack([grid + 0.1 * k for k in range(5)])
    ens = truth[None] + 0.05 * RNG.normal(size=(6, *truth.shape))
    fixed = np.zeros((10, 10), bool)
    fixed[-1] = True
    path = plot_spring_mesh(truth, ens, [1, 2, 3, 4, 5], tmp_path / "mesh.png", fixed_mask=fixed if with_fixed else None, max_leads=3)
    _check_png(path)
