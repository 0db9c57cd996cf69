"""Continuous-time forecasts on the spring mesh, scored honestly: the DYffusion run that ``benchmarks/paper.py``
trains (preset ``demo``: every 8th stored frame, h = 16) forecasts the 7 stored frames between each pair of its
lead times with its interpolator, against linear interpolation in time of the same members' integer-time forecasts.

    python benchmarks/continuous.py [--members 20] [--inits 16] [--seed 0] [--refine] [--run DIR] [--data DIR]
                                    [--out DIR]

Scores the test split at every stored frame of the first horizon (k / 8 for k = 1..128) from ``--inits`` initial
conditions spread evenly over its trajectories, both methods from one sampling of the same members, the run's
sampler settings as trained (nothing tuned here). Writes continuous.json, continuous.md and continuous.png to OUT
(default RUN/eval-test, with --refine RUN/eval-test-refine) and appends a section to ``benchmarks/RESULTS.md`` that
ends in whether the interpolated lead times beat linear interpolation, with the numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from results import append, machine

from dyffusion.data.contract import open_gridded
from dyffusion.evaluation.continuous import METHODS, evaluate_continuous, verdict
from dyffusion.evaluation.report import write_continuous
from dyffusion.run import Run

# Relative to the working directory where it can be, so that RESULTS.md names the files portably.
PAPER = Path(os.path.relpath(Path(__file__).parent / "runs" / "paper"))
SCORES = (("crps", "CRPS"), ("mse", "MSE"), ("ssr", "SSR"))


def load_average() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def by_position(result: dict) -> list[str]:
    """Table rows: means over the horizon's intervals at each stored frame j = 1..s-1 inside an interval."""
    stride = result["time_stride"]
    rows = []
    for offset in range(1, stride):
        picks = [i for i, frames in enumerate(result["stored_frames"]) if frames % stride == offset]
        cells = [f"{np.mean([result[method][key][i] for i in picks]):.4g}" for key, _ in SCORES for method in METHODS]
        rows.append(f"| {offset}/{stride} | {' | '.join(cells)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=20, help="ensemble size (default 20)")
    parser.add_argument("--inits", type=int, default=16,
                        help="initial conditions spread evenly over the test trajectories (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dropout masks (default 0)")
    parser.add_argument("--run", type=Path, default=PAPER / "runs" / "spring-mesh" / "dyffusion",
                        help="the DYffusion run (default: the spring-mesh run of benchmarks/paper.py)")
    parser.add_argument("--data", type=Path, default=PAPER / "data" / "spring-mesh",
                        help="its data directory, of which test.nc is scored (default: benchmarks/paper.py's)")
    parser.add_argument("--out", type=Path,
                        help="directory of continuous.* (default RUN/eval-test, with --refine RUN/eval-test-refine)")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                        help="re-predict the integer lead times from the final forecast too (default: the run's)")
    args = parser.parse_args()
    if not (args.run / "forecaster.safetensors").exists():
        sys.exit(f"{args.run} holds no trained DYffusion run: train it with python benchmarks/paper.py first")

    load_before = load_average()
    run = Run.load(args.run)
    test = open_gridded(args.data, "test")
    refine = run.config.sampling.refine if args.refine is None else args.refine
    sampling = replace(run.config.sampling, members=args.members, refine=refine)
    result = evaluate_continuous(run, test, sampling, args.inits, args.seed, progress=True)
    result["split"], result["data"] = "test", test.source
    out = args.out or args.run / ("eval-test-refine" if args.refine else "eval-test")
    paths = write_continuous(out, run, result, {"data": test.source, "split": "test"})

    stride, horizon, means = result["time_stride"], result["horizon"], result["in_between"]
    between = sum(not whole for whole in result["integer"])
    command = " ".join(["python benchmarks/continuous.py", *sys.argv[1:]])
    append([
        f"\n## Continuous time: DYffusion's interpolated lead times against linear interpolation "
        f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n",
        f"- command: `{command}`",
        f"- machine: {machine()}; load average (1/5/15 min) {load_before} before, {load_average()} after",
        f"- run: `{args.run}` (a step of {stride} stored frames, h = {horizon}), data `{test.source}`; "
        f"{result['members']} members from each of {result['initial_conditions']} initial conditions, seed "
        f"{result['seed']}; {result['sampler']} sampler over {result['sampling_steps']} steps, refine "
        f"{result['refine']} ({'the run' if args.refine is None else 'this command'}'s setting; with refine off "
        "the integer lead times are the sampling loop's states, with it on they and the in-between ones are all "
        f"I(x_t, final forecast, time)); {result['network_evaluations']:.0f} network evaluations per "
        f"member, {result['sampling_seconds']:.3g} s of sampling",
        f"- protocol: every stored frame of the first horizon, lead times k / {stride} for k = 1..{stride * horizon} "
        f"({between} between the run's lead times), scored against the stored frames; DYffusion: one forecast at all "
        "of them, the in-between ones from its interpolator; linear: the same members' integer-time forecasts of "
        "that forecast, with the initial condition at 0, interpolated linearly in time member by member; boundary "
        "conditions on every predicted frame of both; at the run's lead times both are the same frames",
        f"- files: `{paths['markdown']}` (scores at every lead time), `{paths['figure']}`",
        "",
        f"Means over the {between} in-between lead times (CRPS: the paper's estimator; SSR: ddof 0):",
        "",
        "| method | CRPS | MSE | SSR |",
        "|---|---|---|---|",
        *(f"| {label} | {' | '.join(f'{means[method][key]:.4g}' for key, _ in SCORES)} |"
          for method, label in {**METHODS, "ratio": "ratio DYffusion / linear"}.items()),
        "",
        f"By the stored frame inside an interval (j/{stride} of the way from one lead time to the next), means over "
        f"the {horizon} intervals:",
        "",
        "| position | " + " | ".join(f"{name} {method}" for _, name in SCORES for method in METHODS) + " |",
        "|---|" + "---|" * (len(SCORES) * len(METHODS)),
        *by_position(result),
        "",
        f"**Conclusion**: {verdict(result)}.",
    ])


if __name__ == "__main__":
    main()
