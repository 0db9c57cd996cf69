"""Figures and reports of evaluations: ``metrics.json``, PNG figures, ``report.md`` and a self-contained
``report.html`` (figures embedded as data URIs, inline CSS, no network resource), for one run or a comparison;
``continuous.*`` of a continuous-time evaluation.

A report is a list of blocks (:mod:`dyffusion.evaluation.document`) that render to Markdown and HTML alike.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from dyffusion.evaluation.continuous import METHODS, verdict
from dyffusion.evaluation.document import Block, Code, Facts, Figure, Heading, Report, ReportLink, Table
from dyffusion.evaluation.evaluate import Example
from dyffusion.io import atomic_path, write_json, write_text
from dyffusion.plots import (
    plot_forecast_panels,
    plot_metrics_vs_lead_time,
    plot_rank_histogram,
    plot_scores_at_fine_lead_times,
    plot_spread_skill,
    plot_spring_mesh,
)
from dyffusion.run import Run

SCORES = ("crps", "crps_fair", "mse", "rmse", "ssr", "ssr_corrected")
SCORE_NAMES = {"crps": "CRPS", "crps_fair": "CRPS (fair)", "mse": "MSE", "rmse": "RMSE", "ssr": "SSR",
               "ssr_corrected": "SSR (corrected)"}
FIGURE_TITLES = {
    "metrics": "CRPS, RMSE and spread-skill ratio against lead time",
    "spread_skill": "Spread against skill, one point per lead time",
    "rank_histogram": "Rank histogram of the truth among the members",
    "forecast": "One forecast: initial condition, truth, ensemble mean and std, two members, error",
    "particle_mesh": "The particle mesh: truth and every member",
    "flow_speed": "Flow speed |(u, v)| with the obstacles masked",
}
BEST_RULE = "best value per column in bold: lowest CRPS, MSE, RMSE and sampling time, SSR closest to 1"


def _figure(path: Path, draw: Callable[[Path], object]) -> Path:
    """``draw`` writes into a temporary file renamed onto ``path``: a full disk leaves no half-written PNG."""
    with atomic_path(path) as temporary:
        draw(temporary)
    return path


def write_score_figures(out: Path, results: dict[str, dict]) -> dict[str, Path]:
    """Scores against lead time, spread against skill and the rank histogram of ``results`` (label -> metrics),
    one line per label, in ``out``; returns name -> path."""
    return {
        "metrics": _figure(out / "metrics_vs_lead_time.png", lambda file: plot_metrics_vs_lead_time(results, file)),
        "spread_skill": _figure(out / "spread_skill.png", lambda file: plot_spread_skill(results, file)),
        "rank_histogram": _figure(out / "rank_histogram.png", lambda file: plot_rank_histogram(results, file)),
    }


def write_evaluation(out: Path, run: Run, metrics: dict, example: Example | None) -> dict[str, Path]:
    """``metrics.json`` plus PNG figures in ``out``, lines labelled by the run's method; returns name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    figures = write_score_figures(out, {run.method: metrics})
    if example is not None:
        names = [c.name for c in run.spec.channels]
        figures["forecast"] = _figure(out / "forecast.png", lambda file: plot_forecast_panels(
            example.initial, example.truth, example.ensemble, example.lead_times, file,
            channel=0, channel_name=names[0], mask=example.valid))
        figures.update(_view_figures(out, run, example))
    return figures


def _view_figures(out: Path, run: Run, example: Example) -> dict[str, Path]:
    """The system-aware figure the data asked for (``DataSpec.view``); none for runs without one."""
    spec = run.spec
    if spec.view is None:
        return {}
    names = [c.name for c in spec.channels]
    pair = [names.index(name) for name in spec.view_channels]
    if spec.view == "particle_mesh":
        fixed = (example.static[spec.static_names.index(spec.boundary_mask)]
                 if spec.boundary_mask in spec.static_names else None)
        return {"particle_mesh": _figure(out / "particle_mesh.png", lambda file: plot_spring_mesh(
            example.truth[:, pair], example.ensemble[:, :, pair], example.lead_times, file, fixed_mask=fixed))}

    def speed(fields: np.ndarray) -> np.ndarray:  # (..., C, H, W) -> (..., 1, H, W)
        return np.hypot(fields[..., pair[0]:pair[0] + 1, :, :], fields[..., pair[1]:pair[1] + 1, :, :])

    return {"flow_speed": _figure(out / "flow_speed.png", lambda file: plot_forecast_panels(
        speed(example.initial), speed(example.truth), speed(example.ensemble), example.lead_times, file,
        channel_name=f"speed |({', '.join(spec.view_channels)})|", mask=example.valid))}


