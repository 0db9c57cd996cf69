"""The paper's comparison (SPEC sections 6-9) at CPU scale: DYffusion and its four baselines on the spring mesh,
Navier-Stokes and synthetic SST, a table per system beside the paper's numbers.

    python benchmarks/paper.py [--budget-minutes M | --steps N] [--quick] [--out DIR]
                               [--systems spring-mesh,navier-stokes,sst]

Per system the data are made in DIR/data/SYSTEM (kept when there); every method trains for the same M minutes
of wall-clock time (``fit --max-minutes M``; DYffusion gives 40 % to its interpolator) in DIR/runs/SYSTEM/METHOD
and is scored from every initial condition of the test split(s) as the paper does, in ``eval-SPLIT/metrics.json``.
The tables (CRPS, MSE, SSR, sampling time per forecast, network evaluations; the paper's numbers beside ours)
are appended to ``benchmarks/RESULTS.md``; CRPS, RMSE (the square root of the MSE) and SSR against lead time of
all methods are in DIR/SYSTEM-SPLIT.png.

Scales, default then --quick (the paper's in brackets; the synthetic SST stands in for OISST, which is not here):
- spring mesh: 24 train / 2 val / 4 test / 4 OOD-test trajectories of 805 frames (100/3/15/15), --quick 6/1/2/2;
  preset `demo` (every 8th frame, h = 16, ConvNet width 32); full 100-step rollouts (804 stored steps) of every
  test and OOD-test trajectory.
- Navier-Stokes: 16 train / 1 val / 2 test trajectories (100/2/5), --quick 2/1/1; `navier-stokes-cpu` with U-Net
  width 16 (its 32 would leave about 100 training steps in the budget, and 50 members of one rollout would take
  a quarter of an hour to sample), validated on one batch of 16 windows for every method (as the SST); 64-step
  rollouts of every test trajectory.
- SST: `sst-synthetic` with the paper's 11 boxes, train 2015-2018, val 2019, test 2020 (1982-2018 / 2019 / 2020),
  --quick 3 boxes and train 2017-2018; `sst-cpu` validated on one batch of 16 windows (its two would take more
  than half of DYffusion's forecaster stage: each validation samples 5 members of 99 network calls per window);
  h = 7 daily lead times from 11 initial conditions spread over the test year (the paper: all its days), --quick 3.

Budget: M = 4 minutes by default (--quick 0.5) for each (system, method); with evaluation (50 members, --quick
10) and data generation the whole default run takes about 2 hours on 2 cores (--quick about 15 minutes).
--steps N is the control that takes speed out of the comparison: every network (each of DYffusion's two)
trains for exactly N optimiser steps instead of M minutes, in DIR = benchmarks/runs/paper-steps-N.
The budget bounds training: the validation that closes each stage, and Perturbation's choice of its noise scale
on validation CRPS, come on top. The baselines share DYffusion's forecaster backbone with the interpolator's
dropout rate and its optimiser settings. DDPM and MCVD sample with DDIM in 20 steps, the sampler their checkpoints
are chosen with: the paper's 1000 ancestral steps would cost 50 times the network evaluations (on Navier-Stokes,
an hour per 50-member rollout here).

Resuming: a rerun with the same options skips every (system, method) whose metrics exist, continues an interrupted
training (``fit(..., resume=True)``) and an unfinished data set. DIR/settings.json keeps the scale and budget and
a rerun with others is refused. Progress goes to stdout, one line per step with the elapsed time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from results import append, chosen_names, machine

from dyffusion.config import ExperimentConfig, load_config, nested
from dyffusion.data.contract import open_gridded
from dyffusion.data.sst import PAPER_BOXES
from dyffusion.demo import DEMO_DATA
from dyffusion.evaluation import evaluate, full_rollout
from dyffusion.io import write_json
from dyffusion.plots.figures import plot_metrics_vs_lead_time
from dyffusion.simulators.navier_stokes import write_navier_stokes_splits
from dyffusion.simulators.spring_mesh import write_spring_mesh_splits
from dyffusion.simulators.sst_synthetic import make_synthetic_sst
from dyffusion.training import fit

BUDGET_MINUTES, QUICK_BUDGET_MINUTES = 4.0, 0.5
MEMBERS, QUICK_MEMBERS = 50, 10
DDIM_STEPS = 20  # = baseline.val_ddim_steps: DDPM and MCVD are scored with the sampler their checkpoint was chosen by
NAMES = {"perturbation": "Perturbation", "dropout": "Dropout", "ddpm": "DDPM", "mcvd": "MCVD", "dyffusion": "DYffusion"}
SPLIT_NAMES = {"test": "test", "test_ood": "OOD test"}


@dataclass(frozen=True)
class System:
    """One of the paper's systems at CPU scale.

    write_data(out_dir, **scale, progress) makes ``data_files`` (and resumes an interrupted generation);
    rollout None scores whole trajectories; inits None starts from the first frame of every trajectory;
    paper: split -> method -> (CRPS, MSE, SSR, sampling seconds), None where the paper gives no number.
    """

    title: str
    write_data: Callable[..., Any]
    data_files: tuple[str, ...]
    scale: dict
    quick_scale: dict
    preset: str
    overrides: dict
    splits: tuple[str, ...]
    rollout: int | None
    inits: int | None
    quick_inits: int | None
    paper: dict
    note: str


SYSTEMS = {
    "spring-mesh": System(
        title="Spring mesh", write_data=write_spring_mesh_splits,
        data_files=("train.nc", "val.nc", "test.nc", "test_ood.nc"),
        scale={**DEMO_DATA, "ood_test": 4}, quick_scale={"train": 6, "val": 1, "test": 2, "ood_test": 2},
        preset="demo", overrides={}, splits=("test", "test_ood"), rollout=None, inits=None, quick_inits=None,
        paper={"test": {"dropout": (0.0138, 7.3e-4, 1.01, None), "dyffusion": (0.0103, 4.2e-4, 1.13, None)},
               "test_ood": {"dropout": (0.0448, 7.1e-3, 0.70, None), "dyffusion": (0.0292, 3.5e-3, 0.82, None)}},
        note="The paper scores 804-step rollouts at the stored step with h = 134 (ours: every 8th frame, h = 16, "
             "the same time span); its DDPM and MCVD did not converge there and it gives no Perturbation scores."),
    "navier-stokes": System(
        title="Navier-Stokes", write_data=write_navier_stokes_splits, data_files=("train.nc", "val.nc", "test.nc"),
        scale={"train": 16, "val": 1, "test": 2}, quick_scale={"train": 2, "val": 1, "test": 1},
        preset="navier-stokes-cpu", overrides={"interpolator.network.width": 16, "forecaster.network.width": 16,
                                                "trainer.val_batches": 1},
        splits=("test",), rollout=64, inits=None, quick_inits=None,
        paper={"test": {"perturbation": (0.090, 0.028, 0.448, None), "dropout": (0.078, 0.027, 0.715, None),
                        "ddpm": (0.180, 0.105, 0.573, None), "mcvd": (0.154, 0.070, 0.524, None),
                        "dyffusion": (0.067, 0.022, 0.877, None)}},
        note="The paper's networks trained for far longer on GPUs; it gives no Navier-Stokes sampling times."),
    "sst": System(
        title="Synthetic SST", write_data=make_synthetic_sst,
        data_files=("train.nc", "val.nc", "test.nc", "climatology.nc"),
        scale={"boxes": PAPER_BOXES, "start": "2015-01-01", "end": "2020-12-31"},
        quick_scale={"boxes": PAPER_BOXES[:3], "start": "2017-01-01", "end": "2020-12-31"},
        preset="sst-cpu", overrides={"trainer.val_batches": 1}, splits=("test",), rollout=7, inits=11, quick_inits=3,
        paper={"test": {"perturbation": (0.281, 0.180, 0.411, 0.42), "dropout": (0.267, 0.164, 0.406, 0.42),
                        "ddpm": (0.246, 0.177, 0.674, 0.31), "mcvd": (0.216, 0.161, 0.926, 79.2),
                        "dyffusion": (0.224, 0.173, 1.033, 4.67)}},
        note="Ours is the synthetic stand-in (`dyffusion data sst-synthetic`), the paper's is OISSTv2: its numbers "
             "are a reference, not a target. Both are standardised anomalies; ours are weighted by cos(latitude)."),
}


@dataclass(frozen=True)
class Budget:
    """The training each method gets: wall-clock ``minutes`` for the whole fit (DYffusion's two stages together), or
    ``steps`` optimiser steps for every network (the control that takes speed out of the comparison)."""

    minutes: float | None = None
    steps: int | None = None

    def __str__(self) -> str:
        return f"{self.minutes:g} min" if self.steps is None else f"{self.steps} steps per network"

    def overrides(self, batches_per_epoch: int) -> list[str]:
        if self.steps is None:
            return [nested("trainer.max_minutes", self.minutes), nested("trainer.max_epochs", None)]
        if self.steps % batches_per_epoch:
            sys.exit(f"--steps {self.steps}: give a multiple of the preset's {batches_per_epoch} batches per epoch")
        # An epoch is batches_per_epoch batches, whatever the split's size: the stage stops after exactly steps.
        return [nested("trainer.max_minutes", None), nested("trainer.max_epochs", self.steps // batches_per_epoch)]


def method_config(system: System, method: str, budget: Budget) -> ExperimentConfig:
    """The system's preset for ``method``, with its ``budget`` and DYffusion's backbone for the baselines: its
    forecaster's network with the interpolator's dropout rate (what makes DYffusion's ensemble), and the
    forecaster's batch size, learning rate, weight decay and validation ensemble size."""
    overrides = [nested(key, value) for key, value in system.overrides.items()] + [nested("method", method)]
    preset = load_config(system.preset, overrides)
    config = load_config(system.preset, overrides + budget.overrides(preset.trainer.batches_per_epoch))
    forecaster = config.forecaster
    config.baseline = replace(config.baseline, network=replace(forecaster.network,
                                                               dropout=config.interpolator.network.dropout),
                              batch_size=forecaster.batch_size, learning_rate=forecaster.learning_rate,
                              weight_decay=forecaster.weight_decay, val_members=forecaster.val_members)
    return config


def check_settings(out: Path, settings: dict) -> None:
    """Results in ``out`` must all come from one scale and budget: a rerun with other options is refused."""
    path = out / "settings.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != settings:
            sys.exit(f"{out} holds results made with {stored}, not {settings}: give the same --quick and "
                     "--budget-minutes, or another --out")
    else:
        write_json(path, settings)


class Progress:
    """Prints one line per step with the minutes since the command started."""

    def __init__(self):
        self.started = time.monotonic()

    @property
    def minutes(self) -> float:
        return (time.monotonic() - self.started) / 60

    def __call__(self, text: str) -> None:
        print(f"[{self.minutes:6.1f} min] {text}", flush=True)


def make_data(name: str, system: System, scale: dict, data: Path, say: Progress) -> None:
    if all((data / file).exists() for file in system.data_files):
        say(f"{name}: data in {data}, kept")
        return
    say(f"{name}: making the data ({describe(scale)}) in {data}")
    system.write_data(data, **scale, progress=False)
    say(f"{name}: data done")


def train_and_score(name: str, system: System, method: str, data: Path, run_dir: Path, budget: Budget,
                    members: int, inits: int | None, say: Progress) -> dict[str, dict]:
    """split -> metrics of ``method`` on ``system``; trains and evaluates what is not done yet."""
    files = {split: run_dir / f"eval-{split}" / "metrics.json" for split in system.splits}
    if all(file.exists() for file in files.values()):
        say(f"{name}/{method}: scored before, skipped")
    else:
        say(f"{name}/{method}: training for {budget} (resumed if it was interrupted)")
        run = fit(data, run_dir, method_config(system, method, budget), quiet=True, resume=True)
        say(f"{name}/{method}: trained ({steps(run_dir)} steps)")
        # DDPM and MCVD: DDIM, as in their validation; the others sample as their config says.
        options = {"ddim_steps": DDIM_STEPS} if method in ("ddpm", "mcvd") else {}
        sampling = replace(run.config.sampling, members=members, **options)
        for split, file in files.items():
            if file.exists():
                continue
            test = open_gridded(data, split)
            rollout = full_rollout(run, test) if system.rollout is None else system.rollout
            say(f"{name}/{method}: scoring {split}, {members} members, {rollout} steps")
            metrics = evaluate(run, test, sampling, rollout, inits, progress=False, keep_example=False).metrics
            write_json(file, metrics)
            mean = metrics["mean"]
            say(f"{name}/{method} {split}: CRPS {mean['crps']:.3g}, MSE {mean['mse']:.3g}, SSR {mean['ssr']:.3g}, "
                f"{metrics['sampling_seconds_per_initial_condition']:.3g} s per forecast")
    return {split: json.loads(file.read_text()) for split, file in files.items()}


def steps(run_dir: Path) -> str:
    """Optimiser steps each network of a run took in its budget, e.g. 'interpolator 310, forecaster 420'."""
    summary = json.loads((run_dir / "training.json").read_text())
    return ", ".join(f"{stage} {entry['steps']}" for stage, entry in summary.items()
                     if isinstance(entry, dict) and "steps" in entry)


def describe(scale: dict) -> str:
    return ", ".join(f"{key} {len(value) if isinstance(value, tuple) else value}" for key, value in scale.items())


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def table(system: System, split: str, scores: dict[str, dict]) -> list[str]:
    """The paper's layout, our number then the paper's for every score."""
    paper = system.paper.get(split, {})
    lines = ["| method | CRPS | paper | MSE | paper | SSR | paper | time per forecast [s] | paper | "
             "network evaluations per member |", "|---|" + "---|" * 9]
    for method, metrics in scores.items():
        mean = metrics["mean"]
        ours = (mean["crps"], mean["mse"], mean["ssr"], metrics["sampling_seconds_per_initial_condition"])
        cells = [number(value) for pair in zip(ours, paper.get(method, (None,) * 4)) for value in pair]
        lines.append(f"| {NAMES[method]} | {' | '.join(cells)} | {metrics['network_evaluations']:.0f} |")
    return lines


def section(system: System, scale: dict, scores: dict[str, dict[str, dict]], runs: Path,
            figures: dict[str, Path]) -> list[str]:
    """Markdown of one system: its scale, training steps, a table and a figure per split, the note."""
    data = load_config(system.preset).data
    overrides = "".join(f", {key} = {value}" for key, value in system.overrides.items())
    lines = [f"\n### {system.title}\n",
             f"- data: {describe(scale)}; preset `{system.preset}`{overrides} (h = {data.horizon}, "
             f"time stride {data.time_stride})",
             "- training steps in the budget: " + "; ".join(f"{NAMES[method]}: {steps(runs / method)}"
                                                           for method in NAMES)]
    for split, by_method in scores.items():
        example = by_method["dyffusion"]
        lines += [f"\n{SPLIT_NAMES[split]}: {example['members']} members, {example['initial_conditions']} initial "
                  f"conditions, {example['rollout']} lead steps, area weighting {example['area_weighting']}; "
                  f"figure `{figures[split]}`\n", *table(system, split, by_method)]
    return [*lines, "", system.note]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-minutes", type=float,
                        help=f"training minutes per method and system (default {BUDGET_MINUTES:g}, "
                             f"--quick {QUICK_BUDGET_MINUTES:g})")
    parser.add_argument("--steps", type=int, help="instead of minutes: optimiser steps for every network (the "
                                                  "equal-steps control), a multiple of the preset's batches per epoch")
    parser.add_argument("--quick", action="store_true", help="small data, fewer members and initial conditions")
    parser.add_argument("--out", type=Path,
                        help="results directory (default benchmarks/runs/paper[-quick][-steps-N])")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, of " + ", ".join(SYSTEMS))
    args = parser.parse_args()
    names = chosen_names(parser, args.systems, SYSTEMS)
    if args.steps is not None and args.budget_minutes is not None:
        parser.error("give --budget-minutes or --steps, not both")
    budget = Budget(steps=args.steps) if args.steps is not None else Budget(
        args.budget_minutes if args.budget_minutes is not None else QUICK_BUDGET_MINUTES if args.quick
        else BUDGET_MINUTES)
    for name in names:  # a step count the presets cannot take is refused before any work
        method_config(SYSTEMS[name], "dyffusion", budget)
    members = QUICK_MEMBERS if args.quick else MEMBERS
    # Relative to the working directory where it can be, so that RESULTS.md names the figures portably.
    name = "paper" + ("-quick" if args.quick else "") + (f"-steps-{args.steps}" if args.steps is not None else "")
    out = args.out or Path(os.path.relpath(Path(__file__).parent / "runs" / name))
    scale = {"scale": "quick" if args.quick else "default"}
    check_settings(out, {**scale, "budget_minutes": budget.minutes} if budget.steps is None
                   else {**scale, "steps": budget.steps})

    say = Progress()
    sections = []
    for name in names:
        system = SYSTEMS[name]
        scale = system.quick_scale if args.quick else system.scale
        data, runs = out / "data" / name, out / "runs" / name
        make_data(name, system, scale, data, say)
        inits = system.quick_inits if args.quick else system.inits
        by_method = {method: train_and_score(name, system, method, data, runs / method, budget, members, inits, say)
                     for method in NAMES}
        scores = {split: {method: by_method[method][split] for method in NAMES} for split in system.splits}
        figures = {split: plot_metrics_vs_lead_time(
            {NAMES[method]: metrics for method, metrics in scores[split].items()}, out / f"{name}-{split}.png",
            f"{system.title}, {SPLIT_NAMES[split]}: {members} members, training {budget} per method")
            for split in system.splits}
        sections += section(system, scale, scores, runs, figures)

    command = " ".join(["python benchmarks/paper.py", *sys.argv[1:]])
    append([
        f"\n## The paper's comparison at CPU scale{' (--quick)' if args.quick else ''} "
        f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n",
        f"- command: `{command}`",
        f"- machine: {machine()}",
        ("- budget: " + (f"{budget.minutes:g} minutes of training per method and system (`fit --max-minutes`; "
                         "DYffusion gives 40 % to its interpolator)" if budget.steps is None else
                         f"{budget.steps} optimiser steps for every network (DYffusion: for each of its two)")
         + f", evaluation on top; this invocation took {say.minutes:.0f} min (a resumed command counts only its "
         "own part)"),
        "- baselines: DYffusion's forecaster backbone with its interpolator's dropout rate, the forecaster's batch "
        f"size and optimiser settings; DDPM and MCVD sample with DDIM in {DDIM_STEPS} steps (the paper: 1000 "
        f"ancestral steps, {1000 // DDIM_STEPS} times the network evaluations)",
        "- scores: CRPS (the paper's 1/(2M^2) estimator), ensemble-mean MSE, SSR (ddof 0) in the data's units, "
        "averaged over lead times; time per forecast: sampling seconds per initial condition for all members and "
        "the whole rollout on this CPU (the paper's: a GPU); network evaluations per member and rollout; figures: "
        "CRPS, RMSE (square root of the MSE) and SSR against lead time",
        *sections,
    ])


if __name__ == "__main__":
    main()
