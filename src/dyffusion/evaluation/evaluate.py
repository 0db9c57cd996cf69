"""Score ensembles of a run on a data split, lead time by lead time, in the data's physical units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dyffusion.config import SamplingConfig
from dyffusion.data.contract import DataError, GriddedData
from dyffusion.distributed import Shard
from dyffusion.errors import UserError
from dyffusion.evaluation.forecast import sample_ensembles, stack_batches
from dyffusion.metrics import LeadTimeScores
from dyffusion.run import Run


@dataclass
class Example:
    """One initial condition's forecast, kept for figures: ensemble (M, L, C, H, W), truth (L, C, H, W)."""

    trajectory: int
    start: int
    initial: np.ndarray
    truth: np.ndarray
    ensemble: np.ndarray
    lead_times: list[int]
    valid: np.ndarray | None
    static: np.ndarray


@dataclass
class Evaluation:
    """What :func:`evaluate` returns: ``metrics`` (the ``metrics.json`` schema), the first initial condition's
    forecast for figures, and with ``keep_forecasts`` every forecast: ensemble (M, N, L, C, H, W) from the
    N ``inits`` and the truth (N, L, C, H, W)."""

    metrics: dict
    example: Example | None
    inits: list[tuple[int, int]]
    lead_times: list[int]
    ensemble: np.ndarray | None = None
    truth: np.ndarray | None = None


def full_rollout(run: Run, data: GriddedData) -> int:
    """Lead steps from a trajectory's first frame to its last, at the run's time stride."""
    return (data.num_frames - 1) // run.spec.time_stride


def initial_conditions(data: GriddedData, rollout: int, inits: int | None) -> list[tuple[int, int]]:
    """(trajectory, start frame) pairs. Default: every trajectory from its first frame (the paper's protocol
    for physical systems), or every start of a single long series; ``inits`` K spreads K pairs evenly."""
    last_start = data.num_frames - 1 - rollout
    if last_start < 0:
        raise DataError(f"{data.source}: trajectories have {data.num_frames} frames, too short for a rollout "
                        f"of {rollout} steps (needs {rollout + 1})")
    if data.num_trajectories > 1:
        candidates = [(t, s) for t in range(data.num_trajectories) for s in range(last_start + 1)]
        default = [(t, 0) for t in range(data.num_trajectories)]
    else:
        candidates = [(0, s) for s in range(last_start + 1)]
        default = candidates
    if inits is None:
        return default
    if inits < 1:
        raise UserError(f"--inits must be >= 1, got {inits}")
    picks = np.linspace(0, len(candidates) - 1, min(inits, len(candidates))).round().astype(int)
    return [candidates[i] for i in sorted(set(picks.tolist()))]


def area_weights(data: GriddedData, lat_weighting: bool | None) -> np.ndarray | None:
    """(trajectories, H, W) cos(latitude) weights, or None. ``lat_weighting=None`` weights when the data has a
    latitude coordinate; True without one is an error."""
    if lat_weighting is False or (lat_weighting is None and data.latitude is None):
        return None
    if data.latitude is None:
        raise DataError(f"{data.source}: latitude weighting needs a latitude coordinate (lat, or CF "
                        f"standard_name latitude / units degrees_north)")
    return np.cos(np.deg2rad(data.latitude))


