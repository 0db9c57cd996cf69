"""The speed-accuracy frontier of DYffusion's samplers: scores against network evaluations per forecast.

Each setting is a (sampler, schedule) pair, a schedule being a list of diffusion steps from only a few dynamical
steps up to all steps with fractional steps between them (the paper's accelerated sampling and its ODE view of the reverse process).
Every setting is scored with :func:`evaluate` on the same data, initial conditions and seed (the same dropout mask
stream), so the differences between settings are not sampling noise of different draws. The cost of a setting is
its network evaluations per member and rollout (interpolator and forecaster calls, including refinement).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dyffusion.config import ExperimentConfig
from dyffusion.data.contract import GriddedData
from dyffusion.errors import RunError, UserError
from dyffusion.evaluation.evaluate import evaluate
from dyffusion.io import atomic_path, write_json, write_text
from dyffusion.method.sampler import SAMPLERS
from dyffusion.method.schedule import StepSchedule, sampling_steps
from dyffusion.methods import method_of
from dyffusion.plots import plot_frontier
from dyffusion.run import Run


@dataclass
class FrontierRow:
    """One setting's scores: ``network_evaluations`` per member and rollout, ``seconds_per_forecast`` the sampling
    time of one initial condition (all members, whole rollout); CRPS (the paper's estimator), ensemble-mean MSE and
    SSR (ddof 0) averaged over lead times, in the data's units."""

    sampler: str
    schedule: str
    steps: list[float]
    network_evaluations: float
    crps: float
    mse: float
    ssr: float
    seconds_per_forecast: float


def frontier_schedules(schedule: StepSchedule, subdivisions: Sequence[int] = (2,)) -> dict[str, list[float]]:
    """Named step lists from coarse to fine, each a distinct list (the first name of a list wins).

    ``K of D dynamical``: K evenly spaced of the D dynamical steps, K = 2 (0 and the last step), then about doubling
    the intervals each time; ``dynamical``: all of them; ``every:m``: the dynamical steps plus every m-th artificial
    step (m = powers of two); ``all``: every step; ``all xK``: every interval between two steps split into K, which
    visits fractional steps the forecaster never saw in training.
    """
    dynamical = schedule.dynamical_steps
    named: dict[str, list[float]] = {}
    intervals = len(dynamical) - 1
    # K - 1 intervals: the D - 1 intervals of the dynamical steps halved, quartered, ... down to one.
    counts = sorted({1 + max(1, round(intervals / 2**j)) for j in range(1, intervals.bit_length() + 1)})
    for count in (count for count in counts if count < len(dynamical)):
        picks = np.linspace(0, intervals, count).round().astype(int)
        named[f"{count} of {len(dynamical)} dynamical"] = [float(dynamical[i]) for i in picks]
    named["dynamical"] = [float(step) for step in dynamical]
    artificial = len(schedule.artificial_steps)
    spacings = [2**j for j in range(artificial.bit_length(), 0, -1) if artificial // 2**j >= 1]
    for m in spacings:
        named[f"every:{m}"] = [float(step) for step in sampling_steps(schedule, f"every:{m}")]
    named["all"] = [float(step) for step in range(schedule.num_steps)]
    for parts in subdivisions:
        if parts < 2:
            raise UserError(f"subdivisions must be >= 2, got {parts}")
        named[f"all x{parts}"] = [step / parts for step in range(schedule.last_step * parts + 1)]
    distinct: dict[tuple[float, ...], str] = {}
    for name, steps in named.items():
        distinct.setdefault(tuple(steps), name)
    return {name: list(steps) for steps, name in sorted(distinct.items(), key=lambda item: len(item[0]))}


def check_samplers(samplers: Sequence[str]) -> None:
    unknown = [sampler for sampler in samplers if sampler not in SAMPLERS]
    if unknown or not samplers:
        problem = f"unknown sampler {', '.join(unknown)}" if unknown else "no sampler given"
        raise UserError(f"--samplers: {problem}; choose from {', '.join(SAMPLERS)}")


def require_schedules(config: ExperimentConfig, path) -> None:
    """RunError unless the run's method has samplers and step subsets to compare (DYffusion)."""
    if not method_of(config).has_sampling_schedules:
        raise RunError(f"{path} is a {config.method} run: the frontier compares DYffusion's samplers and "
                       "schedules, which a baseline does not have")


def measure_frontier(run: Run, data: GriddedData, samplers: Sequence[str], schedules: dict[str, list[float]],
                     members: int, rollout: int | None = None, inits: int | None = None, seed: int = 0,
                     refine: bool | None = None, progress: bool = False,
                     report: Callable[[str], None] | None = None) -> tuple[list[FrontierRow], dict]:
    """Scores of every (sampler, schedule), samplers outer, and what all settings share (members, initial
    conditions, rollout, refine, precision, seed). ``report`` gets one line per setting when it is done;
    ``progress`` shows a bar per setting. ``refine``: the run's setting unless given."""
    require_schedules(run.config, run.path)
    check_samplers(samplers)
    rows, total, shared = [], len(samplers) * len(schedules), {}
    for sampler in samplers:
        for name, steps in schedules.items():
            sampling = replace(run.config.sampling, sampler=sampler, steps=steps, members=members,
                               refine=run.config.sampling.refine if refine is None else refine)
            metrics = evaluate(run, data, sampling, rollout, inits, seed, progress, keep_example=False).metrics
            shared = {key: metrics[key] for key in ("members", "initial_conditions", "rollout", "precision")}
            mean = metrics["mean"]
            rows.append(FrontierRow(sampler, name, list(steps), metrics["network_evaluations"], mean["crps"],
                                    mean["mse"], mean["ssr"], metrics["sampling_seconds_per_initial_condition"]))
            if report is not None:
                row = rows[-1]
                report(f"[{len(rows)}/{total}] {sampler}, {name} ({len(steps)} steps): "
                       f"{row.network_evaluations:.0f} network evaluations per member, CRPS {row.crps:.4g}, "
                       f"MSE {row.mse:.4g}, SSR {row.ssr:.3g}, {row.seconds_per_forecast:.3g} s per forecast")
    refine = run.config.sampling.refine if refine is None else refine
    return rows, {**shared, "refine": refine, "seed": seed}


def _scored(rows: Sequence[FrontierRow]) -> list[FrontierRow]:
    """Rows with a finite CRPS: a diverged setting (NaN or inf) can neither win a budget nor sit on the front."""
    return [row for row in rows if math.isfinite(row.crps)]


def best_within(rows: Sequence[FrontierRow], budget: float) -> FrontierRow | None:
    """The lowest-CRPS row with at most ``budget`` network evaluations (fewer evaluations break ties)."""
    affordable = [row for row in _scored(rows) if row.network_evaluations <= budget]
    return min(affordable, key=lambda row: (row.crps, row.network_evaluations), default=None)


def best_per_budget(rows: Sequence[FrontierRow]) -> list[tuple[float, FrontierRow]]:
    """(budget, best row within it) for every distinct number of network evaluations of the rows, increasing."""
    budgets = sorted({row.network_evaluations for row in _scored(rows)})
    return [(budget, best_within(rows, budget)) for budget in budgets]


def pareto_front(rows: Sequence[FrontierRow]) -> list[FrontierRow]:
    """Rows no other row beats in both CRPS and network evaluations (at least as good in both, better in one),
    by increasing evaluations."""
    scored = _scored(rows)

    def dominated(row: FrontierRow) -> bool:
        return any(other.network_evaluations <= row.network_evaluations and other.crps <= row.crps
                   and (other.network_evaluations < row.network_evaluations or other.crps < row.crps)
                   for other in scored)

    return sorted((row for row in scored if not dominated(row)), key=lambda row: (row.network_evaluations, row.crps))


def matched_budgets(rows: Sequence[FrontierRow], samplers: Sequence[str]) -> list[tuple[float, dict[str, FrontierRow]]]:
    """Each sampler's best row within each budget, for the budgets (distinct network evaluations of the samplers'
    rows) that every sampler can afford: the comparison of samplers at equal cost."""
    by_sampler = {sampler: [row for row in rows if row.sampler == sampler] for sampler in samplers}
    matched = []
    for budget in sorted({row.network_evaluations for group in by_sampler.values() for row in _scored(group)}):
        best = {sampler: best_within(group, budget) for sampler, group in by_sampler.items()}
        if all(row is not None for row in best.values()):
            matched.append((budget, best))
    return matched


def frontier_tables(rows: Sequence[FrontierRow]) -> list[str]:
    """Markdown lines: every setting (Pareto-front rows marked), the best setting per budget and, with several
    samplers, their best CRPS at matched budgets."""
    front = {id(row) for row in pareto_front(rows)}
    lines = ["| sampler | schedule | steps | network evaluations per member | CRPS | MSE | SSR | seconds per forecast "
             "| Pareto front |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.sampler} | {row.schedule} | {len(row.steps)} | {row.network_evaluations:.0f} | "
                     f"{row.crps:.5g} | {row.mse:.5g} | {row.ssr:.3g} | {row.seconds_per_forecast:.3g} | "
                     f"{'yes' if id(row) in front else ''} |")
    lines += ["", "Best setting per budget (lowest CRPS with at most that many network evaluations per member):", ""]
    lines += [f"- {budget:.0f}: {row.sampler}, {row.schedule} (CRPS {row.crps:.5g}, {row.network_evaluations:.0f} "
              f"evaluations)" for budget, row in best_per_budget(rows)]
    samplers = list(dict.fromkeys(row.sampler for row in rows))
    if len(samplers) > 1:
        lines += ["", "Each sampler's best CRPS within the same budget (budgets every sampler can afford):", "",
                  "| budget | " + " | ".join(samplers) + " | lowest |", "|---|" + "---|" * (len(samplers) + 1)]
        for budget, best in matched_budgets(rows, samplers):
            cells = [f"{best[sampler].crps:.5g} ({best[sampler].schedule})" for sampler in samplers]
            lowest = min(row.crps for row in best.values())
            winners = [sampler for sampler in samplers if best[sampler].crps == lowest]
            lines.append(f"| {budget:.0f} | " + " | ".join(cells) + f" | {' = '.join(winners)} |")
    return lines


def write_frontier(out: Path, rows: Sequence[FrontierRow], context: dict, title: str) -> dict[str, Path]:
    """``frontier.json`` (context, rows, best per budget, Pareto front), ``frontier.md`` and ``frontier.png``
    in ``out``; returns name -> path. ``context``: what was measured (run, data, members, ...), shown as is."""
    out = Path(out)
    plain = [asdict(row) for row in rows]
    front = pareto_front(rows)
    paths = {"json": out / "frontier.json", "markdown": out / "frontier.md", "figure": out / "frontier.png"}
    write_json(paths["json"], {
        **context,
        "budget_unit": "network evaluations per member and rollout (interpolator and forecaster calls)",
        "rows": plain,
        "best_per_budget": [{"budget": budget, **asdict(row)} for budget, row in best_per_budget(rows)],
        "pareto_front": [asdict(row) for row in front],
    })
    with atomic_path(paths["figure"]) as temporary:
        plot_frontier(plain, [asdict(row) for row in front], temporary, title)
    facts = [f"- {key}: {value}" for key, value in context.items()]
    write_text(paths["markdown"], "\n".join([f"# {title}", "", *facts, f"- figure: {paths['figure'].name}", "",
                                             *frontier_tables(rows)]) + "\n")
    return paths
