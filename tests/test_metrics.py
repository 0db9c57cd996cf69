"""Ensemble metrics: CRPS against scoringrules and closed forms, SSR calibration, rank histograms, masks, weights,
streaming."""

import math

import numpy as np
import pytest
import scoringrules as sr
import torch
from scipy.stats import chi2, norm

from dyffusion.metrics import (
    LeadTimeScores,
    crps_ensemble,
    ensemble_mean_squared_error,
    ensemble_variance,
    rank_histogram,
)


@pytest.mark.parametrize("m", [2, 5, 16])
@pytest.mark.parametrize("fair,estimator", [(False, "nrg"), (True, "fair")])
def test_crps_matches_scoringrules(m, fair, estimator):
    g = torch.Generator().manual_seed(m)
    ens, y = torch.randn(m, 3, 7, 5, generator=g), torch.randn(3, 7, 5, generator=g)
    ours = crps_ensemble(ens, y, fair=fair)
    ref = sr.crps_ensemble(y.numpy().astype(np.float64), ens.numpy().astype(np.float64), m_axis=0, estimator=estimator)
    assert ours.shape == y.shape and ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), np.asarray(ref), rtol=1e-10, atol=1e-12)


def test_crps_single_member_and_low_precision_inputs():
    ens, y = torch.randn(1, 4, 6), torch.randn(4, 6)
    torch.testing.assert_close(crps_ensemble(ens, y), (ens[0] - y).abs().double())
    assert torch.isnan(crps_ensemble(ens, y, fair=True)).all()
    assert torch.isnan(ensemble_variance(ens, ddof=1)).all()
    bf = torch.randn(4, 8).bfloat16()
    assert crps_ensemble(bf, bf[0]).dtype == torch.float64


def test_crps_gaussian_closed_form():
    # Large ensemble from N(mu, sigma^2): the fair CRPS converges to the Gaussian CRPS.
    mu, sigma, m = 0.3, 1.7, 20000
    y = torch.tensor([-2.0, 0.0, 0.3, 1.0, 4.0], dtype=torch.float64)
    ens = mu + sigma * torch.randn(m, y.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = (y.numpy() - mu) / sigma
    exact = sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))
    for fair in (False, True):
        np.testing.assert_allclose(crps_ensemble(ens, y, fair=fair).numpy(), exact, rtol=0.02, atol=0.01)


def test_pointwise_mse_and_variance():
    ens, y = torch.randn(6, 3, 4), torch.randn(3, 4)
    torch.testing.assert_close(ensemble_mean_squared_error(ens, y), (ens.double().mean(0) - y.double()) ** 2)
    torch.testing.assert_close(ensemble_variance(ens), ens.double().var(0, correction=0))
    torch.testing.assert_close(ensemble_variance(ens, ddof=1), ens.double().var(0, correction=1))


def test_ssr_of_calibrated_ensemble():
    # Truth and members iid: E[var_ddof0] = (M-1)/M s^2 and E[(mean - y)^2] = (M+1)/M s^2, so the
    # paper's SSR -> sqrt((M-1)/(M+1)) while the corrected one -> 1.
    m = 5
    g = torch.Generator().manual_seed(1)
    ens, y = 2.0 * torch.randn(m, 4, 2, 1, 64, 64, generator=g), 2.0 * torch.randn(4, 2, 1, 64, 64, generator=g)
    s = LeadTimeScores([1.0, 2.0])
    s.update(ens, y)
    out = s.compute()
    np.testing.assert_allclose(out["ssr_corrected"], 1.0, atol=0.03)
    np.testing.assert_allclose(out["ssr"], math.sqrt((m - 1) / (m + 1)), atol=0.03)
    assert out["members"] == m and out["count"] == [4, 4]
    np.testing.assert_allclose(out["rmse"], np.sqrt(out["mse"]))
    assert out["mean"]["ssr"] == pytest.approx(np.mean(out["ssr"]))


def _random(m=4, b=3, l=2, c=2, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, b, l, c, h, w, generator=g), torch.randn(b, l, c, h, w, generator=g)


