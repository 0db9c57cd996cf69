"""DYffusion and the paper's four baselines on the demo's spring mesh, same data, backbone and budget.

    python benchmarks/compare_methods.py [--minutes 3] [--members 20] [--out benchmarks/runs/compare]

Every method trains for the same wall-clock budget with the demo preset's data settings and a ConvNet of
the same width, then forecasts 100-step rollouts of the 4 test trajectories. Finished methods are skipped
when the command is run again (it resumes). Appends a table to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from results import append, machine

from dyffusion.config import METHODS, load_config, nested
from dyffusion.data.contract import open_gridded
from dyffusion.data.spring_mesh import write_spring_mesh_splits
from dyffusion.demo import DEMO_DATA
from dyffusion.evaluation import evaluate, full_rollout
from dyffusion.io import write_json
from dyffusion.run import Run
from dyffusion.training import fit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per method")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "runs" / "compare")
    args = parser.parse_args()

    data = args.out / "data"
    write_spring_mesh_splits(data, **DEMO_DATA, seed=0)
    test = open_gridded(data, "test")
    rows = {}
    for method in METHODS:
        run_dir, metrics_file = args.out / method, args.out / method / "eval" / "metrics.json"
        if not metrics_file.exists():
            config = load_config("demo", [nested("method", method), nested("trainer.max_minutes", args.minutes)])
            # The baselines get the same backbone as DYffusion's forecaster, with the interpolator's dropout.
            config.baseline.network = replace(config.forecaster.network, dropout=config.interpolator.network.dropout)
            config.baseline.learning_rate = config.forecaster.learning_rate
            fit(data, run_dir, config, quiet=True)
            run = Run.load(run_dir)
            metrics = evaluate(run, test, args.members, rollout=full_rollout(run, test), progress=False,
                               keep_example=False).metrics
            write_json(metrics_file, metrics)
        rows[method] = json.loads(metrics_file.read_text())
        print(method, rows[method]["mean"])

    command = "python benchmarks/compare_methods.py " + " ".join(sys.argv[1:])
    lines = [
        f"\n## Five methods on the demo spring mesh ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n",
        f"- command: `{command.strip()}`",
        f"- machine: {machine()}",
        f"- data: spring mesh {DEMO_DATA['train']} train / {DEMO_DATA['val']} val / {DEMO_DATA['test']} test "
        "trajectories, every 8th frame, h = 16; budget: "
        f"{args.minutes:g} training minutes per method; {args.members} members; 100-step rollouts from the first "
        "frame of each test trajectory; scores in the data's units, averaged over lead times\n",
        "| method | CRPS | MSE | SSR | network evaluations per member | sampling time per initial condition [s] |",
        "|---|---|---|---|---|---|",
    ]
    for method, metrics in rows.items():
        mean = metrics["mean"]
        lines.append(f"| {method} | {mean['crps']:.4f} | {mean['mse']:.5f} | {mean['ssr']:.2f} | "
                     f"{metrics['network_evaluations']:.0f} | {metrics['sampling_seconds_per_initial_condition']:.2f} |")
    append(lines)


if __name__ == "__main__":
    main()
