"""Does the ranking of DYffusion and Dropout on the spring mesh still change with more training? Validation and
test CRPS of both against the training budget.

    python benchmarks/learning_curve.py [--budgets 2,4,8,16] [--methods dyffusion,dropout] [--members 50]
                                        [--out DIR]

Data: the spring mesh of ``paper.py`` (24 train / 4 test / 4 OOD-test trajectories of 805 frames, seed 0) with 8
validation trajectories instead of 2 (two are too few to separate settings a few per cent apart), in DIR/data.
Every (method, budget) trains from scratch with ``paper.py``'s configuration of that method (preset `demo`; the
Dropout baseline on DYffusion's forecaster backbone and optimiser settings) for the budget's minutes of
wall-clock time (DYffusion gives 40 % to its interpolator and chooses its sampling steps on the validation
split after training, as ``fit`` does), then is scored on whole 100-step rollouts of every validation, test and
OOD-test trajectory with ``--members`` members, seed 0.

Each scored point goes to ``benchmarks/learning_curve/points.json`` (kept in the repository, so that the curve
can grow over several sessions: a rerun skips the points there and continues an interrupted training in DIR);
the figure to ``benchmarks/learning_curve/learning-curve.png`` and the table to ``benchmarks/RESULTS.md``. The points
of ``points-validating-every-31-batches.json`` were trained when a split of fewer batches than batches_per_epoch
validated after every pass; the figure draws them dashed.
Minutes mean wall-clock minutes on the machine as it was; the table gives the optimiser steps each took.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from paper import NAMES, SYSTEMS, Budget, Progress, method_config, steps  # noqa: E402
from results import append, chosen_names, machine  # noqa: E402

from dyffusion.data.contract import open_gridded  # noqa: E402
from dyffusion.evaluation import evaluate, full_rollout  # noqa: E402
from dyffusion.io import write_json  # noqa: E402
from dyffusion.simulators.spring_mesh import write_spring_mesh_splits  # noqa: E402
from dyffusion.training import fit  # noqa: E402

HERE = Path(__file__).parent / "learning_curve"
POINTS, FIGURE = HERE / "points.json", HERE / "learning-curve.png"
# Points measured before an epoch was batches_per_epoch batches on any split: the 24 training trajectories made
# epochs of 31 batches, each followed by a validation that cost more than the epoch. Drawn dashed for comparison.
EARLIER = HERE / "points-validating-every-31-batches.json"
SCALE = {**SYSTEMS["spring-mesh"].scale, "val": 8}
SPLITS = {"val": "validation", "test": "test", "test_ood": "OOD test"}


def point(data: Path, run_dir: Path, method: str, budget: float, members: int, say: Progress) -> dict:
    """Train ``method`` for ``budget`` minutes and score it on every split: the point's JSON record."""
    run = fit(data, run_dir, method_config(SYSTEMS["spring-mesh"], method, Budget(budget)), quiet=True, resume=True)
    chosen = json.loads((run_dir / "training.json").read_text()).get("sampling_steps", {}).get("chosen")
    record = {"method": method, "budget_minutes": budget, "members": members, "steps": steps(run_dir),
              "sampling_steps": chosen}
    for split in SPLITS:
        frames = open_gridded(data, split)
        mean = evaluate(run, frames, replace(run.config.sampling, members=members), full_rollout(run, frames),
                        seed=0, progress=False, keep_example=False).metrics["mean"]
        record[split] = {"crps": mean["crps"], "mse": mean["mse"], "ssr": mean["ssr"]}
        say(f"{method} {budget:g} min, {split}: CRPS {mean['crps']:.4g}, SSR {mean['ssr']:.3g}")
    return record


