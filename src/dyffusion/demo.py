"""The embedded default: a small spring mesh, both training stages, evaluation and a report."""

from __future__ import annotations

import platform
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from dyffusion.config import load_config, nested
from dyffusion.data.contract import open_gridded
from dyffusion.evaluation import evaluate, full_rollout
from dyffusion.evaluation.report import evaluation_report, write_evaluation
from dyffusion.simulators.spring_mesh import write_spring_mesh_splits
from dyffusion.training import fit

DEMO_DATA = {"train": 24, "val": 2, "test": 4, "ood_test": 0}
DEMO_MEMBERS = 20


def run_demo(out: str | Path = "demo", max_minutes: float | None = None, quiet: bool = False) -> Path:
    """Writes OUT/data, OUT/run, OUT/metrics.json, figures, OUT/report.md and OUT/report.html; returns the
    Markdown report's path."""
    out = Path(out)
    started = time.monotonic()
    say = (lambda *a: None) if quiet else print
    say(f"[1/3] simulating the spring mesh ({DEMO_DATA['train']} training trajectories) into {out / 'data'}")
    write_spring_mesh_splits(out / "data", **DEMO_DATA, seed=0, progress=not quiet)
    overrides = [nested("trainer.max_minutes", max_minutes)] if max_minutes else []
    config = load_config("demo", overrides)
    say(f"[2/3] training DYffusion for at most {config.trainer.max_minutes:g} minutes")
    run = fit(out / "data", out / "run", config, quiet=quiet)
    say("[3/3] evaluating full-length rollouts on the test trajectories")
    test = open_gridded(out / "data", "test")
    result = evaluate(run, test, replace(run.config.sampling, members=DEMO_MEMBERS), rollout=full_rollout(run, test), progress=not quiet)
    metrics = result.metrics
    metrics["split"], metrics["data"] = "test", test.source
    figures = write_evaluation(out, run, metrics, result.example)
    minutes = (time.monotonic() - started) / 60
    extra = {
        "data": f"spring mesh, {DEMO_DATA['train']} train / {DEMO_DATA['val']} val / {DEMO_DATA['test']} test "
                f"trajectories, every {config.data.time_stride}th stored frame (dt = {run.spec.time_step:g})",
        "budget": f"{config.trainer.max_minutes:g} training minutes on {torch.get_num_threads()} threads; "
                  f"whole demo {minutes:.1f} minutes",
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "dyffusion demo",
    }
    return evaluation_report("DYffusion demo: spring mesh", run, metrics, figures, extra).write(out)["markdown"]
