"""Proof of the speed claims (issue 7): DYffusion's sampling against the baselines, training and sampling against
the authors' figures, and where the time of a forecast goes.

    python benchmarks/speed.py sampling [--repeats 5] [--members 50]
    python benchmarks/speed.py training [--repeats 7] [--sampling-repeats 5]
    python benchmarks/speed.py flops [--repeats 5] [--members 50] [--check-run RUN --check-data DATA]
    python benchmarks/speed.py goal [--paper benchmarks/runs/paper] [--members 50] [--repeats 5] [--full]
    python benchmarks/speed.py layout [--frames 16,32,64,134] [--batch 50] [--repeats 15]

``sampling``: one forecast of one horizon, 1 initial condition x ``members`` members, per method: DYffusion (cold
sampler, all steps, refine), Dropout, Perturbation, DDPM and MCVD with their 1000 ancestral steps and with 20 DDIM
steps; wall time, network evaluations per member, and DYffusion's speed-up over each.

``training``: samples per second of the interpolator's and the forecaster's training step (training_step of the
real LightningModule, backward, gradient clipping, AdamW) on the spring-mesh and navier-stokes-cpu presets, in
float32 and under bfloat16 autocast (what ``trainer.precision: bf16-mixed`` runs); DYffusion's sampling time of
"1 initial condition x 50 members" and "16 initial conditions x 20 members at 1 thread"; both beside the
authors' figures in ``../shared/PEER_TIMINGS.md`` (a reference from a machine of the same kind, not side by side).

``goal``: the trained spring-mesh runs of ``benchmarks/paper.py``: CRPS, MSE and SSR of DYffusion with all its
steps and with evenly spaced subsets, and of DDPM and MCVD with their 1000 ancestral steps (and DDIM), on the test
split (one horizon from each trajectory's first frame, ``--full``: whole trajectories), with the time of one
forecast of each side by side: the speed-up goal checked together with its CRPS half.

``flops``: the FLOP/s the interpolator and the forecaster reach during a ``members``-member forecast against the
dense peak of this process (a large matmul and a large conv2d), a torch.profiler table of where the time goes,
then variants side by side: no_grad or autograd instead of inference mode, NCHW weights instead of
channels-last, bfloat16 autocast,
torch.compile, ``nn.Dropout``'s bernoulli masks instead of ours. ``--check-run`` (a trained DYffusion run, by
default the spring-mesh one of ``benchmarks/paper.py``) scores CRPS in float32 and in bfloat16 on the same test
data and seed.

Networks are the spring-mesh preset's (ConvNet width 64, kernels 9/7/5/3, h = 134) on a 10 x 10 grid with 4
channels and 1 static channel, untrained, with random inputs: a forward pass costs the same whatever the weights.
Times are medians of repeats in which the variants take turns (a first round warms up and is dropped), so a
change of the machine's load hits all alike; ratios are ratios of medians, with the range of the per-round
ratios. Each part appends a section to ``benchmarks/RESULTS.md`` with the load average before and after it.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from results import append, machine
from sampling_speed import counted_flops
from torch import nn
from torch.utils.data import DataLoader

from dyffusion.baselines.multistep import MultiStepForecaster, MultiStepPipeline
from dyffusion.baselines.video_diffusion import FrameStackDenoiser, VideoDiffusionPipeline, noise_schedule
from dyffusion.config import ExperimentConfig, load_config
from dyffusion.data.normalization import Normalizer
from dyffusion.data.windows import WindowDataset
from dyffusion.method.forecaster import Forecaster
from dyffusion.method.interpolator import Interpolator
from dyffusion.method.pipeline import DYffusionPipeline
from dyffusion.method.schedule import StepSchedule
from dyffusion.method.stages import ForecasterModule, InterpolatorModule
from dyffusion.networks import set_mc_dropout
from dyffusion.networks.dropout import Dropout

DDIM_STEPS = 20
PERTURBATION_SCALE = 0.05  # any scale: the noise is one addition per member, the cost does not depend on it
SPEED_UP_GOAL = 30  # DYffusion against DDPM and MCVD with 1000 steps
TRAINING_GOAL, SAMPLING_GOAL = 1.5, 2.0  # against the authors' training throughput and sampling time
PEER = "../shared/PEER_TIMINGS.md"
# The authors' figures (PEER_TIMINGS.md): training samples per second (low, high), sampling seconds.
PEER_TRAINING = {("spring-mesh", "interpolator"): (1130, 1470), ("spring-mesh", "forecaster"): (367, 367),
                 ("navier-stokes-cpu", "interpolator"): (0.9, 0.9)}
PEER_SAMPLING = {"1 x 50": 9.5, "16 x 20": 93.0}
# Their SimpleConvNet (width 64, kernels 9/7/5/3) as (in, out, kernel) per convolution: the first kernel is the
# input convolution, the head is 1 x 1; 9 inputs = 2 x 4 channels + the mask, as our interpolator's.
PEER_CONVNET = ((9, 64, 9), (64, 64, 7), (64, 64, 5), (64, 64, 3), (64, 4, 1))


@dataclass(frozen=True)
class System:
    """A preset with the shape of its data as the networks see it."""

    preset: str
    channels: int
    static_channels: int
    grid: tuple[int, int]

    @property
    def config(self) -> ExperimentConfig:
        return load_config(self.preset)


SPRING_MESH = System("spring-mesh", 4, 1, (10, 10))  # p and q (x, y); the fixed-particle mask
# u, v, p; obstacle_mask, fixed_mask, inflow and the validity mask the obstacles add (DataSpec.masked)
NAVIER_STOKES = System("navier-stokes-cpu", 3, 4, (42, 221))


# --- timing and reporting -------------------------------------------------------------------------------------


def interleaved(variants: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True) -> dict[str, list[float]]:
    """Seconds per call of each variant, the variants taking turns in every round; with ``warm_up`` a first round
    (allocator, oneDNN primitive caches, compilation) is run and dropped."""
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(repeats + int(warm_up)):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            if round_index >= int(warm_up):
                timings[name].append(time.perf_counter() - start)
    return timings


def seconds(values: list[float]) -> str:
    """Median and range of repeated timings."""
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def speed_up(slow: list[float], fast: list[float]) -> str:
    """Ratio of the medians, slow / fast, with the range of the per-round ratios."""
    rounds = [s / f for s, f in zip(slow, fast)]
    return f"{statistics.median(slow) / statistics.median(fast):.2f}x ({min(rounds):.2f}-{max(rounds):.2f})"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def load_average() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def header(title: str, load_before: str, workload: list[str]) -> list[str]:
    """Title, command, machine and load average (1/5/15 min) before and after the part."""
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:])
    return [f"\n## {title} ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n",
            f"- command: `{command.strip()}`",
            f"- machine: {machine()}; load average (1/5/15 min) {load_before} before, {load_average()} after "
            "(2 cores: a 1-minute load above 2 means other jobs shared the cores)",
            *[f"- {line}" for line in workload], ""]


def network_text(config: ExperimentConfig) -> str:
    network = config.interpolator.network
    return f"{network.name} width {network.width}, kernels {'/'.join(map(str, network.kernel_sizes))}"


def spring_mesh_case() -> tuple[ExperimentConfig, torch.Tensor, torch.Tensor]:
    """The spring-mesh preset and one random initial condition; torch's seed is reset so that the networks
    built next have the same weights in every part."""
    torch.manual_seed(0)
    return SPRING_MESH.config, *random_inputs(SPRING_MESH, 1)


def random_inputs(system: System, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial conditions (batch, C, H, W) from a fixed seed and all-zero static channels."""
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(batch, system.channels, *system.grid, generator=generator),
            torch.zeros(batch, system.static_channels, *system.grid))


