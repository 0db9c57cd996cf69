"""Continuous-time forecasts scored honestly: a run trained on every s-th stored frame forecasts the stored frames
in between its lead times, and is compared with linear interpolation in time of its own integer-time forecasts.

Both use the very same ensemble members (one sampling, one seed): DYffusion's interpolator gives the real-valued
lead times k / s in one ``forecast`` call, and the integer lead times of that call, with the initial condition at
time 0, are interpolated member by member. The truth is the stored data at its own (finer) time step.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from dyffusion.config import SamplingConfig
from dyffusion.data.contract import GriddedData
from dyffusion.data.spec import DataSpec
from dyffusion.ensemble import EnsemblePipeline
from dyffusion.errors import UserError
from dyffusion.evaluation.evaluate import area_weights, initial_conditions
from dyffusion.evaluation.forecast import sample_ensembles
from dyffusion.metrics import LeadTimeScores
from dyffusion.run import Run

METHODS = {"dyffusion": "DYffusion at real-valued lead times",
           "linear": "linear in time between its integer lead times"}
SCORE_KEYS = ("crps", "crps_fair", "mse", "rmse", "ssr", "ssr_corrected")


def fine_lead_times(horizon: int, stride: int) -> list[float]:
    """Every stored frame of the first horizon in the run's lead steps: k / stride for k = 1..stride * horizon."""
    if horizon < 1 or stride < 1:
        raise ValueError(f"horizon and stride must be >= 1, got {horizon} and {stride}")
    return [k / stride for k in range(1, stride * horizon + 1)]


def interpolate_linearly(initial: torch.Tensor, ensemble: torch.Tensor, knots: Sequence[float],
                         times: Sequence[float]) -> torch.Tensor:
    """Each member's trajectory, piecewise linear in time through ``initial`` at time 0 and its own frames at
    ``knots``, read at ``times``.

    initial (B, C, H, W); ensemble (M, B, L, C, H, W) at the L increasing ``knots`` > 0; ``times`` in
    [0, knots[-1]] -> (M, B, T, C, H, W). At a knot the result is that knot's frame, bit for bit.
    """
    grid = torch.tensor([0.0, *knots], dtype=torch.float64)
    if len(knots) != ensemble.shape[2] or not bool((grid.diff() > 0).all()):
        raise ValueError(f"need {ensemble.shape[2]} increasing knots > 0 for the ensemble's lead times, got {knots}")
    at = torch.tensor(list(times), dtype=torch.float64)
    if bool(((at < 0) | (at > grid[-1])).any()):
        raise UserError(f"times must lie in [0, {grid[-1].item():g}], got {list(times)}")
    left = (torch.searchsorted(grid, at, right=True) - 1).clamp(max=len(knots) - 1)
    weight = ((at - grid[left]) / (grid[left + 1] - grid[left])).to(ensemble.dtype).reshape(1, 1, -1, 1, 1, 1)
    start = initial.to(ensemble.dtype).expand(ensemble.shape[0], *initial.shape)[:, :, None]
    frames = torch.cat([start, ensemble], dim=2)
    # lerp is a + w (b - a) below w = 1/2 and b - (1 - w)(b - a) above: exact at w = 0 and w = 1.
    return torch.lerp(frames[:, :, left], frames[:, :, left + 1], weight)


def in_between_means(scores: dict, lead_times: Sequence[float]) -> dict[str, float]:
    """Means of ``scores`` (a ``LeadTimeScores.compute()`` dict) over its non-integer lead times only."""
    between = [i for i, time in enumerate(lead_times) if not float(time).is_integer()]
    return {key: float(np.mean([scores[key][i] for i in between])) if between else math.nan for key in SCORE_KEYS}


def _with_boundary_condition(pipeline: EnsemblePipeline, spec: DataSpec, frames: torch.Tensor,
                             initial: torch.Tensor, static: torch.Tensor, times: list[float]) -> torch.Tensor:
    """The pipeline's boundary condition on physical frames (M, B, T, C, H, W) at ``times`` from the physical
    ``initial`` (B, C, H, W): every predicted frame gets it before it is scored, interpolated ones too."""
    members = frames.shape[0]
    normalized = spec.normalizer.normalize(frames.flatten(0, 1))  # member-major, as the pipeline's batches
    start = spec.normalizer.normalize(initial).repeat(members, 1, 1, 1)
    bounded = pipeline.boundary_condition(normalized, start, static.repeat(members, 1, 1, 1), times)
    return spec.normalizer.denormalize(bounded).reshape(frames.shape)