def _manual(ens, y, w):
    """Reference per-lead weighted means; w broadcastable to (B, L, C, H, W), zero = excluded."""
    ens, y = ens.double(), y.double()
    w = torch.as_tensor(w, dtype=torch.float64).expand(y.shape)
    keep = w > 0

    def mean(v):
        return [(v[:, i][keep[:, i]] * w[:, i][keep[:, i]]).sum().item() / w[:, i][keep[:, i]].sum().item() for i in range(y.shape[1])]

    crps = mean(crps_ensemble(ens, y))
    mse = mean(ensemble_mean_squared_error(ens, y))
    spread = mean(ensemble_variance(ens))
    return crps, mse, [math.sqrt(v / e) for v, e in zip(spread, mse)]


def test_mask_excludes_points_even_if_nan_or_huge():
    ens, y = _random()
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[1:3, 2:] = False
    ref = LeadTimeScores([1, 2])
    ref.update(ens, y, mask=mask)
    bad_ens, bad_y = ens.clone(), y.clone()
    bad_ens[..., ~mask] = float("nan")
    bad_y[..., ~mask] = 1e30
    got = LeadTimeScores([1, 2])
    got.update(bad_ens, bad_y, mask=mask)
    a, b = ref.compute(), got.compute()
    for k in ("crps", "crps_fair", "mse", "ssr", "ssr_corrected"):
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12)
        assert np.isfinite(b[k]).all()
    crps, mse, ssr = _manual(ens, y, mask.double())
    np.testing.assert_allclose(a["crps"], crps, rtol=1e-12)
    np.testing.assert_allclose(a["mse"], mse, rtol=1e-12)
    np.testing.assert_allclose(a["ssr"], ssr, rtol=1e-12)


def test_per_sample_mask_and_weights():
    ens, y = _random(b=2)
    mask = torch.ones(2, 1, 1, 6, 5, dtype=torch.bool)
    mask[0, ..., :2, :] = False  # a different obstacle per initial condition
    lat_w = torch.cos(torch.linspace(-1.2, 1.2, 6)).unsqueeze(-1)  # (H, 1) area weights
    s = LeadTimeScores([1, 2])
    s.update(ens, y, mask=mask, weights=lat_w)
    out = s.compute()
    crps, mse, ssr = _manual(ens, y, mask * lat_w)
    np.testing.assert_allclose(out["crps"], crps, rtol=1e-12)
    np.testing.assert_allclose(out["mse"], mse, rtol=1e-12)
    np.testing.assert_allclose(out["ssr"], ssr, rtol=1e-12)


def test_streaming_and_merge_equal_single_update():
    ens, y = _random(b=5, l=4, seed=3)
    leads = [1.0, 2.0, 3.0, 4.0]
    full = LeadTimeScores(leads)
    full.update(ens, y)
    # Chunks over initial conditions and over lead times (start index and explicit indices).
    chunks = LeadTimeScores(leads)
    chunks.update(ens[:, :2], y[:2])
    chunks.update(ens[:, 2:, :2], y[2:, :2], lead_index=0)
    chunks.update(ens[:, 2:, 2:], y[2:, 2:], lead_index=[2, 3])
    a, b = LeadTimeScores(leads), LeadTimeScores(leads)
    a.update(ens[:, :3], y[:3])
    b.update(ens[:, 3:].float(), y[3:])
    merged = a.merge(b).compute()
    ref = full.compute()
    for out in (chunks.compute(), merged):
        for k in ("crps", "crps_fair", "mse", "rmse", "ssr", "ssr_corrected"):
            np.testing.assert_allclose(out[k], ref[k], rtol=1e-12)
            assert out["mean"][k] == pytest.approx(ref["mean"][k], rel=1e-12)
        assert out["count"] == ref["count"] == [5] * 4
        np.testing.assert_allclose(out["rank_histogram"], ref["rank_histogram"], rtol=1e-12)


def test_never_updated_leads_are_nan_and_excluded_from_means():
    ens, y = _random(l=1)
    s = LeadTimeScores([6.0, 12.0, 18.0])
    assert all(math.isnan(v) for v in s.compute()["crps"])  # nothing yet: NaN, no crash
    s.update(ens, y, lead_index=1)
    out = s.compute()
    assert math.isnan(out["crps"][0]) and math.isnan(out["crps"][2]) and np.isfinite(out["crps"][1])
    assert out["mean"]["crps"] == pytest.approx(out["crps"][1])
    assert out["count"] == [0, 3, 0]


