"""Peak resident memory of training: against the horizon, and of the spring-mesh training set.

    python benchmarks/memory.py horizons [--horizons 8,16,32,64,128] [--batch 64] [--steps 3] [--out benchmarks/memory]
    python benchmarks/memory.py data [--trajectories 100] [--frames 805] [--batches 300] [--data DIR]

``horizons``: DYffusion's two training stages (the interpolator; the forecaster through its frozen interpolator,
look-ahead term included) and the DDPM baseline, which diffuses the h future frames stacked on channels, each
run through its LightningModule's ``training_step``, backward, gradient clipping and AdamW step on the
spring-mesh preset's ConvNet and a 10 x 10 grid with 4 channels (random data, batches made by
:class:`WindowDataset` as training makes them). Writes ``memory.json`` (method -> horizon -> peak bytes),
``memory.md`` and ``memory.png`` into ``--out``.

``data``: the resident memory the spring-mesh training split costs as ``fit`` opens it (open_split,
subsample_time, Normalizer.fit, the preset's WindowDataset and a shuffled DataLoader, a few hundred batches),
in memory and streamed from disk, against the size of its raw array. The data is simulated once and cached.

Every point runs in a fresh process (this script with the hidden option ``--measure``), so that no allocator
pool or peak of another point is counted. The peak is the kernel's high-water mark of the resident set
(VmHWM), reset through ``/proc/self/clear_refs`` (Linux). Each part appends a section to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from results import append, machine
from torch.utils.data import DataLoader

from dyffusion.baselines.video_diffusion import VideoDiffusionModule
from dyffusion.config import ExperimentConfig, load_config, nested
from dyffusion.data.normalization import Normalizer
from dyffusion.data.spec import DataSpec
from dyffusion.data.splits import open_split
from dyffusion.data.windows import WindowDataset
from dyffusion.io import write_json, write_text
from dyffusion.method.interpolator import Interpolator
from dyffusion.method.stages import ForecasterModule, InterpolatorModule
from dyffusion.simulators.spring_mesh import write_spring_mesh_splits

PRESET = "spring-mesh"
CHANNELS, STATIC_CHANNELS, GRID = 4, 1, (10, 10)  # the spring mesh: p and q (x, y), the fixed-particle mask
METHODS = {"interpolator": "DYffusion interpolator", "forecaster": "DYffusion forecaster (+ frozen interpolator)",
           "ddpm": "DDPM at once (h frames on channels)"}
GOAL_RATIO = 1.15
DATA_GOAL = 2.0
MIB = 2**20


def resident() -> dict[str, int]:
    """This process's current (VmRSS) and peak (VmHWM) resident set, in bytes."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}


def reset_peak() -> int:
    """Reset VmHWM to the current resident set (Linux: ``5`` in clear_refs) and return that set in bytes."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return resident()["VmRSS"]


def measure_in_fresh_process(part: str, point: str, options: list[str]) -> dict:
    """Run ``memory.py PART --measure POINT OPTIONS`` and return the JSON it prints last."""
    command = [sys.executable, __file__, part, "--measure", point, *options]
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def section_header(title: str) -> list[str]:
    command = "python benchmarks/memory.py " + " ".join(sys.argv[1:])
    return [f"\n## {title} ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n",
            f"- command: `{command.strip()}`",
            f"- machine: {machine()}; memory is the resident set (VmRSS, peak VmHWM) of one fresh process per "
            "point (another job may have been using the CPU: that changes times, not these figures)"]


# --- horizons -------------------------------------------------------------------------------------------------


def training_module(config: ExperimentConfig, method: str) -> tuple[pl.LightningModule, dict]:
    """The method's LightningModule and the WindowDataset flags of its training windows (as ``fit`` sets them)."""
    horizon = config.data.horizon
    if method == "interpolator":
        return (InterpolatorModule(config.interpolator, CHANNELS, STATIC_CHANNELS, horizon),
                {"target_range": (1, horizon - 1)})
    if method == "forecaster":
        interpolator = Interpolator(config.interpolator.network, CHANNELS, STATIC_CHANNELS)
        return ForecasterModule(config.forecaster, config.sampling, interpolator, CHANNELS, STATIC_CHANNELS,
                                horizon), {}
    return VideoDiffusionModule(config.baseline, method, CHANNELS, STATIC_CHANNELS, horizon), {"with_window": True}