def dyffusion_pipeline(config: ExperimentConfig, system: System) -> DYffusionPipeline:
    """The preset's interpolator and forecaster (fresh weights) and sampler settings."""
    sampling, horizon = config.sampling, config.data.horizon
    interpolator = Interpolator(config.interpolator.network, system.channels, system.static_channels)
    forecaster = Forecaster(config.forecaster.network, system.channels, system.static_channels,
                            config.forecaster.conditioning)
    schedule = StepSchedule(horizon, config.forecaster.schedule, config.forecaster.extra_steps)
    return DYffusionPipeline(interpolator, forecaster, schedule, sampler=sampling.sampler, steps=sampling.steps,
                             refine=sampling.refine, max_batch=sampling.max_batch)


# --- the changes tried: applied to copies of the networks -----------------------------------------------------


def bfloat16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


class Bfloat16Autocast(nn.Module):
    """A network run under CPU bfloat16 autocast that returns float32, so the sampler's state stays float32."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        with bfloat16_autocast():
            return self.network(*inputs).float()


def contiguous_weights(network: nn.Module) -> nn.Module:
    """A copy in PyTorch's default (NCHW) memory format, where ``build_network`` makes the weights channels-last."""
    return copy.deepcopy(network).to(memory_format=torch.contiguous_format)


def bernoulli_dropout(network: nn.Module) -> nn.Module:
    """A copy with ``nn.Dropout`` (masks from ``bernoulli_``) where src/ has its uniform-draw ``Dropout``."""
    changed = copy.deepcopy(network)
    for module in list(changed.modules()):
        for name, child in module.named_children():
            if isinstance(child, Dropout):
                setattr(module, name, nn.Dropout(child.p).train(child.training))
    return changed


def variant_pipeline(pipeline: DYffusionPipeline, change: Callable[[nn.Module], nn.Module]) -> DYffusionPipeline:
    return DYffusionPipeline(change(pipeline.interpolator), change(pipeline.forecaster), pipeline.schedule,
                             sampler=pipeline.sampler, steps=pipeline.steps, refine=pipeline.refine,
                             max_batch=pipeline.max_batch)


# name -> (how each network is changed, the grad mode the sampler runs in)
VARIANTS = {
    "as in src/ (inference mode, channels-last weights)": (lambda network: network, torch.inference_mode),
    "no_grad instead of inference mode": (lambda network: network, torch.no_grad),
    "autograd on (neither)": (lambda network: network, torch.enable_grad),
    "NCHW weights (PyTorch's default layout)": (contiguous_weights, torch.inference_mode),
    "bfloat16 autocast, float32 outputs": (lambda network: Bfloat16Autocast(copy.deepcopy(network)), torch.inference_mode),
    "torch.compile": (lambda network: torch.compile(copy.deepcopy(network)), torch.inference_mode),
    "nn.Dropout (bernoulli_ masks)": (bernoulli_dropout, torch.inference_mode),
}
BASELINE = next(iter(VARIANTS))
PROPOSED = "bfloat16 autocast, float32 outputs"


# --- sampling: DYffusion against the baselines ----------------------------------------------------------------


def method_pipelines(config: ExperimentConfig, system: System) -> dict:
    """Every method's sampler on the preset's backbones: DYffusion's, and ``baseline.network`` for the others."""
    horizon, baseline, max_batch = config.data.horizon, config.baseline, config.sampling.max_batch
    forecaster = MultiStepForecaster(baseline.network, system.channels, system.static_channels)
    denoiser = FrameStackDenoiser(baseline.network, system.channels, system.static_channels, horizon)
    pipelines = {
        "DYffusion": dyffusion_pipeline(config, system),
        "Dropout": MultiStepPipeline(forecaster, horizon, mc_dropout=True, max_batch=max_batch),
        "Perturbation": MultiStepPipeline(forecaster, horizon, PERTURBATION_SCALE, max_batch=max_batch),
    }
    for method in ("ddpm", "mcvd"):
        for ddim_steps in (None, DDIM_STEPS):
            pipelines[f"{method.upper()}{f' DDIM {ddim_steps}' if ddim_steps else ''}"] = VideoDiffusionPipeline(
                denoiser, noise_schedule(baseline, method), ddim_steps, max_batch=max_batch, clip=baseline.clip)
    return pipelines


