"""DYffusion on one of the paper's systems at a CPU budget, next to the paper's numbers (SPEC section 9).

    python benchmarks/paper_system.py navier-stokes DATA RUN [--epochs 8] [--rollout 64] [--members 10]
    python benchmarks/paper_system.py sst DATA RUN [--epochs 4] [--rollout 7] [--inits 110]

DATA is made by ``dyffusion data navier-stokes`` or ``dyffusion data sst-synthetic``. The run trains with the
system's CPU preset and a deterministic budget of ``--epochs`` per stage (resumed if it was interrupted, skipped
when RUN already holds a finished run), is evaluated on the test split, and the scores are appended to ``benchmarks/RESULTS.md`` with
the command, machine and date. The paper trained far larger networks for far longer on GPUs, and the SST data
here is synthetic: the comparison says how far a CPU budget gets, not whether the paper is reproduced.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from results import append, machine

from dyffusion.cli.main import main as dyffusion

SYSTEMS = {  # the paper's DYffusion scores (SPEC section 9) and the preset of our CPU budget
    "navier-stokes": {"preset": "navier-stokes-cpu", "crps": 0.067, "mse": 0.022, "ssr": 0.877},
    "sst": {"preset": "sst-cpu", "crps": 0.224, "mse": 0.173, "ssr": 1.033},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("data", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("--epochs", type=int, default=8, help="epochs per stage (of the preset's batches per epoch)")
    parser.add_argument("--rollout", default=None, help="lead steps to score (default: the evaluate default)")
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--inits", type=int, help="initial conditions spread over the test split")
    args = parser.parse_args()
    system = SYSTEMS[args.system]

    if not (args.run / "forecaster.safetensors").exists():
        if dyffusion(["fit", str(args.data), "--config", system["preset"], "--out", str(args.run),
                      "--max-epochs", str(args.epochs), "--resume"]) != 0:
            sys.exit("training failed")
    out = args.run / "eval-test"
    options = ["--members", str(args.members), "--out", str(out)]
    options += ["--rollout", args.rollout] if args.rollout else []
    options += ["--inits", str(args.inits)] if args.inits else []
    if dyffusion(["evaluate", str(args.run), *options]) != 0:
        sys.exit("evaluation failed")

    metrics = json.loads((out / "metrics.json").read_text())
    training = json.loads((args.run / "training.json").read_text())
    stages = ", ".join(f"{stage} {training[stage]['steps']} steps" for stage in ("interpolator", "forecaster")
                       if stage in training)
    mean = metrics["mean"]
    lines = [
        f"\n## DYffusion on {args.system} at a CPU budget ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n",
        f"- command: `python benchmarks/paper_system.py {' '.join(sys.argv[1:])}`",
        f"- machine: {machine()}",
        f"- training: preset `{system['preset']}`, {stages} (wall time depends on what else ran)",
        f"- evaluation: {metrics['initial_conditions']} initial conditions of the test split, {metrics['members']} "
        f"members, {metrics['rollout']} lead steps, {metrics['network_evaluations']:.0f} network evaluations per "
        f"member, {metrics['sampling_seconds_per_initial_condition']:.1f} s sampling per initial condition; "
        f"scores averaged over lead times, area weighting: {metrics['area_weighting']}\n",
        "| | CRPS | MSE | SSR |",
        "|---|---|---|---|",
        f"| this run | {mean['crps']:.4f} | {mean['mse']:.4f} | {mean['ssr']:.3f} |",
        f"| paper (DYffusion, GPU budget) | {system['crps']} | {system['mse']} | {system['ssr']} |",
    ]
    append(lines)


if __name__ == "__main__":
    main()