def evaluate(run: Run, data: GriddedData, sampling: SamplingConfig | None = None, rollout: int | None = None,
             inits: int | None = None, seed: int = 0, progress: bool = True, keep_example: bool = True,
             lat_weighting: bool | None = None, keep_forecasts: bool = False,
             shard: Shard = Shard()) -> Evaluation | None:
    """Ensemble scores per lead time (1..rollout) over the chosen initial conditions.

    sampling: how to sample, members included (default: the run's ``config.sampling``).
    lat_weighting: weight points by cos(latitude) (default: when the data has a latitude coordinate).
    keep_forecasts: keep every forecast in the result (all of them in memory at once).
    shard: sample only this process's batches of initial conditions; rank 0 gathers the scores and forecasts
    of all and returns the result (the same as one process's with the same seed), the other processes None.
    """
    sampling = sampling or run.config.sampling
    run.spec.check(data)
    data = data.subsample_time(run.spec.time_stride)
    rollout = run.horizon if rollout is None else rollout
    if rollout < 1:
        raise UserError(f"--rollout must be >= 1, got {rollout}")
    pairs = initial_conditions(data, rollout, inits)
    weights = area_weights(data, lat_weighting)
    pipeline = run.pipeline(sampling)
    leads = list(range(1, rollout + 1))
    # Scores per batch, added up in batch order: the same sums, to the last bit, whichever process sampled a batch.
    scores: dict[int, LeadTimeScores] = {}
    costs, chunks = [], []  # per rollout chunk: (batch index, network evaluations, seconds); kept forecasts
    samples = sample_ensembles(pipeline, run.spec, data, pairs, sampling.members, rollout, seed=seed, shard=shard,
                               progress=progress)
    for index, batch, lead_times, ensemble, seconds in samples:
        costs.append((index, pipeline.network_evaluations, seconds))
        trajectories = [t for t, _ in batch]
        truth = torch.from_numpy(np.stack([data.values[t, s + np.array(lead_times)] for t, s in batch]))
        valid = torch.from_numpy(data.valid[trajectories])[:, None, None] if data.valid is not None else None
        weight = torch.from_numpy(weights[trajectories])[:, None, None] if weights is not None else None
        batch_scores = scores.setdefault(index, LeadTimeScores(leads))
        batch_scores.update(ensemble, truth, lead_index=lead_times[0] - 1, mask=valid, weights=weight)
        if keep_forecasts or (keep_example and index == 0):
            chunks.append((index, lead_times, ensemble.numpy(), truth.numpy()))
    gathered = shard.gather((scores, costs, chunks))
    if gathered is None:
        return None
    total = LeadTimeScores(leads)
    every_batch = {index: part for process_scores, _, _ in gathered for index, part in process_scores.items()}
    for index in sorted(every_batch):
        total.merge(every_batch[index])
    costs = sorted((cost for _, process_costs, _ in gathered for cost in process_costs), key=lambda cost: cost[0])
    evaluations, sampling_seconds = [cost[1] for cost in costs], sum(cost[2] for cost in costs)
    chunks = [chunk for _, _, process_chunks in gathered for chunk in process_chunks]
    metrics = total.compute()
    metrics.update({
        "lead_time_unit": f"one step = {run.spec.time_step:g} in the units of the time coordinate (after the stride)",
        "members": sampling.members,
        "initial_conditions": len(pairs),
        "rollout": rollout,
        "sampler": pipeline.sampler,
        "sampling_steps": pipeline.sampling_steps,
        "precision": pipeline.precision,
        "method": run.method,
        "network_evaluations": float(np.mean(evaluations)) * -(-rollout // run.horizon),
        "sampling_seconds": sampling_seconds,
        "sampling_seconds_per_initial_condition": sampling_seconds / len(pairs),
        "crps_estimator": "crps: paper's 1/(2M^2) spread term; crps_fair: 1/(2M(M-1))",
        "units": "physical units of the data (denormalised), averaged over channels and valid points",
        "area_weighting": "cos(latitude)" if weights is not None else "none",
    })
    result = Evaluation(metrics, _example(data, pairs[0], chunks) if keep_example else None, pairs, leads)
    if keep_forecasts:
        result.ensemble = stack_batches([(index, ensemble) for index, _, ensemble, _ in chunks], batch_axis=1)
        result.truth = stack_batches([(index, truth) for index, _, _, truth in chunks], batch_axis=0)
    return result


def _example(data: GriddedData, first: tuple[int, int], chunks: list) -> Example:
    """``first``: the first initial condition, that of batch 0."""
    trajectory, start = first
    mine = [(lead_times, ensemble[:, 0], truth[0]) for index, lead_times, ensemble, truth in chunks if index == 0]
    return Example(trajectory, start, data.values[trajectory, start], np.concatenate([m[2] for m in mine]),
                   np.concatenate([m[1] for m in mine], axis=1), [t for m in mine for t in m[0]],
                   data.valid[trajectory] if data.valid is not None else None, data.static[trajectory])
