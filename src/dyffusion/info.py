"""``dyffusion info``: what a run directory holds, as plain data (``run_info``) or aligned text (``format_info``)."""

from __future__ import annotations

from pathlib import Path

import torch

from dyffusion.methods import method_of
from dyffusion.run import RunDir, read_run_description


def _files(run: Path) -> list[dict]:
    """The run's top-level files, and each directory as its total (checkpoints, logs, evaluations)."""
    found = []
    for path in sorted(run.iterdir()):
        if path.is_dir():
            inside = [file for file in path.rglob("*") if file.is_file()]
            found.append({"path": f"{path.name}/", "bytes": sum(file.stat().st_size for file in inside),
                          "files": len(inside)})
        elif path.is_file():
            found.append({"path": path.name, "bytes": path.stat().st_size})
    return found


def run_info(path: str | Path) -> dict:
    """What the run directory ``path`` holds, JSON-ready: method, data (channels, static variables, grid, time
    step and stride), horizon, schedule, networks (parameters per network), training (budget, each stage's status,
    epochs, minutes and best validation CRPS; the Perturbation scale or DYffusion's sampling steps chosen on
    validation, with the scores of the candidates), files and their sizes, and the data it was trained on.

    Works on a run whose training has not finished: only config.yaml and data.json must be there.
    """
    run = Path(path)
    files = RunDir(run)
    config, spec = read_run_description(run)
    method = method_of(config)
    summary = files.read_summary()
    with torch.device("meta"):  # shapes only: no memory for the weights, no draw from the random generators
        models = method.networks(config, spec)
    networks = {}
    for name, model in models.items():
        network = method.network_config(config, name)
        networks[name] = {"backbone": network.name, "width": network.width, "dropout": network.dropout,
                          "parameters": sum(parameter.numel() for parameter in model.parameters()),
                          "weights": files.weights(name).exists()}
    stages = {name: {"status": files.stage_status(name, summary),
                     **{key: value for key, value in summary.get(name, {}).items() if key != "finished"}}
              for name in models}
    files = _files(run)
    return {
        "run": str(run),
        "method": config.method,
        "config": config.name,
        "trained_on": summary.get("data"),
        "horizon": config.data.horizon,
        "data": {
            "channels": [{"name": c.name, "long_name": c.long_name, "units": c.units} for c in spec.channels],
            "static": spec.static_names,
            "grid": {"dims": list(spec.spatial_dims), "shape": list(spec.grid_shape)},
            "time_step": spec.time_step,
            "time_stride": spec.time_stride,
            "masked": spec.masked,
            "boundary_condition": spec.boundary_condition,
        },
        "schedule": method.sampling_summary(config),
        "networks": networks,
        "training": {"budget": {"max_epochs": config.trainer.max_epochs, "max_minutes": config.trainer.max_minutes},
                     "stages": stages, "total_minutes": summary.get("total_minutes"),
                     **{key: summary[key] for key in method.choices if key in summary}},
        "files": files,
        "total_bytes": sum(file["bytes"] for file in files),
    }