def evaluate_continuous(run: Run, data: GriddedData, sampling: SamplingConfig | None = None,
                        inits: int | None = None, seed: int = 0, lat_weighting: bool | None = None,
                        progress: bool = False) -> dict:
    """Scores at every stored frame of the first horizon, of DYffusion at real-valued lead times and of linear
    interpolation of the same members' integer-time forecasts (the ``continuous.json`` schema).

    data: at its stored time step; the initial conditions (``inits`` as in :func:`initial_conditions`) lie on the
    run's coarse grid of every ``time_stride``-th frame. Returns per method a ``LeadTimeScores.compute()`` dict
    over the fine lead times (in the run's lead steps), their means over the in-between times only and the ratio
    DYffusion / linear of those means.
    """
    if not run.parts.forecasts_between_steps:
        raise UserError(f"continuous-time evaluation needs a DYffusion run, whose interpolator forecasts "
                         f"real-valued lead times; {run.path} is a {run.method} run")
    stride = run.spec.time_stride
    if stride == 1:
        raise UserError(f"{run.path} was trained on every stored frame (data.time_stride 1): no stored frames lie "
                         f"between its lead times to score")
    run.spec.check(data)
    coarse = data.subsample_time(stride)
    times = fine_lead_times(run.horizon, stride)
    knots = [float(k) for k in range(1, run.horizon + 1)]
    at_knots = [stride * k - 1 for k in range(1, run.horizon + 1)]  # index of lead time k among ``times``
    between = [i for i, time in enumerate(times) if not time.is_integer()]
    offsets = np.arange(1, len(times) + 1)  # stored frames after the initial condition
    pairs = initial_conditions(coarse, run.horizon, inits)
    weights = area_weights(data, lat_weighting)
    static = torch.from_numpy(np.ascontiguousarray(run.spec.network_static(data)))
    sampling = sampling or run.config.sampling
    pipeline = run.pipeline(sampling)
    scores = {method: LeadTimeScores(times) for method in METHODS}
    seconds = 0.0
    for _, batch, _, ensemble, spent in sample_ensembles(pipeline, run.spec, coarse, pairs, sampling.members, times=times,
                                                         seed=seed, progress=progress):
        seconds += spent
        trajectories = [t for t, _ in batch]
        initial = torch.from_numpy(np.stack([coarse.values[t, s] for t, s in batch]))
        truth = torch.from_numpy(np.stack([data.values[t, s * stride + offsets] for t, s in batch]))
        linear = interpolate_linearly(initial, ensemble[:, :, at_knots], knots, times)
        linear[:, :, between] = _with_boundary_condition(pipeline, run.spec, linear[:, :, between], initial,
                                                         static[trajectories], [times[i] for i in between])
        valid = torch.from_numpy(data.valid[trajectories])[:, None, None] if data.valid is not None else None
        weight = torch.from_numpy(weights[trajectories])[:, None, None] if weights is not None else None
        scores["dyffusion"].update(ensemble, truth, mask=valid, weights=weight)
        scores["linear"].update(linear, truth, mask=valid, weights=weight)
    results = {method: accumulated.compute() for method, accumulated in scores.items()}
    means = {method: in_between_means(result, times) for method, result in results.items()}
    means["ratio"] = {key: means["dyffusion"][key] / means["linear"][key] if means["linear"][key] else math.nan
                      for key in SCORE_KEYS}
    return {
        "methods": METHODS,
        "lead_times": times,
        "lead_time_unit": f"one step = {stride} stored frames = {run.spec.time_step:g} in the units of the time "
                          f"coordinate",
        "stored_frames": offsets.tolist(),
        "integer": [time.is_integer() for time in times],
        **results,
        "in_between": means,
        "ratio": "DYffusion / linear, of the means over the in-between lead times; below 1: DYffusion's is lower",
        "members": sampling.members,
        "initial_conditions": len(pairs),
        "time_stride": stride,
        "horizon": run.horizon,
        "seed": seed,
        "sampler": pipeline.sampler,
        "sampling_steps": pipeline.sampling_steps,
        "refine": pipeline.refine,
        "precision": pipeline.precision,
        "network_evaluations": pipeline.network_evaluations,
        "sampling_seconds": seconds,
        "crps_estimator": "crps: paper's 1/(2M^2) spread term; crps_fair: 1/(2M(M-1))",
        "units": "physical units of the data (denormalised), averaged over channels and valid points",
        "area_weighting": "cos(latitude)" if weights is not None else "none",
    }


def verdict(result: dict) -> str:
    """One sentence: do DYffusion's interpolated lead times beat linear interpolation, in CRPS and in MSE?"""
    means = result["in_between"]
    parts = [f"{name} {means['dyffusion'][key]:.4g} vs {means['linear'][key]:.4g} (ratio {means['ratio'][key]:.3f})"
             for key, name in (("crps", "CRPS"), ("mse", "MSE"))]
    wins = [means["dyffusion"][key] < means["linear"][key] for key in ("crps", "mse")]
    outcome = ("beat" if all(wins) else "do not beat" if not any(wins)
               else f"beat in {'CRPS' if wins[0] else 'MSE'} only")
    return (f"DYffusion's interpolated lead times {outcome} linear interpolation of its own integer-time forecasts "
            f"on the in-between frames: {'; '.join(parts)} (DYffusion vs linear, lower is better)")