def run_sampling(args: argparse.Namespace) -> None:
    load_before = load_average()
    config, initial, static = spring_mesh_case()
    pipelines = method_pipelines(config, SPRING_MESH)
    timings = interleaved({name: lambda p=pipeline: p.forecast(initial, static, args.members)
                           for name, pipeline in pipelines.items()}, args.repeats)

    ours = timings["DYffusion"]
    rows = ["| method | sampler | network evaluations per member | seconds, median (range) | "
            "DYffusion's speed-up over it (range of rounds) |", "|---|---|---|---|---|"]
    rows += [f"| {name} | {pipeline.sampler} | {pipeline.network_evaluations:.0f} | {seconds(timings[name])} | "
             f"{'-' if name == 'DYffusion' else speed_up(timings[name], ours)} |" for name, pipeline in pipelines.items()]
    slowest = min(statistics.median(timings[name]) / statistics.median(ours) for name in ("DDPM", "MCVD"))
    baseline = config.baseline
    lines = header("Sampling speed: DYffusion against the four baselines", load_before, [
        f"workload: one forecast of one horizon (h = {config.data.horizon}), 1 initial condition x {args.members} "
        f"members, 10 x 10 grid, 4 channels + 1 static; preset `{SPRING_MESH.preset}`: DYffusion's {network_text(config)} "
        f"({config.sampling.sampler} sampler, steps {config.sampling.steps}, refine {config.sampling.refine}); "
        f"the baselines' `baseline.network` {baseline.network.name} width {baseline.network.width}, kernels "
        f"{'/'.join(map(str, baseline.network.kernel_sizes))} (DDPM/MCVD: h x 4 channels in and out)",
        "networks untrained (random weights and inputs): the cost of a pass does not depend on the weights",
        f"medians of {args.repeats} interleaved repeats after a warm-up round; network evaluations per forecast "
        "sample as `EnsemblePipeline` counts them (a batched pass over k stacked copies counts k)",
    ]) + rows
    lines.append(
        f"\n**Goal ({SPEED_UP_GOAL}x faster than DDPM and MCVD with 1000 steps) {verdict(slowest >= SPEED_UP_GOAL)}**: "
        f"DYffusion is {slowest:.1f}x faster than the faster of the two. The CRPS half of the goal is not measured "
        "here (nothing is trained): see the tables `benchmarks/paper.py` appends to this file (section \"The "
        "paper's comparison at CPU scale\", trained by another engineer's run; there DDPM and MCVD sample with DDIM "
        f"in {DDIM_STEPS} steps, the rows \"DDPM DDIM {DDIM_STEPS}\" and \"MCVD DDIM {DDIM_STEPS}\" above).\n")
    append(lines)


# --- the speed-up goal on trained networks: time and CRPS together ---------------------------------------------


def goal_settings(run_dir: Path) -> dict[str, tuple[str, dict]]:
    """name -> (method, pipeline options): DYffusion with all its steps and with fewer (from the run's schedule),
    DDPM and MCVD with their 1000 ancestral steps and with DDIM."""
    from dyffusion.run import Run

    schedule = Run.load(run_dir / "dyffusion").schedule
    last = schedule.last_step
    settings = {"DYffusion, all steps": ("dyffusion", {"steps": "all"})}
    for count in (4, 2):  # evenly spaced steps, the first and the last included
        steps = sorted({round(last * k / (count - 1)) for k in range(count)})
        settings[f"DYffusion, steps {','.join(map(str, steps))}"] = ("dyffusion", {"steps": steps})
    for method in ("ddpm", "mcvd"):
        settings[f"{method.upper()}, 1000 ancestral steps"] = (method, {"ddim_steps": None})
        settings[f"{method.upper()}, DDIM {DDIM_STEPS}"] = (method, {"ddim_steps": DDIM_STEPS})
    return settings


def run_goal(args: argparse.Namespace) -> None:
    from dyffusion.data.contract import open_gridded
    from dyffusion.evaluation import evaluate, full_rollout
    from dyffusion.run import Run

    load_before = load_average()
    runs, data_dir = args.paper / "runs" / "spring-mesh", args.paper / "data" / "spring-mesh"
    if not (runs / "dyffusion" / "training.json").exists():
        sys.exit(f"no trained runs in {runs}: run `python benchmarks/paper.py` first")
    test = open_gridded(data_dir, "test")
    settings = goal_settings(runs)
    loaded = {method: Run.load(runs / method) for method in {method for method, _ in settings.values()}}
    scores = {}
    for name, (method, options) in settings.items():
        print(f"scoring {name}", flush=True)
        run = loaded[method]
        rollout = full_rollout(run, test) if args.full else run.horizon
        sampling = replace(run.config.sampling, members=args.members, **options)
        scores[name] = evaluate(run, test, sampling, rollout, progress=False, keep_example=False).metrics

    # Side-by-side timing of one forecast (one horizon, 1 initial condition x 50 members), the settings in turns.
    timings = {}
    for name, (method, options) in settings.items():
        run = loaded[method]
        frames = test.subsample_time(run.spec.time_stride)
        initial = run.spec.normalizer.normalize(torch.from_numpy(np.ascontiguousarray(frames.values[0, :1])))
        static = torch.from_numpy(np.ascontiguousarray(run.spec.network_static(frames)[:1]))
        pipeline = run.pipeline(**options)
        timings[name] = lambda p=pipeline, i=initial, c=static: p.forecast(i, c, 50)
    timed = interleaved(timings, args.repeats)

    ancestral = [name for name in settings if "ancestral" in name]
    ours = [name for name in settings if name.startswith("DYffusion")]
    crps = {name: metrics["mean"]["crps"] for name, metrics in scores.items()}
    # The fastest DYffusion setting whose CRPS is no worse than both 1000-step baselines (else the fastest at all).
    no_worse = [name for name in ours if crps[name] <= min(crps[a] for a in ancestral)]
    chosen = min(no_worse or ours, key=lambda name: statistics.median(timed[name]))
    rows = ["| setting | network evaluations per member and rollout | CRPS | MSE | SSR | one forecast [s], median "
            f"(range) | speed-up of `{chosen}` over it |", "|---|---|---|---|---|---|---|"]
    for name, metrics in scores.items():
        mean = metrics["mean"]
        rows.append(f"| {name} | {metrics['network_evaluations']:.0f} | {mean['crps']:.4g} | {mean['mse']:.3g} | "
                    f"{mean['ssr']:.3g} | {seconds(timed[name])} | "
                    f"{'-' if name in ours else speed_up(timed[name], timed[chosen])} |")
    ratios = {name: statistics.median(timed[name]) / statistics.median(timed[chosen]) for name in ancestral}
    met = bool(no_worse) and min(ratios.values()) >= SPEED_UP_GOAL
    lines = header("The speed-up goal on trained networks: time and CRPS together", load_before, [
        f"runs: `{runs}` (trained by `python benchmarks/paper.py`, preset `demo`: h = {loaded['dyffusion'].horizon}), "
        f"scored on `{data_dir}/test.nc`: {args.members} members, from the first frame of every trajectory, "
        + ("whole trajectories" if args.full else "one horizon (1000-step rollouts of whole trajectories would take "
                                                  "hours here: `--full`)"),
        f"DYffusion's settings: all its steps, and evenly spaced subsets of them (fewer network evaluations); "
        f"DDPM and MCVD: the paper's 1000 ancestral steps, and DDIM in {DDIM_STEPS} steps",
        f"times: one forecast of one horizon (1 initial condition x 50 members) per setting, the settings taking turns, "
        f"medians of {args.repeats} rounds after a warm-up round; speed-ups of the fastest DYffusion setting whose "
        f"CRPS is no worse than both 1000-step baselines' (`{chosen}`{'' if no_worse else ': none is, so the fastest'})",
    ]) + rows
    lines.append(
        f"\n**Goal ({SPEED_UP_GOAL}x faster than DDPM and MCVD with 1000 steps at a CRPS no worse) {verdict(met)}**: "
        f"`{chosen}` is " + " and ".join(f"{ratio:.1f}x faster than {name}" for name, ratio in ratios.items())
        + f"; its CRPS {crps[chosen]:.4g} against " + ", ".join(f"{crps[name]:.4g} ({name})" for name in ancestral)
        + f" ({'no worse' if no_worse else 'worse'}).\n")
    append(lines)