def _size(count: int) -> str:
    units = ("B", "KiB", "MiB", "GiB")
    power = min(len(units) - 1, max(0, (count.bit_length() - 1) // 10))
    return f"{count} B" if power == 0 else f"{count / 1024**power:.1f} {units[power]}"


def _minutes(minutes: float) -> str:
    return f"{minutes * 60:.1f} s" if minutes < 1 else f"{minutes:.1f} min"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows of cells as lines with every column padded to its widest cell."""
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _steps_choice(search: dict) -> str:
    """The sampling steps ``fit`` chose on validation, and how the candidates were scored."""
    shared = (f"{search['sampler']}, {_count(search['members'], 'member')}, rollout {search['rollout']}, "
              f"{_count(search['initial_conditions'], 'initial condition')}")
    steps = ", ".join(f"{step:g}" for step in search["chosen_steps"])
    if search["chosen"] is None:
        return f"kept steps {steps}: no candidate scored a finite validation CRPS ({shared})"
    return f"{search['chosen']} (steps {steps}) chosen on validation CRPS ({shared})"


def _step_candidates(search: dict) -> list[list[str]]:
    """A row of validation scores per candidate of the sampling steps search, the chosen one marked."""
    return [[candidate["name"], _count(len(candidate["steps"]), "step"),
             f"{candidate['network_evaluations']:.0f} network evaluations", f"CRPS {candidate['crps']:.5g}",
             f"SSR {candidate['ssr']:.3g}", f"MSE {candidate['mse']:.5g}",
             "chosen" if candidate["name"] == search["chosen"] else ""] for candidate in search["candidates"]]


def format_info(info: dict) -> str:
    """:func:`run_info` as aligned plain text, one section per line group."""
    data, schedule, training = info["data"], info["schedule"], info["training"]
    stride = f" (stride {data['time_stride']} of the stored frames)" if data["time_stride"] > 1 else ""
    grid = " x ".join(map(str, data["grid"]["shape"]))
    details = [f"grid {grid} ({', '.join(data['grid']['dims'])})", f"time step {data['time_step']:g}{stride}"]
    details += [f"boundary condition {data['boundary_condition']}"] if data["boundary_condition"] else []
    details += ["masked points (land or obstacles)"] if data["masked"] else []
    settings = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in schedule.items()
                         if key != "kind" and value is not None)
    budget = ", ".join(f"{key.replace('_', ' ')} {value:g}" for key, value in training["budget"].items()
                       if value is not None)
    spent = training["total_minutes"]
    sections = [
        ("run", [[info["run"]]]),
        ("method", [[f"{info['method']} (config {info['config']})"]]),
        ("trained on", [[info["trained_on"] or "unknown (no training.json)"]]),
        ("data", [[", ".join(details)]]),
        ("channels", [[c["name"], c["long_name"], f"[{c['units']}]" if c["units"] else ""] for c in data["channels"]]),
        ("static", [[", ".join(data["static"]) or "none"]]),
        ("horizon", [[f"{info['horizon']} time steps"]]),
        ("schedule", [[f"{schedule['kind']}: {settings}"]]),
        ("networks", [[name, f"{n['backbone']} width {n['width']}", f"{n['parameters']:,} parameters",
                       "weights saved" if n["weights"] else "no weights yet"] for name, n in info["networks"].items()]),
        ("budget", [[f"{budget or 'none'}; spent {_minutes(spent)}" if spent is not None else budget or "none"]]),
        ("stages", [[name, stage["status"], _count(stage["epochs"], "epoch") if "epochs" in stage else "",
                     _count(stage["steps"], "step") if "steps" in stage else "",
                     _minutes(stage["minutes"]) if "minutes" in stage else "",
                     f"best val CRPS {stage['best_val_crps']:.4g}" if stage.get("best_val_crps") is not None else ""]
                    for name, stage in training["stages"].items()]),
        ("files", [[file["path"], _size(file["bytes"]), f"({_count(file['files'], 'file')})" if "files" in file else ""]
                   for file in info["files"]] + [["total", _size(info["total_bytes"])]]),
    ]
    if "perturbation" in training:
        sections.insert(-1, ("perturbation", [[f"scale {training['perturbation']['chosen_scale']:g} chosen on "
                                               "validation CRPS"]]))
    if "sampling_steps" in training:
        search = training["sampling_steps"]
        sections[-1:-1] = [("sampling steps", [[_steps_choice(search)]]),
                           ("step candidates", _step_candidates(search))]
    label_width = max(len(label) for label, _ in sections)
    lines = []
    for label, rows in sections:
        for index, line in enumerate(_aligned(rows)):
            lines.append(f"{label if index == 0 else '':<{label_width}}  {line}".rstrip())
    return "\n".join(lines)