def score_points(file: Path, data: Path, out: Path, methods: list[str], budgets: list[float], members: int,
                 say: Progress) -> list[dict]:
    """The points kept in ``file``, with every missing (method, budget) trained in ``out`` and scored; the file is
    rewritten after every point, so an interrupted command loses at most one."""
    file.parent.mkdir(exist_ok=True)
    points = json.loads(file.read_text()) if file.exists() else []
    for budget in budgets:
        for method in methods:
            if any(p["method"] == method and p["budget_minutes"] == budget and p["members"] == members
                   for p in points):
                say(f"{method} {budget:g} min: scored before, kept")
                continue
            say(f"{method} {budget:g} min: training (resumed if it was interrupted)")
            points.append(point(data, out / f"{method}-{budget:g}min", method, budget, members, say))
            write_json(file, points)
    return points


def figure(points: list[dict]) -> None:
    earlier = json.loads(EARLIER.read_text()) if EARLIER.exists() else []
    fig, axes = plt.subplots(1, len(SPLITS), figsize=(4 * len(SPLITS), 3.4), sharex=True)
    for ax, (split, title) in zip(axes, SPLITS.items()):
        for color, method in enumerate(dict.fromkeys(p["method"] for p in points + earlier)):
            for group, style, label in ((points, "o-", ""), (earlier, "x--", ", validating every 31 batches")):
                mine = sorted((p for p in group if p["method"] == method), key=lambda p: p["budget_minutes"])
                if mine:
                    ax.plot([p["budget_minutes"] for p in mine], [p[split]["crps"] for p in mine], style,
                            color=f"C{color}", alpha=1 if group is points else 0.5, label=NAMES[method] + label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training minutes")
        ax.set_title(f"{title} CRPS")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=120)
    plt.close(fig)


def table(points: list[dict]) -> list[str]:
    lines = ["| method | minutes | optimiser steps | sampling steps | validation CRPS | SSR | test CRPS | SSR | "
             "OOD-test CRPS | SSR |", "|---|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: (p["method"], p["budget_minutes"])):
        scores = " | ".join(f"{p[split]['crps']:.4f} | {p[split]['ssr']:.2f}" for split in SPLITS)
        sampling = p["sampling_steps"] or "–"
        lines.append(f"| {NAMES[p['method']]} | {p['budget_minutes']:g} | {p['steps']} | {sampling} | {scores} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="2,4,8,16", help="training minutes, comma-separated")
    parser.add_argument("--methods", default="dyffusion,dropout", help="comma-separated, of " + ", ".join(NAMES))
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--out", type=Path,
                        default=Path(os.path.relpath(Path(__file__).parent / "runs" / "learning-curve")))
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    methods = chosen_names(parser, args.methods, NAMES, "--methods")
    say = Progress()
    data = args.out / "data"
    say(f"spring mesh in {data} (kept when there)")
    write_spring_mesh_splits(data, **SCALE, seed=0, progress=False)
    points = score_points(POINTS, data, args.out, methods, budgets, args.members, say)
    figure(points)
    command = " ".join(["python benchmarks/learning_curve.py", *sys.argv[1:]])
    append([
        f"\n## Learning curve on the spring mesh: DYffusion and Dropout against the training budget "
        f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n",
        f"- command: `{command}`",
        f"- machine: {machine()}; this invocation took {say.minutes:.0f} min (points scored before are kept)",
        "- budget: each point trains from scratch for its minutes (`fit --max-minutes`; DYffusion 40 % interpolator, "
        "60 % forecaster), with `paper.py`'s configuration of each method",
        f"- data: spring mesh, {SCALE['train']} train / {SCALE['val']} val / {SCALE['test']} test / "
        f"{SCALE['ood_test']} OOD-test trajectories, preset `demo` (every 8th frame, h = 16)",
        f"- scores: whole 100-step rollouts from the first frame of every trajectory, {args.members} members, data "
        "units, averaged over lead times; DYffusion's sampling steps are chosen on the validation split by `fit`, so "
        "its validation CRPS is the one its steps were chosen on; figure `benchmarks/learning_curve/learning-curve.png`",
        "",
        *table(points),
    ])


if __name__ == "__main__":
    main()
