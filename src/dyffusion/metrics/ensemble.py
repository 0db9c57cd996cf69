"""Ensemble scores: CRPS (paper and fair estimators), MSE of the ensemble mean, spread-skill ratio, rank histogram.

Conventions: an ensemble has its members on dim 0, ``(M, *S)``; the truth is ``(*S)``. All arithmetic
is float64 (inputs may be float32/bfloat16), because the sums over millions of points that
:class:`LeadTimeScores` accumulates lose digits quickly in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["crps_ensemble", "ensemble_mean_squared_error", "ensemble_variance", "rank_histogram", "LeadTimeScores"]

_F64 = torch.float64


def _crps_terms(ensemble: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """(M, *S), (*S) -> (mean_m |x_m - y|, sum_{m,m'} |x_m - x_m'|), both (*S), float64.

    The pairwise sum uses the order statistics, sum_{m,m'} |x_m - x_m'| = 2 sum_i (2i - M - 1) x_(i),
    which costs one sort (O(M log M)) instead of an (M, M, *S) tensor of differences.
    """
    ens = ensemble.to(_F64)
    m = ens.shape[0]
    skill = (ens - truth.to(_F64)).abs().mean(0)
    coef = torch.arange(1, m + 1, dtype=_F64, device=ens.device).mul_(2).sub_(m + 1)
    pair = 2.0 * torch.tensordot(coef, ens.sort(dim=0).values, dims=([0], [0]))
    return skill, pair


def _check_members(ensemble: Tensor) -> int:
    if ensemble.dim() < 1 or ensemble.shape[0] < 1:
        raise ValueError(f"ensemble must have at least one member on dim 0, got shape {tuple(ensemble.shape)}")
    return ensemble.shape[0]


def crps_ensemble(ensemble: Tensor, truth: Tensor, fair: bool = False) -> Tensor:
    """Pointwise ensemble CRPS. ensemble (M, *S), truth (*S) -> (*S) float64.

    ``fair=False``: the paper's estimator mean|x - y| - sum|x - x'| / (2 M^2) (the CRPS of the
    empirical distribution). ``fair=True``: divide by 2 M (M - 1) instead, unbiased for the CRPS of the
    distribution the members are drawn from; NaN when M == 1 (no spread can be estimated).
    """
    m = _check_members(ensemble)
    skill, pair = _crps_terms(ensemble, truth)
    if fair:
        return skill - pair / (2 * m * (m - 1)) if m > 1 else torch.full_like(skill, math.nan)
    return skill - pair / (2 * m * m)


def ensemble_mean_squared_error(ensemble: Tensor, truth: Tensor) -> Tensor:
    """Pointwise squared error of the ensemble mean. ensemble (M, *S), truth (*S) -> (*S) float64."""
    _check_members(ensemble)
    return (ensemble.to(_F64).mean(0) - truth.to(_F64)).square()


def ensemble_variance(ensemble: Tensor, ddof: int = 0) -> Tensor:
    """Pointwise member variance. ensemble (M, *S) -> (*S) float64; NaN where M - ddof <= 0."""
    m = _check_members(ensemble)
    ens = ensemble.to(_F64)
    if m - ddof <= 0:
        return torch.full(ens.shape[1:], math.nan, dtype=_F64, device=ens.device)
    return (ens - ens.mean(0)).square().sum(0) / (m - ddof)


def rank_histogram(ensemble: Tensor, truth: Tensor, valid: Tensor | None = None) -> Tensor:
    """Counts of the truth's rank among the members over the valid points: ensemble (M, *S), truth (*S), valid
    bool broadcastable to (*S) (True = counted) -> (M + 1,) float64 summing to the number of valid points.

    Rank r = the number of members below the truth. A truth tied with e members (fixed points, boundary values)
    counts 1/(e + 1) at each rank r..r+e: random tie-breaking in expectation, with no random generator, so that
    scoring never disturbs the draws of the sampling around it.
    """
    m = _check_members(ensemble)
    ens, y = ensemble.to(_F64), truth.to(_F64)
    below = (ens < y).sum(0).flatten()
    ties = (ens == y).sum(0).flatten()
    share = 1.0 / (ties + 1).to(_F64)
    if valid is not None:
        counted = torch.as_tensor(valid, device=ens.device).to(torch.bool).expand(y.shape).flatten()
        share = torch.where(counted, share, 0.0)
    # Each point adds its share on ranks below..below+ties: +share at the first, -share after the last, summed up.
    starts = torch.bincount(below, weights=share, minlength=m + 2)
    stops = torch.bincount(below + ties + 1, weights=share, minlength=m + 2)
    return (starts - stops).cumsum(0)[: m + 1]


class LeadTimeScores:
    """Streams ensemble scores per lead time.

    Each :meth:`update` adds float64 sums per lead time (weighted sums of CRPS, fair CRPS, squared
    error of the ensemble mean, member variance with ddof 0 and 1, and the weights), so forecasts
    can be scored chunk by chunk and dropped. Means are taken over valid points (``mask``) of all
    initial conditions and channels, weighted by ``weights`` (e.g. latitude area weights). The rank histogram
    counts every valid point of every lead time once (unweighted).
    """

    _SUMS = ("crps", "crps_fair", "se", "var0", "var1", "weight")

    def __init__(self, lead_times: Sequence[float]):
        self.lead_times = [float(t) for t in lead_times]
        n = len(self.lead_times)
        self.sums = {k: torch.zeros(n, dtype=_F64) for k in self._SUMS}
        self.count = torch.zeros(n, dtype=torch.int64)
        self.members: int | None = None
        self.rank_counts: Tensor | None = None  # (M + 1,) once the ensemble size is known

    def _set_members(self, m: int | None) -> None:
        if m is None:
            return
        if self.members is not None and self.members != m:
            # The ssr correction factor and the fair/paper CRPS gap depend on M: mixing sizes is a bug.
            raise ValueError(f"ensemble size changed from {self.members} to {m} members")
        self.members = m

    def _indices(self, lead_index: int | Sequence[int], n_leads: int) -> Tensor:
        if isinstance(lead_index, int):
            idx = torch.arange(lead_index, lead_index + n_leads)
        else:
            idx = torch.as_tensor(list(lead_index), dtype=torch.int64)
            if idx.numel() != n_leads:
                raise ValueError(f"got {idx.numel()} lead indices for {n_leads} lead times in the chunk")
        if n_leads and (idx.min() < 0 or idx.max() >= len(self.lead_times)):
            raise IndexError(f"lead indices {idx.tolist()} outside 0..{len(self.lead_times) - 1}")
        return idx

    @torch.no_grad()
    def update(
        self,
        ensemble: Tensor,
        truth: Tensor,
        lead_index: int | Sequence[int] = 0,
        mask: Tensor | None = None,
        weights: Tensor | None = None,
    ) -> None:
        """Add one chunk. ensemble (M, B, L, C, H, W), truth (B, L, C, H, W).

        lead_index: where the chunk's L lead times start in ``lead_times``, or L explicit indices.
        mask: bool, True = valid, broadcastable to (B, L, C, H, W) (e.g. (H, W) or (B, 1, 1, H, W)).
        weights: per-point weights broadcastable likewise (e.g. (H, 1) latitude weights).
        """
        if ensemble.dim() != 6 or truth.shape != ensemble.shape[1:]:
            raise ValueError(
                f"expected ensemble (M, B, L, C, H, W) and truth (B, L, C, H, W), "
                f"got {tuple(ensemble.shape)} and {tuple(truth.shape)}"
            )
        m, b, n_leads = ensemble.shape[:3]
        idx = self._indices(lead_index, n_leads)
        self._set_members(m)
        dev = ensemble.device

        w = torch.ones((), dtype=_F64, device=dev)
        if weights is not None:
            w = torch.as_tensor(weights, device=dev).to(_F64)
        if mask is not None:
            w = torch.where(torch.as_tensor(mask, device=dev).to(torch.bool), w, 0.0)
        w = w.expand(truth.shape)  # raises here if mask/weights do not broadcast
        # torch.where, not w * value: masked points may hold NaN/inf (land, obstacles) and 0 * NaN = NaN.
        keep = w != 0

        ens = ensemble.to(_F64)
        skill, pair = _crps_terms(ens, truth)
        var0 = (ens - ens.mean(0)).square().mean(0)
        se = (ens.mean(0) - truth.to(_F64)).square()
        ranks = rank_histogram(ens, truth, mask)
        del ens
        nan = torch.full_like(skill, math.nan)
        values = {
            "crps": skill - pair / (2 * m * m),
            "crps_fair": skill - pair / (2 * m * (m - 1)) if m > 1 else nan,
            "se": se,
            "var0": var0,
            "var1": var0 * (m / (m - 1)) if m > 1 else nan,
            "weight": torch.ones_like(skill),
        }
        dims = (0, 2, 3, 4)  # sum over B, C, H, W; keep L
        for k, v in values.items():
            s = torch.where(keep, w * v, 0.0).sum(dims).cpu()
            self.sums[k].index_add_(0, idx, s)
        self.count.index_add_(0, idx, torch.full((n_leads,), b, dtype=torch.int64))
        self._add_ranks(ranks.cpu())

    def _add_ranks(self, counts: Tensor | None) -> None:
        if counts is not None:
            self.rank_counts = counts.clone() if self.rank_counts is None else self.rank_counts + counts

    def merge(self, other: LeadTimeScores) -> LeadTimeScores:
        """Add another accumulator's sums (e.g. from another shard) into this one; returns self."""
        if other.lead_times != self.lead_times:
            raise ValueError("cannot merge accumulators with different lead_times")
        self._set_members(other.members)
        for k in self._SUMS:
            self.sums[k] += other.sums[k]
        self.count += other.count
        self._add_ranks(other.rank_counts)
        return self

    def compute(self) -> dict:
        """Scores per lead time (lists, NaN where never updated) and their means over lead times.

        Returns {"lead_times", "crps", "crps_fair", "mse", "rmse", "ssr", "ssr_corrected": lists,
        "mean": {same score keys: mean of the per-lead values over updated leads}, "members": M, "count": list,
        "rank_histogram": M + 1 counts over all lead times (None before any update)}.
        """
        s = self.sums
        wsum = s["weight"]
        seen = wsum > 0
        den = torch.where(seen, wsum, torch.ones_like(wsum))

        def avg(x: Tensor) -> Tensor:
            return torch.where(seen, x / den, torch.full_like(x, math.nan))

        mse = avg(s["se"])
        rmse = mse.sqrt()
        m = self.members or 0
        corr = math.sqrt((m + 1) / m) if m > 1 else math.nan
        scores = {
            "crps": avg(s["crps"]),
            "crps_fair": avg(s["crps_fair"]),
            "mse": mse,
            "rmse": rmse,
            # Ratio of RMS spread to RMSE; a perfect forecast (rmse = 0) gives inf/nan, which is honest.
            "ssr": avg(s["var0"]).sqrt() / rmse,
            "ssr_corrected": corr * avg(s["var1"]).sqrt() / rmse,
        }
        out: dict = {"lead_times": list(self.lead_times)}
        out.update({k: v.tolist() for k, v in scores.items()})
        # Mean over the lead times that were updated; never-updated ones are NaN and do not count.
        out["mean"] = {k: v[seen].mean().item() if seen.any() else math.nan for k, v in scores.items()}
        out["members"] = self.members
        out["count"] = self.count.tolist()
        out["rank_histogram"] = self.rank_counts.tolist() if self.rank_counts is not None else None
        return out

