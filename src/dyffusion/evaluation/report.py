"""Figures and a Markdown report of an evaluation, written next to ``metrics.json``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from dyffusion.evaluation.evaluate import Example
from dyffusion.io import atomic_path, write_json
from dyffusion.plots import plot_forecast_panels, plot_metrics_vs_lead_time, plot_spread_skill, plot_spring_mesh
from dyffusion.run import Run

SCORES = ("crps", "crps_fair", "mse", "ssr", "ssr_corrected")


def _figure(path: Path, draw: Callable[[Path], object]) -> Path:
    """``draw`` writes into a temporary file renamed onto ``path``: a full disk leaves no half-written PNG."""
    with atomic_path(path) as temporary:
        draw(temporary)
    return path


def write_evaluation(out: Path, run: Run, metrics: dict, example: Example | None) -> dict[str, Path]:
    """``metrics.json`` plus PNG figures in ``out``, lines labelled by the run's method; returns name -> path."""
    label = run.method
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    figures = {
        "metrics": _figure(out / "metrics_vs_lead_time.png",
                           lambda file: plot_metrics_vs_lead_time({label: metrics}, file)),
        "spread_skill": _figure(out / "spread_skill.png", lambda file: plot_spread_skill({label: metrics}, file)),
    }
    if example is not None:
        names = [c.name for c in run.spec.channels]
        figures["forecast"] = _figure(out / "forecast.png", lambda file: plot_forecast_panels(
            example.initial, example.truth, example.ensemble, example.lead_times, file,
            channel=0, channel_name=names[0], mask=example.valid))
        if run.spec.boundary_condition == "fixed_points" and names[-2:] == ["q_x", "q_y"]:
            fixed = example.static[run.spec.static_names.index(run.spec.boundary_mask)]
            figures["mesh"] = _figure(out / "spring_mesh.png", lambda file: plot_spring_mesh(
                example.truth[:, -2:], example.ensemble[:, :, -2:], example.lead_times, file, fixed_mask=fixed))
    return figures


def _number(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def markdown_report(title: str, run: Run, metrics: dict, figures: dict[str, Path], out: Path,
                    extra: dict | None = None) -> str:
    """The report as Markdown, with figure links relative to ``out``."""
    mean = metrics["mean"]
    lines = [f"# {title}", ""]
    for key, value in (extra or {}).items():
        lines.append(f"- **{key}**: {value}")
    lines += [
        f"- **members**: {metrics['members']}, **initial conditions**: {metrics['initial_conditions']}, "
        f"**rollout**: {metrics['rollout']} steps (horizon h = {run.horizon})",
        f"- **sampler**: {metrics['sampler']} over {metrics['sampling_steps']} diffusion steps per horizon, "
        f"{metrics['network_evaluations']:.0f} network evaluations per member and rollout",
        f"- **sampling time**: {metrics['sampling_seconds']:.1f} s in all, "
        f"{metrics['sampling_seconds_per_initial_condition']:.2f} s per initial condition ({metrics['members']} members)",
        f"- **units**: {metrics['units']}; area weighting: {metrics.get('area_weighting', 'none')}; "
        f"CRPS estimators: {metrics['crps_estimator']}",
        "", "## Mean over lead times", "",
        "| " + " | ".join(SCORES) + " |", "|" + "---|" * len(SCORES),
        "| " + " | ".join(_number(mean[s]) for s in SCORES) + " |", "",
        "## Figures", "",
    ]
    lines += [f"![{name}]({path.relative_to(out) if path.is_relative_to(out) else path})" for name, path in figures.items()]
    lines += ["", "## Scores at every lead time", "", "| lead time | " + " | ".join(SCORES) + " |",
              "|---|" + "---|" * len(SCORES)]
    for i, lead in enumerate(metrics["lead_times"]):
        lines.append(f"| {lead:g} | " + " | ".join(_number(metrics[s][i]) for s in SCORES) + " |")
    return "\n".join(lines) + "\n"
