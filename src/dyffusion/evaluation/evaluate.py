"""Score ensembles of a run on a data split, lead time by lead time, in the data's physical units."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from dyffusion.data.contract import DataError, GriddedData
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
        raise ValueError(f"--inits must be >= 1, got {inits}")
    picks = np.linspace(0, len(candidates) - 1, min(inits, len(candidates))).round().astype(int)
    return [candidates[i] for i in sorted(set(picks.tolist()))]


def evaluate(run: Run, data: GriddedData, members: int, rollout: int | None = None, inits: int | None = None,
             seed: int = 0, progress: bool = True, pipeline_options: dict | None = None,
             keep_example: bool = True) -> tuple[dict, Example | None]:
    """Ensemble scores per lead time (1..rollout) over the chosen initial conditions.

    Returns (metrics dict in the ``metrics.json`` schema, the first initial condition's forecast or None).
    """
    if members < 1:
        raise ValueError(f"--members must be >= 1, got {members}")
    run.spec.check(data)
    data = data.subsample_time(run.spec.time_stride)
    rollout = rollout or run.horizon
    if rollout < 1:
        raise ValueError(f"--rollout must be >= 1, got {rollout}")
    pairs = initial_conditions(data, rollout, inits)
    pipeline = run.pipeline(**(pipeline_options or {}))
    normalizer, spec = run.spec.normalizer, run.spec
    static_all = torch.from_numpy(np.ascontiguousarray(spec.network_static(data)))
    scores = LeadTimeScores(list(range(1, rollout + 1)))
    per_batch = max(1, pipeline.max_batch // members)
    torch.manual_seed(seed)
    sampling_seconds, evaluations, example = 0.0, [], None
    bar = tqdm(total=len(pairs) * rollout, desc="forecasting", unit="lead", disable=not progress)
    for first in range(0, len(pairs), per_batch):
        batch_pairs = pairs[first : first + per_batch]
        trajectories = [t for t, _ in batch_pairs]
        starts = np.array([s for _, s in batch_pairs])
        initial = normalizer.normalize(torch.from_numpy(data.values[trajectories, starts]))
        valid = torch.from_numpy(data.valid[trajectories]) if data.valid is not None else None
        kept = []
        clock = time.perf_counter()
        for lead_times, frames in pipeline.rollout(initial, static_all[trajectories], members, rollout):
            sampling_seconds += time.perf_counter() - clock
            evaluations.append(pipeline.network_evaluations)
            ensemble = normalizer.denormalize(frames)
            truth = torch.from_numpy(np.stack([data.values[t, s + np.array(lead_times)] for t, s in batch_pairs]))
            scores.update(ensemble, truth, lead_index=lead_times[0] - 1,
                          mask=valid[:, None, None] if valid is not None else None)
            if keep_example and first == 0:
                kept.append((lead_times, ensemble[:, 0].numpy(), truth[0].numpy()))
            bar.update(len(batch_pairs) * len(lead_times))
            clock = time.perf_counter()
        if kept:
            trajectory, start = batch_pairs[0]
            example = Example(trajectory, start, data.values[trajectory, start],
                              np.concatenate([k[2] for k in kept]), np.concatenate([k[1] for k in kept], axis=1),
                              [t for k in kept for t in k[0]], data.valid[trajectory] if data.valid is not None else None,
                              data.static[trajectory])
    bar.close()
    metrics = scores.compute()
    chunks = -(-rollout // run.horizon)
    metrics.update({
        "lead_time_unit": f"one step = {spec.time_step:g} in the units of the time coordinate (after the stride)",
        "members": members,
        "initial_conditions": len(pairs),
        "rollout": rollout,
        "sampler": pipeline.sampler,
        "sampling_steps": pipeline.sampling_steps,
        "method": run.method,
        "network_evaluations": float(np.mean(evaluations)) * chunks,
        "sampling_seconds": sampling_seconds,
        "sampling_seconds_per_initial_condition": sampling_seconds / len(pairs),
        "crps_estimator": "crps: paper's 1/(2M^2) spread term; crps_fair: 1/(2M(M-1))",
        "units": "physical units of the data (denormalised), averaged over channels and valid points",
    })
    return metrics, example