def random_batch(horizon: int, batch_size: int, **flags) -> dict[str, torch.Tensor]:
    """One training batch of ``batch_size`` windows of one random trajectory of horizon + batch_size frames."""
    values = np.random.default_rng(0).standard_normal((1, horizon + batch_size, CHANNELS, *GRID), np.float32)
    identity = Normalizer(np.zeros((CHANNELS, 1, 1)), np.ones((CHANNELS, 1, 1)))
    windows = WindowDataset(values, identity, np.zeros((1, STATIC_CHANNELS, *GRID), np.float32), horizon, **flags)
    return next(iter(DataLoader(windows, batch_size)))


def training_step_memory(method: str, horizon: int, batch_size: int, steps: int) -> dict[str, int]:
    """Resident set before ``steps`` training steps (model, optimizer state and batch built, one step warmed up)
    and its peak during them, in bytes."""
    torch.manual_seed(0)
    config = load_config(PRESET, [nested("data.horizon", horizon)])
    module, flags = training_module(config, method)
    batch = random_batch(horizon, batch_size, **flags)
    optimizer = module.configure_optimizers()

    def step() -> None:  # Lightning's automatic optimisation, without the Trainer
        optimizer.zero_grad()
        module.training_step(batch, 0).backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), config.trainer.gradient_clip)
        optimizer.step()

    step()  # allocates AdamW's state and warms the allocator: the steps after it are the steady state
    before = reset_peak()
    for _ in range(steps):
        step()
    return {"before": before, "peak": resident()["VmHWM"]}


def increase(point: dict[str, int]) -> int:
    """Bytes the training steps added to the resident set they started from."""
    return point["peak"] - point["before"]


