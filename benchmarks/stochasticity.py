"""DYffusion's stochasticity chosen on the validation split: the interpolator's MC-dropout rate, where dropout sits
in the ConvNet, refinement and the sampling steps, on the demo spring mesh.

    python benchmarks/stochasticity.py [--rates 0.05,0.1,0.15] [--epochs 30] [--members 20] [--val-trajectories 8]
                                       [--out DIR]

Data: the demo's spring mesh (24 train / 2 val trajectories of 805 frames, seed 0) in DIR/data; the choice is
scored on a validation set of its own, ``--val-trajectories`` more trajectories drawn with seed 1 (DIR/data-val):
two trajectories are too few to separate settings whose CRPS differs by a few per cent. For every rate p
and placement (dropout inside the residual branches only, as the authors' network; or also on the stream before
the 1x1 head) DYffusion is trained with the `demo` preset for a fixed number of epochs per stage (100 batches an
epoch): the same optimiser steps for every variant, whatever else runs on the machine. Each run is then scored on
that validation set only (whole 100-step rollouts from the first frame of every trajectory, ``--members``
members, one seed for all) with refinement on and off and every candidate step list of ``frontier_schedules``
(the fractional "all xK" lists left out). The test split is never read. The rows go to DIR/sweep.json and a
section to ``benchmarks/RESULTS.md``; the best (rate, placement, refine) is the one the `demo` preset takes.

Resumable: a rerun skips the scored variants and continues an interrupted training. Cost: about 5 minutes of
training per variant on 2 idle cores at 30 epochs, and about a minute of scoring.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from paper import Progress
from results import append, machine

from dyffusion.config import load_config, nested
from dyffusion.data.contract import open_gridded
from dyffusion.demo import DEMO_DATA
from dyffusion.evaluation import evaluate, full_rollout
from dyffusion.evaluation.frontier import frontier_schedules
from dyffusion.io import write_json
from dyffusion.simulators.spring_mesh import write_spring_mesh_splits
from dyffusion.training import fit

PLACEMENTS = {False: "branches", True: "branches + head"}


def variant_name(rate: float, head: bool) -> str:
    return f"p{rate:g}-{'head' if head else 'branches'}"


def train(data: Path, run_dir: Path, rate: float, head: bool, epochs: int):
    """The demo preset with interpolator dropout ``rate`` (placement ``head``), ``epochs`` epochs per stage."""
    overrides = [nested("interpolator.network.dropout", rate), nested("interpolator.network.head_dropout", head),
                 nested("trainer.max_minutes", None), nested("trainer.max_epochs", epochs),
                 nested("sampling.choose_steps", False)]  # every step list is scored below, on the same seed
    return fit(data, run_dir, load_config("demo", overrides), quiet=True, resume=True)


def score(run, val, members: int, say: Progress, name: str) -> list[dict]:
    """Validation scores of every (refine, step list) of ``run``, one seed for all."""
    rows = []
    candidates = {label: steps for label, steps in frontier_schedules(run.schedule).items() if " x" not in label}
    for refine in (True, False):
        for label, steps in candidates.items():
            sampling = replace(run.config.sampling, members=members, steps=steps, refine=refine)
            metrics = evaluate(run, val, sampling, full_rollout(run, val), seed=0, progress=False,
                               keep_example=False).metrics
            mean = metrics["mean"]
            rows.append({"refine": refine, "steps": label, "crps": mean["crps"], "mse": mean["mse"],
                         "ssr": mean["ssr"], "network_evaluations": metrics["network_evaluations"]})
            say(f"{name}: refine {refine}, {label}: CRPS {mean['crps']:.4g}, SSR {mean['ssr']:.3g}")
    return rows


def table(results: dict[str, dict]) -> list[str]:
    """One line per (variant, refine): the scores with all steps and with the best step list."""
    lines = ["| interpolator dropout | placement | refine | CRPS, all steps | SSR, all steps | best steps | CRPS, best "
             "steps | SSR, best steps | evaluations per member |", "|---|---|---|---|---|---|---|---|---|"]
    for result in results.values():
        for refine in (True, False):
            rows = [row for row in result["rows"] if row["refine"] == refine]
            every = max(rows, key=lambda row: row["network_evaluations"])  # "all" (= "dynamical" without extra steps)
            best = min(rows, key=lambda row: (row["crps"], row["network_evaluations"]))
            lines.append(f"| {result['rate']:g} | {PLACEMENTS[result['head']]} | {'on' if refine else 'off'} | "
                         f"{every['crps']:.5f} | {every['ssr']:.2f} | {best['steps']} | {best['crps']:.5f} | "
                         f"{best['ssr']:.2f} | {best['network_evaluations']:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="0.05,0.1,0.15", help="interpolator dropout rates, comma-separated")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of 100 batches per stage")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--val-trajectories", type=int, default=8, help="trajectories of the validation set")
    parser.add_argument("--out", type=Path,
                        default=Path(os.path.relpath(Path(__file__).parent / "runs" / "stochasticity")))
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",") if rate.strip()]
    say = Progress()
    data = args.out / "data"
    if not (data / "val.nc").exists():
        say(f"making the demo's spring mesh in {data}")
        write_spring_mesh_splits(data, **DEMO_DATA, seed=0, progress=False)
    val_dir = args.out / "data-val"
    write_spring_mesh_splits(val_dir, train=0, val=args.val_trajectories, test=0, ood_test=0, seed=1, progress=False)
    val = open_gridded(val_dir, "val")
    results = {}
    for head in (False, True):
        for rate in rates:
            name = variant_name(rate, head)
            file = args.out / name / "scores.json"
            scored = json.loads(file.read_text()) if file.exists() else {}
            if scored.get("validation") == val.source and scored.get("members") == args.members:
                results[name] = scored
                say(f"{name}: scored before, kept")
                continue
            say(f"{name}: training {args.epochs} epochs per stage")
            run = train(data, args.out / name / "run", rate, head, args.epochs)
            summary = json.loads((run.path / "training.json").read_text())
            results[name] = {"rate": rate, "head": head, "epochs": args.epochs, "validation": val.source,
                             "members": args.members,
                             "steps": {stage: summary[stage]["steps"] for stage in ("interpolator", "forecaster")},
                             "rows": score(run, val, args.members, say, name)}
            write_json(file, results[name])
    write_json(args.out / "sweep.json", results)
    best_name, best_row = min(((name, row) for name, result in results.items() for row in result["rows"]),
                              key=lambda item: (item[1]["crps"], item[1]["network_evaluations"]))
    best = results[best_name]
    command = " ".join(["python benchmarks/stochasticity.py", *sys.argv[1:]])
    append([
        f"\n## DYffusion's stochasticity chosen on validation: spring mesh ({datetime.now(timezone.utc):%Y-%m-%d %H:%M}"
        " UTC)\n",
        f"- command: `{command}`",
        f"- machine: {machine()}; this invocation took {say.minutes:.0f} min (a resumed command counts only its part)",
        f"- budget: `demo` preset, {args.epochs} epochs of 100 batches per stage for every variant (fixed optimiser "
        "steps, not wall-clock time)",
        f"- scores: validation only ({val.num_trajectories} trajectories drawn with seed 1, apart from the training, "
        f"validation and test splits; whole 100-step rollouts, {args.members} members, seed 0), data units; CRPS (the "
        "paper's estimator) and SSR averaged over lead times; training steps per stage: "
        + "; ".join(f"{name} {result['steps']['interpolator']} + {result['steps']['forecaster']}"
                    for name, result in results.items()),
        "",
        *table(results),
        "",
        f"Lowest validation CRPS: interpolator dropout {best['rate']:g}, {PLACEMENTS[best['head']]}, refine "
        f"{'on' if best_row['refine'] else 'off'}, steps {best_row['steps']} (CRPS {best_row['crps']:.5f}, SSR "
        f"{best_row['ssr']:.2f}).",
    ])


if __name__ == "__main__":
    main()