def _number(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _best_rows(values: list[float | None], closest_to: float | None) -> set[int]:
    """Rows of the lowest value, or of the value closest to ``closest_to``; NaN never wins. A single row is not
    compared with anything: nothing is marked."""
    if len(values) < 2:
        return set()
    badness = [math.inf if v is None or not math.isfinite(v) else abs(v - closest_to) if closest_to is not None
               else v for v in values]
    best = min(badness)
    return {row for row, value in enumerate(badness) if value == best and math.isfinite(value)}


def scores_table(results: dict[str, dict]) -> Table:
    """Means over lead times, one row per label of ``results`` (label -> metrics), the best values marked."""
    columns = [(SCORE_NAMES[s], lambda m, s=s: m["mean"][s], 1.0 if s.startswith("ssr") else None) for s in SCORES]
    columns.append(("sampling s per initial condition", lambda m: m["sampling_seconds_per_initial_condition"], None))
    header = ["run", "method", "members", *(name for name, _, _ in columns)]
    rows = [[label, metrics["method"], str(metrics["members"]), *(_number(value(metrics)) for _, value, _ in columns)]
            for label, metrics in results.items()]
    best = {(r, 3 + c) for c, (_, value, target) in enumerate(columns)
            for r in _best_rows([value(m) for m in results.values()], target)}
    return Table(header, rows, best)


def _lead_time_table(metrics: dict) -> Table:
    rows = [[f"{lead:g}", *(_number(metrics[s][i]) for s in SCORES)] for i, lead in enumerate(metrics["lead_times"])]
    return Table(["lead time", *(SCORE_NAMES[s] for s in SCORES)], rows)


def _protocol(metrics: dict) -> dict[str, str]:
    return {
        "ensembles": f"{metrics['members']} members from each of {metrics['initial_conditions']} initial conditions, "
                     f"rolled out {metrics['rollout']} steps",
        "units": f"{metrics['units']}; area weighting: {metrics.get('area_weighting', 'none')}; "
                 f"CRPS estimators: {metrics['crps_estimator']}",
    }


def _sampling_cost(metrics: dict) -> dict[str, str]:
    return {
        "sampler": f"{metrics['sampler']} over {metrics['sampling_steps']} diffusion steps per horizon, "
                   f"{metrics['network_evaluations']:.0f} network evaluations per member and rollout, "
                   f"networks in {metrics.get('precision', 'float32')}",
        "sampling time": f"{metrics['sampling_seconds']:.1f} s in all, "
                         f"{metrics['sampling_seconds_per_initial_condition']:.2f} s per initial condition "
                         f"({metrics['members']} members)",
    }


def _training_budget(run: Run) -> str:
    """What training spent (``training.json``) against the budget of the run's config."""
    trainer = run.config.trainer
    limits = ", ".join(text for text in (f"{trainer.max_minutes:g} minutes" if trainer.max_minutes else "",
                                         f"{trainer.max_epochs} epochs per stage" if trainer.max_epochs else "")
                       if text) or "none"
    if not run.files.summary.exists():
        return f"budget {limits}; spent: not recorded (no training.json)"
    summary = run.files.read_summary()
    stages = [f"{stage} {entry['epochs']} epochs, {entry['steps']} steps, {entry['minutes']:.1f} min, "
              f"best val. CRPS {_number(entry['best_val_crps'])}"
              for stage, entry in summary.items() if isinstance(entry, dict) and "steps" in entry]
    total = f"; {summary['total_minutes']:.1f} min in all" if "total_minutes" in summary else ""
    return f"budget {limits}; spent: {'; '.join(stages) or 'nothing'}{total}"


def _run_facts(run: Run) -> dict[str, str]:
    spec = run.spec
    return {
        "method": f"{run.method}, horizon h = {run.horizon}, run {run.path}",
        "channels": f"{', '.join(c.name for c in spec.channels)} on a {spec.grid_shape[0]} x {spec.grid_shape[1]} "
                    f"grid, time stride {spec.time_stride} (time step {spec.time_step:g})",
        "training": _training_budget(run),
    }


def _figure_blocks(figures: dict[str, Path]) -> list[Block]:
    return [Figure(FIGURE_TITLES.get(name, name), path) for name, path in figures.items()]


def _config_block(run: Run) -> Code:
    return Code(run.files.config.read_text(), f"configuration of {run.path} (config.yaml)")


def evaluation_report(title: str, run: Run, metrics: dict, figures: dict[str, Path],
                      extra: dict | None = None) -> Report:
    """The report of one run's evaluation: facts, the mean scores, the figures, scores per lead time, config."""
    return Report(title, [
        Facts({**(extra or {}), **_run_facts(run), **_protocol(metrics), **_sampling_cost(metrics)}),
        Heading("Mean over lead times"), scores_table({run.method: metrics}),
        Heading("Figures"), *_figure_blocks(figures),
        Heading("Scores at every lead time"), _lead_time_table(metrics),
        Heading("Configuration"), _config_block(run),
    ])


def comparison_report(title: str, runs: dict[str, tuple[Run, dict]], figures: dict[str, Path],
                      extra: dict | None = None) -> Report:
    """The report comparing runs evaluated alike; ``runs``: label -> (run, metrics), each run's own report in the
    directory ``label`` beside this one."""
    results = {label: metrics for label, (_, metrics) in runs.items()}
    blocks: list[Block] = [
        Facts({**(extra or {}), "runs": ", ".join(runs), **_protocol(next(iter(results.values())))}),
        Heading("Mean over lead times"), scores_table(results), Facts({"marked": BEST_RULE}),
        Heading("Figures"), *_figure_blocks(figures),
    ]
    for label, (run, metrics) in runs.items():
        blocks += [Heading(f"Run {label}"), Facts({**_run_facts(run), **_sampling_cost(metrics)}),
                   ReportLink("its report: every figure and the scores at every lead time", Path(label)),
                   _config_block(run)]
    return Report(title, blocks)


def _in_between_table(result: dict) -> Table:
    """Means over the in-between lead times of both methods, and their ratio; the better mean marked."""
    keys = ("crps", "crps_fair", "mse", "ssr")
    means = result["in_between"]
    rows = [[METHODS[method], *(_number(means[method][key]) for key in keys)] for method in METHODS]
    rows.append(["ratio DYffusion / linear", *(_number(means["ratio"][key]) for key in keys)])
    best = {(r, 1 + c) for c, key in enumerate(keys)
            for r in _best_rows([means[method][key] for method in METHODS], 1.0 if key == "ssr" else None)}
    return Table(["method", *(SCORE_NAMES[key] for key in keys)], rows, best)


def _fine_lead_time_table(result: dict) -> Table:
    columns = [(key, method) for key in ("crps", "mse", "ssr") for method in METHODS]
    rows = [[f"{lead:g}", str(frames), "yes" if whole else "",
             *(_number(result[method][key][i]) for key, method in columns)]
            for i, (lead, frames, whole) in enumerate(zip(result["lead_times"], result["stored_frames"],
                                                          result["integer"]))]
    return Table(["lead time", "stored frames", "run's lead time",
                  *(f"{SCORE_NAMES[key]} {method}" for key, method in columns)], rows)


def write_continuous(out: Path, run: Run, result: dict, extra: dict | None = None) -> dict[str, Path]:
    """``continuous.json``, ``continuous.png`` and ``continuous.md`` in ``out`` from :func:`evaluate_continuous`'s
    ``result``; returns name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "continuous.json", "markdown": out / "continuous.md"}
    write_json(paths["json"], result)
    stride, horizon = result["time_stride"], result["horizon"]
    title = f"Continuous time: {result['members']} members, {result['initial_conditions']} initial conditions"
    paths["figure"] = _figure(out / "continuous.png", lambda file: plot_scores_at_fine_lead_times(
        {METHODS[method]: result[method] for method in METHODS}, stride, file, title))
    between = sum(not whole for whole in result["integer"])
    report = Report(f"Continuous-time forecasts of {run.path}", [
        Facts({**(extra or {}), **_run_facts(run),
               "lead times": f"every stored frame of the first horizon, k / {stride} for k = 1..{stride * horizon} "
                             f"({between} in between the run's {horizon} lead times); {result['lead_time_unit']}",
               "methods": f"the same {result['members']} members (seed {result['seed']}, one sampling) from each of "
                          f"{result['initial_conditions']} initial conditions on the run's grid: DYffusion's "
                          f"interpolator at the real-valued lead times ({result['sampler']} sampler, "
                          f"{result['sampling_steps']} steps, refine {result['refine']}), and each member's "
                          f"integer-time forecasts, with the initial condition at 0, interpolated linearly in time",
               "truth": "the stored frames; boundary conditions applied to every predicted frame of both methods",
               "units": f"{result['units']}; area weighting: {result['area_weighting']}; CRPS estimators: "
                        f"{result['crps_estimator']}"}),
        Heading("Mean over the in-between lead times"), _in_between_table(result),
        Facts({"ratio": result["ratio"], "marked": "the better method per column in bold: lower CRPS and MSE, SSR "
                                                   "closer to 1", "conclusion": verdict(result)}),
        Heading("Figure"), Figure("CRPS and MSE against the fine lead time", paths["figure"]),
        Heading("Scores at every fine lead time"), _fine_lead_time_table(result),
    ])
    write_text(paths["markdown"], report.markdown(out))
    return paths
