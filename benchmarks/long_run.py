"""One long spring-mesh run on the paper's data size, next to the paper's numbers (SPEC section 8, issue 17).

    python benchmarks/long_run.py [--budget-minutes 60] [--methods dyffusion] [--members 50] [--out DIR]

Data: the paper's split sizes, 100 train / 3 val / 15 test / 15 OOD-test trajectories of 805 frames (seed 0), in
DIR/data. Each method trains once from scratch with ``paper.py``'s configuration (preset `demo`, the strided
equivalent of `spring-mesh`: every 8th frame, h = 16 steps, the time span of the paper's h = 134) for the budget's
wall-clock minutes (DYffusion gives 40 % to its interpolator and chooses its sampling steps on the validation
split), then is scored like the learning curve's points: whole 100-step rollouts (the paper's 804 stored steps)
from the first frame of every validation, test and OOD-test trajectory, ``--members`` members, seed 0.

Scored runs go to ``benchmarks/long_run/points.json`` (kept in the repository; a rerun skips them and continues an
interrupted training in DIR), the table to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from learning_curve import score_points  # noqa: E402
from learning_curve import table as points_table  # noqa: E402
from paper import NAMES, SYSTEMS, Progress  # noqa: E402
from results import append, chosen_names, machine  # noqa: E402

from dyffusion.simulators.spring_mesh import write_spring_mesh_splits  # noqa: E402

POINTS = Path(__file__).parent / "long_run" / "points.json"
SCALE = {"train": 100, "val": 3, "test": 15, "ood_test": 15}
PAPER = SYSTEMS["spring-mesh"].paper  # split -> method -> (CRPS, MSE, SSR, seconds)


def table(points: list[dict]) -> list[str]:
    """The learning curve's table of the points, the paper's numbers below."""
    lines = points_table(points)
    for method in ("dropout", "dyffusion"):
        paper = " | ".join(f"{PAPER[split][method][0]:.4f} | {PAPER[split][method][2]:.2f}"
                           for split in ("test", "test_ood"))
        lines.append(f"| {NAMES[method]}, the paper | – | – | – | – | – | {paper} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--methods", default="dyffusion", help="comma-separated, of " + ", ".join(NAMES))
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(os.path.relpath(Path(__file__).parent / "runs" / "long-run")))
    args = parser.parse_args()
    methods = chosen_names(parser, args.methods, NAMES, "--methods")
    say = Progress()
    data = args.out / "data"
    say(f"spring mesh at the paper's size in {data} (kept when there)")
    write_spring_mesh_splits(data, **SCALE, seed=0, progress=False)
    say("data ready")
    budget = args.budget_minutes
    points = score_points(POINTS, data, args.out, methods, [budget], args.members, say)
    command = " ".join(["python benchmarks/long_run.py", *sys.argv[1:]])
    append([
        f"\n## Long spring-mesh run on the paper's data size ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n",
        f"- command: `{command}`",
        f"- machine: {machine()}; this invocation took {say.minutes:.0f} min (runs scored before are kept)",
        f"- budget: {budget:g} wall-clock training minutes per method (`fit --max-minutes`; DYffusion 40 % "
        "interpolator, 60 % forecaster), `paper.py`'s configuration of each method",
        f"- data: spring mesh, {SCALE['train']} train / {SCALE['val']} val / {SCALE['test']} test / "
        f"{SCALE['ood_test']} OOD-test trajectories of 805 frames (the paper's sizes), preset `demo` "
        "(every 8th frame, h = 16)",
        f"- scores: whole 100-step rollouts (804 stored steps) from the first frame of every trajectory, "
        f"{args.members} members, data units, averaged over lead times; the paper's rows are its Table 2 "
        "(h = 134 at the stored step)",
        "",
        *table(points),
    ])


if __name__ == "__main__":
    main()