def plot(points: dict[str, dict[int, dict[str, int]]], horizons: list[int], path: Path) -> None:
    """Peak and increase over the pre-step resident set (MiB) against h, one line per method."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    peak_axes, increase_axes = figure.subplots(1, 2)
    for method, by_horizon in points.items():
        peaks = [by_horizon[h]["peak"] / MIB for h in horizons]
        increases = [increase(by_horizon[h]) / MIB for h in horizons]
        peak_axes.plot(horizons, peaks, marker="o", label=METHODS[method])
        increase_axes.plot(horizons, increases, marker="o", label=METHODS[method])
    for axes, title in ((peak_axes, "peak resident set during training steps"),
                        (increase_axes, "increase over the resident set before the steps")):
        axes.set_xscale("log", base=2)
        axes.set_xticks(horizons, [str(h) for h in horizons])
        axes.set_xlabel("horizon h")
        axes.set_ylabel("MiB")
        axes.set_title(title)
        axes.set_ylim(bottom=0)  # the peak includes the constant cost of torch: show growth against the whole
        axes.grid(alpha=0.3)
    peak_axes.legend()
    figure.savefig(path, dpi=120)


def run_horizons(args: argparse.Namespace) -> None:
    horizons = sorted(int(h) for h in args.horizons.split(","))
    points: dict[str, dict[int, dict[str, int]]] = {}
    for method in METHODS:
        for horizon in horizons:
            point = measure_in_fresh_process("horizons", f"{method}:{horizon}",
                                             ["--batch", str(args.batch), "--steps", str(args.steps)])
            points.setdefault(method, {})[horizon] = point
            print(f"{method} h={horizon}: peak {point['peak'] / MIB:.1f} MiB (+{increase(point) / MIB:.1f} MiB)",
                  file=sys.stderr)

    first, last = horizons[0], horizons[-1]
    ratio = {method: {"peak": by_horizon[last]["peak"] / by_horizon[first]["peak"],
                      "increase": increase(by_horizon[last]) / increase(by_horizon[first])}
             for method, by_horizon in points.items()}
    table = ["| method | " + " | ".join(f"h = {h}" for h in horizons) + f" | peak h={last} / h={first} "
             f"| increase h={last} / h={first} |", "|---" * (len(horizons) + 3) + "|"]
    table += [f"| {METHODS[method]} | "
              + " | ".join(f"{p['peak'] / MIB:.1f} (+{increase(p) / MIB:.1f})"
                           for p in (by_horizon[h] for h in horizons))
              + f" | {ratio[method]['peak']:.3f} | {ratio[method]['increase']:.2f} |"
              for method, by_horizon in points.items()]

    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "memory.json", {method: {str(h): p["peak"] for h, p in by_horizon.items()}
                                          for method, by_horizon in points.items()})
    write_text(args.out / "memory.md", "\n".join(table) + "\n")
    plot(points, horizons, args.out / "memory.png")

    stages = ("interpolator", "forecaster")
    dyffusion_flat = all(ratio[stage]["peak"] <= GOAL_RATIO for stage in stages)
    baseline_grows = ratio["ddpm"]["peak"] > GOAL_RATIO
    verdict = "met" if dyffusion_flat and baseline_grows else "NOT met"
    # The peak carries some 500 MiB of interpreter, torch and Lightning: the spread in MiB says how flat it is.
    spread = max(max(p["peak"] for p in points[stage].values()) - min(p["peak"] for p in points[stage].values())
                 for stage in stages)
    lines = section_header(f"Training memory against the horizon, batch {args.batch}") + [
        f"- workload: preset `{PRESET}` networks (ConvNet width 64, kernels 9/7/5/3), {GRID[0]} x {GRID[1]} grid, "
        f"{CHANNELS} channels + 1 static, batch {args.batch} of random windows; per point: build the "
        f"LightningModule and the batch, one warm-up step, reset the peak, {args.steps} steps of training_step, "
        "backward, gradient clipping 1.0 and AdamW",
        f"- cells: peak resident set during the steps in MiB (+ its increase over the resident set before them); "
        f"files: `{os.path.relpath(args.out)}/memory.json`, `memory.md`, `memory.png`\n",
        *table,
        f"\n**Goal {verdict}**: DYffusion's peak at h = {last} is {ratio['interpolator']['peak']:.3f}x "
        f"(interpolator) and {ratio['forecaster']['peak']:.3f}x (forecaster) its peak at h = {first} "
        f"(goal: at most {GOAL_RATIO:.2f}x: {'yes' if dyffusion_flat else 'no'}; over all horizons each stage's "
        f"peak varies by at most {spread / MIB:.1f} MiB), while the at-once DDPM's peak grows "
        f"{ratio['ddpm']['peak']:.2f}x (more than {GOAL_RATIO:.2f}x: {'yes' if baseline_grows else 'no'}). "
        "The goal is judged on the peak: it is what must fit in memory, and it does not depend on what the "
        "allocator kept from the warm-up step, which the increase does (freed blocks that stay resident "
        "are reused without raising the resident set). The increase isolates the step's working set "
        "(activations, gradients) from the constant cost of the interpreter, torch and the weights.\n",
    ]
    append(lines)


# --- data -----------------------------------------------------------------------------------------------------


def training_set_memory(data: Path, stream: bool, batches: int) -> dict[str, int]:
    """Resident-set growth (bytes) of opening the train split as ``fit`` does and iterating ``batches`` batches."""
    import netCDF4  # noqa: F401  the reader's library is code loaded once, not memory of the data

    config = load_config(PRESET)
    horizon = config.data.horizon
    before = reset_peak()
    train = open_split(data, "train", config.data.split, stream).subsample_time(config.data.time_stride)
    opened = resident()
    normalizer = Normalizer.fit(train.values, train.valid, per_point=config.data.normalization == "point")
    spec = DataSpec.from_data(train, normalizer, config.data.time_stride)
    windows = WindowDataset(train.values, normalizer, spec.network_static(train), horizon, config.data.window_stride,
                            train.valid, target_range=(1, horizon - 1))  # the interpolator's: 3 frames per item
    loader = DataLoader(windows, config.interpolator.batch_size, shuffle=True)
    for _ in zip(range(batches), loader):  # what a training epoch reads, batches dropped
        pass
    after = resident()
    return {"raw": train.values.nbytes, "windows": len(windows), "opened": opened["VmRSS"] - before,
            "opening_peak": opened["VmHWM"] - before, "after": after["VmRSS"] - before,
            "peak": after["VmHWM"] - before}


def data_directory(args: argparse.Namespace) -> Path:
    return args.data / f"spring-mesh-{args.trajectories}x{args.frames}"


def run_data(args: argparse.Namespace) -> None:
    data = data_directory(args)
    print(f"spring-mesh training split in {data} (simulated once, then reused)", file=sys.stderr)
    write_spring_mesh_splits(data, train=args.trajectories, val=0, test=0, ood_test=0, frames=args.frames, seed=0)
    modes = {"in memory": "memory", "streamed (--stream)": "stream"}
    options = ["--data", str(args.data), "--trajectories", str(args.trajectories), "--frames", str(args.frames),
               "--batches", str(args.batches)]
    results = {name: measure_in_fresh_process("data", mode, options) for name, mode in modes.items()}

    held, streamed = results["in memory"], results["streamed (--stream)"]
    raw = held["raw"]
    table = ["| split held | after opening | peak while opening | after the batches | peak | peak / raw array |",
             "|---|---|---|---|---|---|"]
    table += [f"| {name} | {r['opened'] / MIB:.1f} | {r['opening_peak'] / MIB:.1f} | {r['after'] / MIB:.1f} "
              f"| {r['peak'] / MIB:.1f} | {r['peak'] / raw:.2f} |" for name, r in results.items()]
    in_memory = held["peak"] / raw
    phase = "while the split is read (open_split)" if held["opening_peak"] == held["peak"] else "after reading"
    config = load_config(PRESET)
    lines = section_header(f"Memory of the spring-mesh training set, {args.trajectories} trajectories") + [
        f"- data: `dyffusion.simulators.spring_mesh.write_spring_mesh_splits` train split, {args.trajectories} "
        f"trajectories x {args.frames} frames x {CHANNELS} channels x {GRID[0]} x {GRID[1]} float32: raw array "
        f"{raw / MIB:.1f} MiB ({raw} bytes); h = {config.data.horizon}: {held['windows']} "
        "overlapping windows",
        f"- per mode, in a fresh process: open_split + subsample_time, Normalizer.fit (per point), the "
        f"interpolator's WindowDataset and a shuffled DataLoader of batch {config.interpolator.batch_size}, "
        f"{args.batches} batches; figures are the growth of the resident set in MiB over the process before "
        "opening (torch, xarray and netCDF4 loaded)\n",
        *table,
        f"\n**Goal {'met' if in_memory <= DATA_GOAL else 'NOT met'}**: the training set held in memory peaks at "
        f"{in_memory:.2f}x its raw array (goal: at most {DATA_GOAL:.0f}x), {phase}; once read it holds "
        f"{held['opened'] / raw:.2f}x, and {held['after'] / raw:.2f}x after the batches. Streamed: "
        f"{streamed['peak'] / raw:.2f}x at the peak. The authors' loader, which materialises every overlapping "
        "window, needs about 30 GB for the 100-trajectory set (`../shared/PEER_TIMINGS.md`).\n",
    ]
    append(lines)


def measure(args: argparse.Namespace) -> None:
    """One point, in this (fresh) process: print its figures as JSON."""
    warnings.filterwarnings("ignore", ".*self.log.*")  # the modules log to a Trainer; there is none here
    if args.part == "horizons":
        method, horizon = args.measure.split(":")
        result = training_step_memory(method, int(horizon), args.batch, args.steps)
    else:
        result = training_set_memory(data_directory(args), args.measure == "stream", args.batches)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parts = parser.add_subparsers(dest="part", required=True)
    horizons = parts.add_parser("horizons", help="peak memory of training steps against the horizon")
    horizons.add_argument("--horizons", default="8,16,32,64,128")
    horizons.add_argument("--batch", type=int, default=64)
    horizons.add_argument("--steps", type=int, default=3, help="measured training steps after the warm-up step")
    horizons.add_argument("--out", type=Path, default=Path(__file__).parent / "memory")
    data = parts.add_parser("data", help="memory of the spring-mesh training set against its raw size")
    data.add_argument("--trajectories", type=int, default=100)
    data.add_argument("--frames", type=int, default=805)
    data.add_argument("--batches", type=int, default=300)
    data.add_argument("--data", type=Path, default=Path(__file__).parent / "runs" / "memory-data",
                      help="where the simulated data is cached")
    for part in (horizons, data):
        part.add_argument("--measure", help=argparse.SUPPRESS)  # one point, run by this script in a fresh process
    args = parser.parse_args()
    if args.measure:
        measure(args)
    elif args.part == "horizons":
        run_horizons(args)
    else:
        run_data(args)


if __name__ == "__main__":
    main()
