"""The speed-accuracy frontier of DYffusion's cold and Heun samplers on the runs of ``benchmarks/paper.py``.

    python benchmarks/frontier.py [--members 20] [--paper DIR] [--systems spring-mesh,navier-stokes]

For each system, the DYffusion run in DIR/runs/SYSTEM/dyffusion (DIR: benchmarks/runs/paper, which
``python benchmarks/paper.py`` trains) is scored on the test split of DIR/data/SYSTEM as paper.py scores it
(spring mesh: whole trajectories; Navier-Stokes: 64-step rollouts; every test trajectory from its first frame),
with cold and Heun sampling over the schedules of ``frontier_schedules`` (from 0 and the last step only, through
subsets of the dynamical steps, to all steps and all steps split in half), every setting with the same seed.
Each system's frontier.json, frontier.md and frontier.png go to DIR/frontier/SYSTEM; a section with the tables,
the figures and a conclusion per system (does Heun beat cold at equal network evaluations?) is appended to
``benchmarks/RESULTS.md``.

Cost: the 14 settings of an h = 16 run cost about 12 one-schedule evaluations with all steps (Heun's twice
cold's); estimated from the sampling times of ``paper.py --quick`` at 20 members, about 15 minutes for the
spring mesh and 20 for Navier-Stokes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from paper import Progress
from results import append, chosen_names, machine

from dyffusion.data.contract import open_gridded
from dyffusion.evaluation import full_rollout
from dyffusion.evaluation.frontier import (
    FrontierRow,
    frontier_schedules,
    frontier_tables,
    matched_budgets,
    measure_frontier,
    pareto_front,
    write_frontier,
)
from dyffusion.run import Run, RunError

SAMPLERS = ("cold", "heun")


@dataclass(frozen=True)
class System:
    """A system of paper.py: its title and rollout (None: whole trajectories)."""

    title: str
    rollout: int | None


SYSTEMS = {"spring-mesh": System("Spring mesh", None), "navier-stokes": System("Navier-Stokes", 64)}


def load_average() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def conclusion(title: str, rows: list[FrontierRow]) -> str:
    """Whether Heun beats cold at equal network evaluations: their best CRPS within each budget both can afford."""
    matched = matched_budgets(rows, SAMPLERS)
    if not matched:
        return f"**{title}: no budget of network evaluations that both samplers can afford; nothing to compare.**"
    heun = [budget for budget, best in matched if best["heun"].crps < best["cold"].crps]
    cold = [budget for budget, best in matched if best["cold"].crps < best["heun"].crps]
    median = statistics.median(best["heun"].crps / best["cold"].crps for _, best in matched)
    counts = (f"Heun's best CRPS is lower at {len(heun)} and cold's at {len(cold)} of the {len(matched)} budgets both "
              f"can afford ({matched[0][0]:.0f} to {matched[-1][0]:.0f} network evaluations per member; median "
              f"Heun / cold best CRPS {median:.3f})")
    if len(heun) == len(matched):
        verdict = "Heun beats cold at equal network evaluations at every budget"
    elif not heun:
        verdict = "Heun does not beat cold at equal network evaluations at any budget"
    else:
        budgets = ", ".join(f"{budget:.0f}" for budget in heun)
        verdict = f"Heun beats cold at equal network evaluations only at some budgets ({budgets})"
    best = min(pareto_front(rows), key=lambda row: row.crps)
    return (f"**{title}: {verdict}.** {counts}. Lowest CRPS overall: {best.sampler}, {best.schedule} "
            f"({best.crps:.4g} at {best.network_evaluations:.0f} network evaluations per member).")


def load_run(paper: Path, name: str) -> Run:
    try:
        return Run.load(paper / "runs" / name / "dyffusion")
    except RunError as error:
        sys.exit(f"{error}; train it first with python benchmarks/paper.py")


def measure_system(name: str, system: System, run: Run, paper: Path, members: int, say: Progress) -> list[str]:
    """The frontier of one system's DYffusion run: files in paper/frontier/name, Markdown lines for RESULTS.md."""
    test = open_gridded(paper / "data" / name, "test")
    rollout = full_rollout(run, test) if system.rollout is None else system.rollout
    schedules = frontier_schedules(run.schedule)
    say(f"{name}: {len(SAMPLERS) * len(schedules)} settings, {members} members, {rollout} steps")
    rows, shared = measure_frontier(run, test, SAMPLERS, schedules, members, rollout, report=lambda line: say(
        f"{name} {line}"))
    title = f"{system.title}, test: DYffusion's samplers"
    paths = write_frontier(paper / "frontier" / name, rows,
                           {"run": str(run.path), "data": test.source, "split": "test", **shared}, title)
    schedule = run.schedule
    return [f"\n### {system.title}\n",
            f"- run `{run.path}` (h = {run.horizon}, schedule {schedule.kind} with {schedule.extra_steps} extra "
            f"steps: {schedule.num_steps} diffusion steps), data `{test.source}`",
            f"- {shared['members']} members, {shared['initial_conditions']} initial conditions, {shared['rollout']} "
            f"lead steps, refine {shared['refine']}, seed {shared['seed']}; files `{paths['markdown'].parent}`, "
            f"figure `{paths['figure']}`", "", *frontier_tables(rows), "", conclusion(system.title, rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=20, help="ensemble size (default 20)")
    parser.add_argument("--paper", type=Path, help="results directory of benchmarks/paper.py (default "
                                                   "benchmarks/runs/paper)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, of " + ", ".join(SYSTEMS))
    args = parser.parse_args()
    names = chosen_names(parser, args.systems, SYSTEMS)
    if args.members < 1:
        parser.error(f"--members must be >= 1, got {args.members}")
    # Relative to the working directory where it can be, so that RESULTS.md names the files portably.
    paper = args.paper or Path(os.path.relpath(Path(__file__).parent / "runs" / "paper"))

    runs = {name: load_run(paper, name) for name in names}  # all of them before the first hour of sampling
    load_before, say = load_average(), Progress()
    sections = [line for name in names
                for line in measure_system(name, SYSTEMS[name], runs[name], paper, args.members, say)]
    command = " ".join(["python benchmarks/frontier.py", *sys.argv[1:]])
    append([
        f"\n## The speed-accuracy frontier of DYffusion's samplers ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n",
        f"- command: `{command}`",
        f"- machine: {machine()}; load average (1/5/15 min) {load_before} before, {load_average()} after (2 cores: a "
        f"1-minute load above 2 means other jobs shared the cores); this invocation took {say.minutes:.0f} min",
        "- settings: cold (Euler) and Heun (second order, two forecasts per interval) sampling over schedules from "
        "`K of D dynamical` (K evenly spaced of the D dynamical steps) through `dynamical` (all of them) to `all x2` "
        "(every step and the fractional midpoints between them); every setting scored on the same test initial "
        "conditions with the same seed",
        "- scores: CRPS (the paper's 1/(2M^2) estimator), ensemble-mean MSE, SSR (ddof 0) in the data's units, "
        "averaged over lead times; cost: network evaluations (interpolator and forecaster calls) per member and "
        "rollout; seconds per forecast: sampling time of one initial condition, all members, whole rollout",
        "- matched budgets: for every number B of network evaluations of a setting, each sampler's lowest CRPS "
        "among its settings with at most B; the conclusion compares cold and Heun there",
        *sections,
    ])


if __name__ == "__main__":
    main()