def test_single_member_gives_nan_for_fair_and_corrected_only():
    ens, y = _random(m=1)
    s = LeadTimeScores([1, 2])
    s.update(ens, y)
    out = s.compute()
    assert np.isnan(out["crps_fair"]).all() and np.isnan(out["ssr_corrected"]).all()
    assert np.isfinite(out["crps"]).all() and np.isfinite(out["mse"]).all()
    np.testing.assert_allclose(out["crps"], [(ens[0, :, i] - y[:, i]).abs().double().mean().item() for i in range(2)])
    np.testing.assert_allclose(out["ssr"], 0.0)


def test_bad_inputs_raise():
    ens, y = _random()
    s = LeadTimeScores([1, 2])
    with pytest.raises(ValueError):
        s.update(ens, y[:, :1])
    with pytest.raises(IndexError):
        s.update(ens, y, lead_index=1)
    s.update(ens, y)
    with pytest.raises(ValueError):
        s.update(ens[:2], y)  # the ensemble size must not change


def _flatness(counts: list[float]) -> tuple[float, float]:
    """Pearson's chi-square statistic of rank counts against a flat histogram, and its 99.9% quantile: a
    calibrated ensemble exceeds it with probability 0.001."""
    counts = np.asarray(counts)
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum()), float(chi2.ppf(0.999, counts.size - 1))


def test_rank_histogram_of_a_calibrated_ensemble_is_flat():
    """Members and truth drawn from one distribution: every rank is equally likely. Counted over the valid points
    of every lead time; masked points (NaN or huge there) count nowhere."""
    m, b, l, c, h, w = 9, 4, 3, 2, 32, 32
    g = torch.Generator().manual_seed(5)
    ens, y = torch.randn(m, b, l, c, h, w, generator=g), torch.randn(b, l, c, h, w, generator=g)
    mask = torch.ones(h, w, dtype=torch.bool)
    mask[:8] = False
    y[..., :8, :] = torch.nan
    ens[..., :8, :] = 1e30
    s = LeadTimeScores([1.0, 2.0, 3.0])
    s.update(ens, y, mask=mask)
    counts = s.compute()["rank_histogram"]
    assert len(counts) == m + 1
    assert sum(counts) == pytest.approx(b * c * int(mask.sum()) * l)  # valid points x lead times
    statistic, limit = _flatness(counts)
    assert statistic < limit, (statistic, limit, counts)
    # The same test rejects a too narrow ensemble (U-shaped) and a too wide one (dome-shaped).
    for scale, edges_above in ((0.5, True), (2.0, False)):
        s = LeadTimeScores([1.0, 2.0, 3.0])
        s.update(scale * ens.clamp(max=10), y, mask=mask)
        counts = s.compute()["rank_histogram"]
        assert _flatness(counts)[0] > 10 * limit
        assert (counts[0] + counts[-1] > 2 * np.mean(counts)) == edges_above


def test_rank_histogram_splits_ties_evenly():
    """A truth tied with e members counts 1/(e+1) at each of the e+1 ranks it could take."""
    members_per_point = torch.tensor([[-1.0, 0.0, 0.0],  # truth 0: one member below, tied with two
                                      [1.0, 2.0, 3.0],  # truth 0: below all, no tie
                                      [2.0, 3.0, 4.0]])  # truth 5: above all
    ens, truth = members_per_point.T, torch.tensor([0.0, 0.0, 5.0])  # (M = 3, 3 points), (3 points)
    first, second, third = np.array([0, 1, 1, 1]) / 3, np.array([1, 0, 0, 0]), np.array([0, 0, 0, 1])
    np.testing.assert_allclose(rank_histogram(ens, truth).numpy(), first + second + third)
    np.testing.assert_allclose(rank_histogram(ens, truth, torch.tensor([False, True, True])).numpy(), second + third)
    fixed = torch.zeros(4, 10)  # e.g. fixed particles: every member equals the truth
    np.testing.assert_allclose(rank_histogram(fixed, fixed[0]).numpy(), np.full(5, 10 / 5))
