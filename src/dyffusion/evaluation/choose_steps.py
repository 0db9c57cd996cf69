"""DYffusion's sampling steps chosen on the validation split, as ``fit`` does after the forecaster stage.

Which diffusion steps sample best depends on the system: every interpolator call adds MC-dropout spread, and on
the spring mesh 3 of the 16 steps beat all of them in CRPS as well as in cost (``dyffusion frontier``). The
candidates are the frontier's integer step lists (:func:`frontier_schedules`: evenly spaced subsets of the
dynamical steps, the dynamical steps, every m-th artificial step, all steps; "all xK" only when
``sampling.choose_subdivisions`` asks for it) and the configured steps, each sampled with the run's sampler and
refine setting (the paper's accelerated sampling). All are scored on the same initial conditions with the same
seed (the same dropout mask stream), so that their differences are not sampling noise of different draws.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

from tqdm.auto import tqdm

from dyffusion.data.contract import GriddedData
from dyffusion.distributed import Shard
from dyffusion.evaluation.evaluate import evaluate, full_rollout
from dyffusion.evaluation.frontier import FrontierRow, best_within, frontier_schedules
from dyffusion.method.schedule import StepSchedule, sampling_steps
from dyffusion.run import Run


def step_candidates(run: Run) -> dict[str, list[float]]:
    """Name -> step list of every candidate, the frontier's coarse to fine, then the configured steps under their
    own name (``configured`` for a list) unless one of the frontier's lists is the same."""
    sampling = run.config.sampling
    candidates = frontier_schedules(run.schedule, sampling.choose_subdivisions)
    configured = [float(step) for step in sampling_steps(run.schedule, sampling.steps)]
    if configured not in candidates.values():
        candidates[sampling.steps if isinstance(sampling.steps, str) else "configured"] = configured
    return candidates


def _setting(chosen: FrontierRow, configured: str | list[float], schedule: StepSchedule) -> str | list[float]:
    """What ``sampling.steps`` becomes: the configured value when it names the chosen list, else the candidate's
    name when it is a step mode (``all``, ``dynamical``, ``every:m``: clearer in config.yaml), else the list."""
    for setting in (configured, chosen.schedule):
        try:
            if sampling_steps(schedule, setting) == chosen.steps:
                return setting
        except ValueError:  # a name that is no mode, such as "3 of 16 dynamical"
            continue
    return chosen.steps


def choose_steps(run: Run, data: GriddedData, seed: int = 0, quiet: bool = False, shard: Shard = Shard()) -> dict:
    """Score every :func:`step_candidates` list on ``data`` (the validation split, as :func:`evaluate` takes it)
    and choose the lowest CRPS, fewer network evaluations breaking ties; a candidate whose CRPS is not finite
    (a diverged rollout) is never chosen.

    Members, rollout (capped at whole trajectories) and initial conditions come from ``run.config.sampling``'s
    ``choose_*``. Returns what ``fit`` records in training.json: ``chosen`` (the name; None when no candidate
    scored a finite CRPS, and the configured steps stay), ``chosen_steps`` (its list), ``setting`` (the new
    ``sampling.steps``), what the candidates shared, and per candidate its steps, network evaluations per member
    and rollout, CRPS, SSR and MSE. ``shard``: each process samples its share of the initial conditions and all
    return rank 0's choice.
    """
    sampling, schedule, started = run.config.sampling, run.schedule, time.monotonic()
    rollout = full_rollout(run, data)
    rollout = rollout if sampling.choose_rollout is None else min(rollout, sampling.choose_rollout)
    candidates = step_candidates(run)
    rows, shared = [], {}
    bar = tqdm(candidates.items(), desc="sampling steps search", unit="schedule", disable=quiet or shard.rank > 0)
    for name, steps in bar:
        candidate = replace(sampling, steps=steps, members=sampling.choose_members)
        result = evaluate(run, data, candidate, rollout, sampling.choose_inits, seed, False, keep_example=False,
                          shard=shard)
        if result is None:  # another process than rank 0: its share is in rank 0's scores
            continue
        metrics, mean = result.metrics, result.metrics["mean"]
        shared = {key: metrics[key] for key in ("members", "rollout", "initial_conditions")}
        rows.append(FrontierRow(sampling.sampler, name, steps, metrics["network_evaluations"], mean["crps"],
                                mean["mse"], mean["ssr"], metrics["sampling_seconds_per_initial_condition"]))
    record = None
    if shard.rank == 0:
        best = best_within(rows, math.inf)
        kept = [float(step) for step in sampling_steps(schedule, sampling.steps)]
        record = {
            "chosen": best.schedule if best else None,
            "chosen_steps": best.steps if best else kept,
            "setting": _setting(best, sampling.steps, schedule) if best else sampling.steps,
            "criterion": "lowest validation CRPS; fewer network evaluations break ties",
            "sampler": sampling.sampler, "refine": sampling.refine, **shared, "seed": seed,
            "candidates": [{"name": row.schedule, "steps": row.steps, "network_evaluations": row.network_evaluations,
                            "crps": row.crps, "ssr": row.ssr, "mse": row.mse} for row in rows],
            "minutes": (time.monotonic() - started) / 60,
        }
    return shard.broadcast(record)