# --- training and sampling against the authors' figures -------------------------------------------------------


def random_batch(system: System, horizon: int, batch_size: int, **flags) -> dict[str, torch.Tensor]:
    """One training batch of random windows, made by :class:`WindowDataset` as training makes them."""
    values = np.random.default_rng(0).standard_normal(
        (1, horizon + batch_size, system.channels, *system.grid), np.float32)
    identity = Normalizer(np.zeros((system.channels, 1, 1)), np.ones((system.channels, 1, 1)))
    static = np.zeros((1, system.static_channels, *system.grid), np.float32)
    return next(iter(DataLoader(WindowDataset(values, identity, static, horizon, **flags), batch_size)))


# name -> (the context around training_step, the memory format of the weights, how the networks are changed);
# src/ builds these networks channels-last
TRAINING_VARIANTS = {
    "float32": (nullcontext, torch.channels_last, lambda network: network),
    "bfloat16 autocast": (bfloat16_autocast, torch.channels_last, lambda network: network),
    "NCHW weights": (nullcontext, torch.contiguous_format, lambda network: network),
    "nn.Dropout (fused)": (nullcontext, torch.channels_last, bernoulli_dropout),
}


def training_step(system: System, stage: str, variant: str) -> tuple[Callable[[], None], int]:
    """One optimisation step of ``stage`` as Lightning's automatic optimisation runs it (``bfloat16 autocast``
    as ``trainer.precision: bf16-mixed`` runs it), and the batch size."""
    precision, memory_format, change = TRAINING_VARIANTS[variant]
    torch.manual_seed(0)
    config = system.config
    horizon, channels, static_channels = config.data.horizon, system.channels, system.static_channels
    if stage == "interpolator":
        module = InterpolatorModule(config.interpolator, channels, static_channels, horizon)
        batch_size, flags = config.interpolator.batch_size, {"target_range": (1, horizon - 1)}
    else:
        # The frozen interpolator is outside the module tree: its memory format is set here.
        interpolator = Interpolator(config.interpolator.network, channels, static_channels).to(memory_format=memory_format)
        if precision is bfloat16_autocast:
            # forecaster_loss writes the interpolator's output into a float32 tensor, which fails on a bfloat16
            # one ("Index put requires the source and destination dtypes match"): cast back, as the fix would.
            interpolator = Bfloat16Autocast(interpolator)
        module = ForecasterModule(config.forecaster, config.sampling, interpolator, channels, static_channels, horizon)
        batch_size, flags = config.forecaster.batch_size, {}
    module = change(module).to(memory_format=memory_format)
    batch = random_batch(system, horizon, batch_size, **flags)
    optimizer = module.configure_optimizers()
    module.train()

    def step() -> None:
        optimizer.zero_grad()
        with precision():
            loss = module.training_step(batch, 0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), config.trainer.gradient_clip)
        optimizer.step()

    step()  # AdamW allocates its state in the first step
    return step, batch_size


def samples_per_second(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def peer_ratio(ours: float, theirs: tuple[float, float]) -> str:
    low, high = theirs
    return f"{ours / high:.2f}x" if low == high else f"{ours / high:.2f}-{ours / low:.2f}x"


def with_threads(threads: int, function: Callable[[], object]) -> Callable[[], object]:
    """``function`` run with ``threads`` intra-op threads, the previous number restored after it."""

    def call():
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return function()
        finally:
            torch.set_num_threads(previous)

    return call


def run_training(args: argparse.Namespace) -> None:
    warnings.filterwarnings("ignore", ".*self.log.*")  # the modules log to a Trainer; there is none here
    load_before = load_average()
    steps, batch_sizes = {}, {}
    for system in (SPRING_MESH, NAVIER_STOKES):
        for stage in ("interpolator", "forecaster"):
            for variant in TRAINING_VARIANTS:
                steps[system.preset, stage, variant], batch_sizes[system.preset, stage] = training_step(
                    system, stage, variant)
    step_times = interleaved(steps, args.repeats)
    throughput = {key: batch_sizes[key[:2]] / statistics.median(values) for key, values in step_times.items()}

    reference, *others = TRAINING_VARIANTS
    rows = [f"| preset | stage | batch | {reference} samples/s | "
            + " | ".join(f"{variant}: samples/s, speed-up (range)" for variant in others)
            + f" | authors' samples/s | ours {reference} / theirs | ours fastest / theirs |", "|" + "---|" * (7 + len(others))]
    met = {}
    for preset, stage in batch_sizes:
        times = {variant: step_times[preset, stage, variant] for variant in TRAINING_VARIANTS}
        fastest = max(TRAINING_VARIANTS, key=lambda variant: throughput[preset, stage, variant])
        theirs = PEER_TRAINING.get((preset, stage))
        cells = [f"{samples_per_second(throughput[preset, stage, variant])}, {speed_up(times[reference], times[variant])}"
                 for variant in others]
        peer_cells = ["-"] * 3 if theirs is None else [
            "-".join(f"{value:g}" for value in sorted(set(theirs))), peer_ratio(throughput[preset, stage, reference], theirs),
            f"{peer_ratio(throughput[preset, stage, fastest], theirs)} ({fastest})"]
        rows.append(f"| {preset} | {stage} | {batch_sizes[preset, stage]} | "
                    f"{samples_per_second(throughput[preset, stage, reference])} | "
                    + " | ".join(cells + peer_cells) + " |")
        if preset == SPRING_MESH.preset:
            met[stage] = {f"{reference}": throughput[preset, stage, reference] / max(theirs) >= TRAINING_GOAL,
                          f"fastest ({fastest})": throughput[preset, stage, fastest] / max(theirs) >= TRAINING_GOAL}

    # Sampling as the authors timed it: 2 threads, then 1 thread for 16 x 20. Each forecast lasts seconds to
    # minutes, so the first one's one-time costs (oneDNN primitives) are negligible: no warm-up round.
    config, single, single_static = spring_mesh_case()
    pipeline = dyffusion_pipeline(config, SPRING_MESH)
    sixteen, sixteen_static = random_inputs(SPRING_MESH, 16)
    calls = {}
    for variant in (BASELINE, PROPOSED):
        candidate = variant_pipeline(pipeline, VARIANTS[variant][0])
        calls["1 x 50", variant] = lambda p=candidate: p.forecast(single, single_static, 50)
        calls["16 x 20", variant] = with_threads(1, lambda p=candidate: p.forecast(sixteen, sixteen_static, 20))
    sampling = interleaved(calls, args.sampling_repeats, warm_up=False)
    speeds = {key: PEER_SAMPLING[key[0]] / statistics.median(values) for key, values in sampling.items()}
    sampling_rows = ["| workload (initial conditions x members) | threads | networks | ours: seconds, median (range) | "
                     "authors' seconds | speed: theirs / ours |", "|---|---|---|---|---|---|"]
    sampling_rows += [f"| {workload} | {1 if workload == '16 x 20' else torch.get_num_threads()} | {variant} | "
                      f"{seconds(values)} | {PEER_SAMPLING[workload]:g} | {speeds[workload, variant]:.2f}x |"
                      for (workload, variant), values in sampling.items()]

    interpolator = pipeline.interpolator
    ours_flops = counted_flops(lambda: interpolator(single, single, torch.ones(1), single_static))
    theirs_flops = sum(2 * inputs * outputs * kernel**2 * np.prod(SPRING_MESH.grid) for inputs, outputs, kernel in PEER_CONVNET)
    lines = header("Training and sampling against the authors' implementation", load_before, [
        f"reference: the authors' figures in `{PEER}` (their code on a machine of the same kind, idle, medians); "
        "this compares against a reference, not side by side: the ratios carry this machine's load",
        f"training: per preset and stage, the real LightningModule's training_step, backward, gradient clipping "
        f"{config.trainer.gradient_clip:g} and AdamW on one batch of random windows (presets' batch sizes, "
        f"h = {config.data.horizon} and {NAVIER_STOKES.config.data.horizon}); variants: bfloat16 autocast around "
        "training_step (what `trainer.precision: bf16-mixed` does), weights in PyTorch's default NCHW memory format "
        "instead of src/'s channels-last, PyTorch's fused dropout (`nn.Dropout`) instead of src/'s masks; all "
        f"interleaved, medians of {args.repeats} steps after a warm-up round",
        f"sampling: `DYffusionPipeline.forecast` with the `{SPRING_MESH.preset}` preset ({network_text(config)}, all "
        f"{config.data.horizon} steps, cold, refine), untrained networks, as in src/ (float32, channels-last weights) "
        "and under bfloat16 autocast (`sampling.precision: bfloat16`); medians of "
        f"{args.sampling_repeats} interleaved repeats",
        f"arithmetic per network pass and sample (spring mesh, interpolator): ours {ours_flops / 1e6:.1f} MFLOP "
        f"(FlopCounterMode), theirs {theirs_flops / 1e6:.1f} MFLOP (counted from their layer shapes: the same layout, "
        f"a 9 x 9 input convolution 9 -> 64, then 7 x 7, 5 x 5, 3 x 3, a 1 x 1 head; ours adds the FiLM layers): "
        f"ours does {ours_flops / theirs_flops:.2f}x the arithmetic per pass",
        "Navier-Stokes: ours is the navier-stokes-cpu U-Net (width 32) on the 42 x 221 grid; theirs (0.9 "
        "samples/s) is the paper's 10.3 M-parameter U-Net on 256 x 256 at batch 32: different networks, shown "
        "for scale only",
    ]) + rows + ["", *sampling_rows]
    lines.append(
        f"\n**Training goal (>= {TRAINING_GOAL}x the authors' spring-mesh throughput, against their best figure)**: "
        + "; ".join(f"{stage}: " + ", ".join(f"{variant} {verdict(ok)}" for variant, ok in by_variant.items())
                    for stage, by_variant in met.items())
        + f". **Sampling goal (>= {SAMPLING_GOAL}x their speed)**: as in src/ "
        f"{verdict(all(speeds[workload, BASELINE] >= SAMPLING_GOAL for workload in PEER_SAMPLING))}, with "
        f"{PROPOSED} {verdict(all(speeds[workload, PROPOSED] >= SAMPLING_GOAL for workload in PEER_SAMPLING))}.\n")
    append(lines)


# --- layout: where channels-last weights pay -----------------------------------------------------------------


def run_layout(args: argparse.Namespace) -> None:
    """The forward pass of networks with more and more input and output channels, weights NCHW and channels-last,
    side by side: the evidence behind ``build_network``'s rule (channels-last up to 4 x width channels)."""
    load_before = load_average()
    config, width = SPRING_MESH.config, SPRING_MESH.config.baseline.network.width
    cases = {"DYffusion interpolator": (Interpolator(config.interpolator.network, SPRING_MESH.channels,
                                                     SPRING_MESH.static_channels), None)}
    for frames in args.frames:
        cases[f"DDPM frame stack, h = {frames}"] = (FrameStackDenoiser(
            config.baseline.network, SPRING_MESH.channels, SPRING_MESH.static_channels, frames), frames)
    rows = ["| network | input / output channels | layout build_network picks | NCHW ms, median (range) | "
            "channels-last ms, median (range) | channels-last speed-up (range of rounds) |", "|---|---|---|---|---|---|"]
    for name, (network, frames) in cases.items():
        convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
        picked = "channels-last" if convs[0].weight.is_contiguous(memory_format=torch.channels_last) else "NCHW"
        layouts = {layout: set_mc_dropout(copy.deepcopy(network).to(memory_format=layout), False)
                   for layout in (torch.contiguous_format, torch.channels_last)}
        initial, static = random_inputs(SPRING_MESH, args.batch)
        times = torch.full((args.batch,), 1.0)
        if frames is None:
            inputs = (initial, initial, times, static)
        else:
            inputs = (torch.randn(args.batch, frames * SPRING_MESH.channels, *SPRING_MESH.grid),
                      torch.cat([initial, static], dim=1), times)
        with torch.inference_mode():
            timings = interleaved({layout: lambda n=candidate: n(*inputs) for layout, candidate in layouts.items()},
                                  args.repeats)
        nchw, last = (timings[layout] for layout in (torch.contiguous_format, torch.channels_last))
        rows.append(f"| {name} | {convs[0].in_channels} / {convs[-1].out_channels} | {picked} | "
                    f"{seconds([1e3 * value for value in nchw])} | {seconds([1e3 * value for value in last])} | "
                    f"{speed_up(nchw, last)} |")
    append(header("Where channels-last weights pay: forward passes in both layouts", load_before, [
        f"networks: the `{SPRING_MESH.preset}` preset's ConvNet (width {width}, kernels "
        f"{'/'.join(map(str, config.baseline.network.kernel_sizes))}) as DYffusion's interpolator and as the DDPM "
        f"denoiser of h frames stacked on channels, batch {args.batch}, 10 x 10 grid, untrained, dropout off; "
        f"medians of {args.repeats} interleaved repeats after a warm-up round",
        f"`build_network` makes the weights channels-last when input and output have at most 4 x width "
        f"({4 * width}) channels",
    ]) + rows + [""])


# --- flops: where the time goes, and what makes it shorter ----------------------------------------------------


def deterministic_output(pipeline: DYffusionPipeline, grad_mode, initial: torch.Tensor,
                         static: torch.Tensor) -> torch.Tensor:
    """The sampler's forecasts with every dropout off, so that variants of one model can be compared."""
    for network in pipeline.modules:
        set_mc_dropout(network, False)
    with grad_mode():
        return pipeline.sample_chunk(initial, static, None)[1].detach().float()


def timed_calls(network: nn.Module, record: dict) -> list:
    """Hooks adding each forward pass's seconds and samples to ``record``; returns their handles."""

    def before(module, inputs):
        record["start"] = time.perf_counter()

    def after(module, inputs, output):
        record["seconds"] += time.perf_counter() - record["start"]
        record["samples"] += inputs[0].shape[0]

    return [network.register_forward_pre_hook(before), network.register_forward_hook(after)]


def dense_peaks(repeats: int) -> dict[str, float]:
    """GFLOP/s of large float32 matmuls and convolutions in this process (medians, interleaved)."""
    matrix = torch.randn(2048, 2048)
    images, kernel = torch.randn(16, 256, 32, 32), torch.randn(256, 256, 3, 3)
    padded, large_kernel = torch.randn(1000, 64, 18, 18), torch.randn(64, 64, 9, 9)
    work = {  # name -> (FLOPs, call)
        "matmul 2048^3": (2 * 2048**3, lambda: matrix @ matrix),
        "conv2d 256 -> 256, 3 x 3, 16 x 32 x 32": (2 * 256 * 256 * 9 * 16 * 32 * 32,
                                                  lambda: torch.conv2d(images, kernel, padding=1)),
        # The ConvNet's largest layer at the refinement's batch, unpadded: every tap is arithmetic.
        "conv2d 64 -> 64, 9 x 9, 1000 x 10 x 10, no padding": (2 * 64 * 64 * 81 * 1000 * 100,
                                                              lambda: torch.conv2d(padded, large_kernel)),
    }
    with torch.inference_mode():
        timings = interleaved({name: call for name, (_, call) in work.items()}, repeats)
    return {name: work[name][0] / statistics.median(values) / 1e9 for name, values in timings.items()}


FORWARD_VARIANTS = (BASELINE, "NCHW weights (PyTorch's default layout)", PROPOSED)


def forward_rows(repeats: int) -> list[str]:
    """Table rows: the interpolator's forward pass of both presets (dropout off) under the variants that keep the
    model, side by side; spring mesh at a cold step's batch of 50 members, Navier-Stokes at that of its 10."""
    rows = ["| preset | batch | variant | milliseconds, median (range) | speed-up (range of rounds) | max abs difference "
            "/ max abs output |", "|---|---|---|---|---|---|"]
    for system, batch in ((SPRING_MESH, 100), (NAVIER_STOKES, 20)):
        torch.manual_seed(0)
        network = set_mc_dropout(Interpolator(system.config.interpolator.network, system.channels,
                                              system.static_channels), False)
        initial, static = random_inputs(system, batch)
        times = torch.full((batch,), 1.0)
        changed = {name: VARIANTS[name][0](network) for name in FORWARD_VARIANTS}
        with torch.inference_mode():
            reference = network(initial, initial, times, static)
            differences = {name: float((candidate(initial, initial, times, static) - reference).abs().max()
                                       / reference.abs().max()) for name, candidate in changed.items()}
            timings = interleaved({name: lambda c=candidate: c(initial, initial, times, static)
                                   for name, candidate in changed.items()}, repeats)
        rows += [f"| {system.preset} | {batch} | {name} | {seconds([1e3 * value for value in values])} | "
                 f"{'-' if name == BASELINE else speed_up(timings[BASELINE], values)} | {differences[name]:.1e} |"
                 for name, values in timings.items()]
    return rows


def in_grid_share(kernel: int, size: int) -> float:
    """Share of a "same"-padded kernel's taps that land inside a grid dimension of ``size`` points."""
    half = kernel // 2
    return sum(min(size - 1, i + half) - max(0, i - half) + 1 for i in range(size)) / (kernel * size)


def padding_flops(network: nn.Module, grid: tuple[int, int]) -> float:
    """FLOPs per sample the stride-1 "same" convolutions spend on padding zeros: FlopCounterMode counts them,
    oneDNN's direct convolution skips them (on a 10 x 10 grid, 40 % of a 9 x 9 kernel's taps)."""
    wasted = 0.0
    for conv in (module for module in network.modules() if isinstance(module, nn.Conv2d)):
        (kernel_height, kernel_width), (height, width) = conv.kernel_size, grid
        full = 2 * conv.in_channels // conv.groups * conv.out_channels * kernel_height * kernel_width * height * width
        wasted += full * (1 - in_grid_share(kernel_height, height) * in_grid_share(kernel_width, width))
    return wasted


def achieved_rates(pipeline: DYffusionPipeline, initial, static, members: int, repeats: int) -> list[tuple]:
    """Per network: FLOPs per pass and sample (counted, and without the padding taps), samples per forecast,
    share of the forecast's time in its forward passes, and the GFLOP/s they reach (counted, in-grid)."""
    single, single_static = initial[:1], static[:1]
    networks = {"interpolator": (pipeline.interpolator,
                                 lambda: pipeline.interpolator(single, single, torch.ones(1), single_static)),
                "forecaster": (pipeline.forecaster, lambda: pipeline.forecaster(
                    single, torch.ones(1), single, torch.ones(1), single_static))}
    flops = {name: counted_flops(call) for name, (_, call) in networks.items()}
    in_grid = {name: flops[name] - padding_flops(network, SPRING_MESH.grid) for name, (network, _) in networks.items()}
    records = {name: {"seconds": 0.0, "samples": 0} for name in networks}
    handles = [handle for name, (network, _) in networks.items() for handle in timed_calls(network, records[name])]
    start = time.perf_counter()
    for _ in range(repeats):
        pipeline.forecast(initial, static, members)
    total = time.perf_counter() - start
    for handle in handles:
        handle.remove()
    return [(name, flops[name], in_grid[name], record["samples"] / repeats, record["seconds"] / total,
             flops[name] * record["samples"] / record["seconds"] / 1e9,
             in_grid[name] * record["samples"] / record["seconds"] / 1e9) for name, record in records.items()]


def profile_rows(pipeline: DYffusionPipeline, initial, static, members: int, top: int = 12) -> tuple[list[str], dict]:
    """Top ops of one forecast by self CPU time, and the shares of convolutions and of copies."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        pipeline.forecast(initial, static, members)
    events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    total = sum(event.self_cpu_time_total for event in events)
    rows = ["| op | calls | self CPU [s] | share |", "|---|---|---|---|"]
    rows += [f"| `{event.key}` | {event.count} | {event.self_cpu_time_total / 1e6:.2f} | "
             f"{event.self_cpu_time_total / total:.1%} |" for event in events[:top]]
    groups = {"convolution": ("conv", "mkldnn"), "copies (cat, repeat, copy, clone, stack, contiguous)":
              ("cat", "repeat", "copy", "clone", "stack", "contiguous")}
    shares = {group: sum(event.self_cpu_time_total for event in events
                         if any(word in event.key for word in words)) / total for group, words in groups.items()}
    return rows, shares


def crps_check(run_dir: Path, data_dir: Path, members: int) -> list[str]:
    """Mean CRPS, MSE and SSR of a trained run on its test split: float32 seeds 0 and 1 (the seed-to-seed
    spread) and bfloat16 autocast seed 0."""
    from dyffusion.data.splits import open_split
    from dyffusion.evaluation import evaluate, full_rollout
    from dyffusion.run import Run

    run = Run.load(run_dir)
    data = open_split(data_dir, "test", None, False)
    bf16 = Run(run.path, run.config, run.spec, {name: Bfloat16Autocast(m) for name, m in run.models.items()})
    cases = {"float32, seed 0": (run, 0), "float32, seed 1": (run, 1), "bfloat16 autocast, seed 0": (bf16, 0)}
    rows = ["| networks | CRPS | MSE | SSR |", "|---|---|---|---|"]
    for name, (model, seed) in cases.items():
        mean = evaluate(model, data, replace(run.config.sampling, members=members), full_rollout(run, data),
                        seed=seed, progress=False, keep_example=False).metrics["mean"]
        rows.append(f"| {name} | {mean['crps']:.5f} | {mean['mse']:.6f} | {mean['ssr']:.3f} |")
    return [f"\nCRPS check of bfloat16 on a trained run: `{run_dir}` ("
            f"h = {run.horizon}) on `{data_dir}/test.nc`, {members} members, whole trajectories:\n", *rows]


def run_flops(args: argparse.Namespace) -> None:
    load_before = load_average()
    config, initial, static = spring_mesh_case()
    pipeline = dyffusion_pipeline(config, SPRING_MESH)
    flat_initial, flat_static = initial.repeat(args.members, 1, 1, 1), static.repeat(args.members, 1, 1, 1)

    peaks = dense_peaks(args.repeats)
    peak = max(peaks.values())
    rates = achieved_rates(pipeline, initial, static, args.members, args.repeats)
    rate_rows = ["| network | MFLOP per pass and sample: counted / in-grid | samples per forecast | share of forecast "
                 "time | GFLOP/s: counted / in-grid | of the peak: counted / in-grid |", "|---|---|---|---|---|---|"]
    rate_rows += [f"| {name} | {flops / 1e6:.0f} / {in_grid / 1e6:.0f} | {samples:.0f} | {share:.0%} | {rate:.0f} / "
                  f"{in_grid_rate:.0f} | {rate / peak:.0%} / {in_grid_rate / peak:.0%} |"
                  for name, flops, in_grid, samples, share, rate, in_grid_rate in rates]
    profile, shares = profile_rows(pipeline, initial, static, args.members)

    pipelines, failures, differences, first_call = {}, {}, {}, {}
    reference = deterministic_output(pipeline, torch.inference_mode, flat_initial, flat_static)
    for name, (change, grad_mode) in VARIANTS.items():
        start = time.perf_counter()
        try:
            candidate = variant_pipeline(pipeline, change) if name != BASELINE else pipeline
            output = deterministic_output(candidate, grad_mode, flat_initial, flat_static)
        except Exception as error:  # torch.compile may fail on a machine without a working toolchain: report it
            failures[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            continue
        first_call[name] = time.perf_counter() - start  # torch.compile compiles here, for every batch size
        pipelines[name] = (candidate, grad_mode)
        differences[name] = float((output - reference).abs().max() / reference.abs().max())

    def sample(candidate: DYffusionPipeline, grad_mode) -> Callable[[], object]:
        def call():
            candidate.prepare()
            with grad_mode():
                return candidate.sample_chunk(flat_initial, flat_static, None)
        return call

    timings = interleaved({name: sample(*entry) for name, entry in pipelines.items()}, args.repeats)
    baseline = timings[BASELINE]
    variant_rows = ["| variant | seconds, median (range) | speed-up over src/ (range of rounds) | first forecast [s] "
                    "| max abs difference / max abs output, dropout off |", "|---|---|---|---|---|"]
    variant_rows += [f"| {name} | {seconds(values)} | {'-' if name == BASELINE else speed_up(baseline, values)} | "
                     f"{first_call[name]:.3g} | {differences[name]:.1e} |"
                     for name, values in timings.items()]
    variant_rows += [f"| {name} | failed: {message} | - | - | - |" for name, message in failures.items()]
    check = (crps_check(args.check_run, args.check_data, args.check_members) if args.check_run.exists()
             else [f"\nCRPS of bfloat16 not checked: no trained run at `{args.check_run}`."])

    lines = header("Where the time of a forecast goes, and what makes it shorter", load_before, [
        f"workload: DYffusion's forecast of one horizon, 1 initial condition x {args.members} members, preset "
        f"`{SPRING_MESH.preset}` ({network_text(config)}, h = {config.data.horizon}, {config.sampling.sampler} "
        f"sampler, all steps, refine), 10 x 10 grid, untrained networks",
        "dense peak of this process (medians of interleaved repeats): "
        + ", ".join(f"{name}: {rate:.0f} GFLOP/s" for name, rate in peaks.items()),
        f"FLOP/s during sampling: FLOPs per pass times the samples through each network, over the seconds inside "
        f"its forward passes, {args.repeats} forecasts; \"counted\": FlopCounterMode (convolutions and linear "
        "layers, every tap of the padded kernels), \"in-grid\": without the taps on the zero padding, which "
        "oneDNN's direct convolution skips (hence counted rates above the peak); the peak is the highest of the three",
    ]) + rate_rows + [
        f"\nProfile of one forecast (torch.profiler, CPU, top ops by self time): convolutions take "
        f"{shares['convolution']:.0%} of the self time, copies {shares['copies (cat, repeat, copy, clone, stack, contiguous)']:.1%}"
        " (an upper bound on what fewer copies could save).\n", *profile,
        f"\nVariants side by side: `sample_chunk` on the {args.members}-member flat batch, medians of {args.repeats} "
        "interleaved repeats after a warm-up round (which includes torch.compile's compilation); the difference "
        "column compares the forecasts of the same weights with dropout off (the exact variants must agree to "
        "float32 rounding); \"first forecast\" is that deterministic run, the first of each variant (torch.compile "
        "compiles then, once per batch size).\n", *variant_rows,
        f"\nThe interpolator's forward pass alone (dropout off, so the MC-dropout masks are not in these times), both "
        f"presets, medians of {3 * args.repeats} interleaved repeats:\n", *forward_rows(3 * args.repeats), *check, ""]
    append(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parts = parser.add_subparsers(dest="part", required=True)
    sampling = parts.add_parser("sampling", help="one forecast per method, side by side")
    sampling.add_argument("--repeats", type=int, default=5)
    sampling.add_argument("--members", type=int, default=50)
    training = parts.add_parser("training", help="training throughput and sampling time against the authors' figures")
    training.add_argument("--repeats", type=int, default=7)
    training.add_argument("--sampling-repeats", type=int, default=5)
    flops = parts.add_parser("flops", help="FLOP/s, profile and faster variants of a forecast")
    flops.add_argument("--repeats", type=int, default=5)
    flops.add_argument("--members", type=int, default=50)
    # Relative to the working directory where it can be, so that RESULTS.md names the run portably.
    paper = Path(os.path.relpath(Path(__file__).parent / "runs" / "paper"))
    flops.add_argument("--check-run", type=Path, default=paper / "runs" / "spring-mesh" / "dyffusion")
    flops.add_argument("--check-data", type=Path, default=paper / "data" / "spring-mesh")
    flops.add_argument("--check-members", type=int, default=10)
    layout = parts.add_parser("layout", help="forward passes with NCHW and channels-last weights, more channels")
    layout.add_argument("--frames", type=lambda text: [int(value) for value in text.split(",")], default=[16, 32, 64, 134])
    layout.add_argument("--batch", type=int, default=50)
    layout.add_argument("--repeats", type=int, default=15)
    goal = parts.add_parser("goal", help="time and CRPS of trained DYffusion settings against 1000-step DDPM/MCVD")
    goal.add_argument("--paper", type=Path, default=paper, help="output directory of benchmarks/paper.py")
    goal.add_argument("--members", type=int, default=50)
    goal.add_argument("--repeats", type=int, default=5)
    goal.add_argument("--full", action="store_true", help="score whole trajectories instead of one horizon")
    args = parser.parse_args()
    {"sampling": run_sampling, "training": run_training, "flops": run_flops, "goal": run_goal,
     "layout": run_layout}[args.part](args)


if __name__ == "__main__":
    main()
