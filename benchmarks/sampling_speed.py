"""Side-by-side sampling timings: our cold sampler against an unbatched version of the same algorithm.

    python benchmarks/sampling_speed.py [--repeats 7] [--members 50] [--horizon 134]

Both variants run the same networks (the paper's spring-mesh ConvNet, width 64, kernels 9/7/5/3, on the
10 x 10 grid) for one initial condition and ``members`` members over one horizon, all steps, refine on.
The baseline makes the two interpolator calls of each cold step separately, as a direct reading of
Algorithm 2 does; ours stacks them into one pass. Timings interleave the variants and report medians and
their ratio; the machine's dense matmul rate is measured in the same process for scale.
Appends a section to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone

import torch
from results import append, machine

from dyffusion.method.forecaster import Forecaster
from dyffusion.method.interpolator import Interpolator
from dyffusion.method.sampler import sample_horizon
from dyffusion.method.schedule import StepSchedule, sampling_steps
from dyffusion.networks import NetworkConfig, set_mc_dropout


def unbatched_cold(interpolate, forecast, initial, schedule, steps):
    """Algorithm 2 read literally: two interpolator calls per step, then the refinement calls one by one."""
    times = [schedule.time_of(s) for s in steps]
    full = lambda value: torch.full((initial.shape[0],), float(value))  # noqa: E731
    state = initial
    for j, time_now in enumerate(times):
        prediction = forecast(state, full(time_now), full(steps[j] / schedule.last_step))
        if j == len(times) - 1:
            break
        if j == 0:
            state = interpolate(prediction, full(times[1]))
        else:
            state = state - interpolate(prediction, full(time_now)) + interpolate(prediction, full(times[j + 1]))
    return [interpolate(prediction, full(t)) for t in range(1, schedule.horizon)] + [prediction]


def counted_flops(function) -> int:
    """Floating-point operations of one call, counted by PyTorch's FLOP counter (convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        function()
    return counter.get_total_flops()


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(size, size)
    a @ a
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        timings.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(timings) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=134)
    args = parser.parse_args()

    torch.manual_seed(0)
    network = NetworkConfig(name="convnet", width=64, kernel_sizes=(9, 7, 5, 3), dropout=0.15)
    interpolator = set_mc_dropout(Interpolator(network, channels=4, static_channels=1), True)
    forecaster = set_mc_dropout(Forecaster(NetworkConfig(), channels=4, static_channels=1), False)
    schedule = StepSchedule(args.horizon)
    steps = sampling_steps(schedule)
    initial = torch.randn(args.members, 4, 10, 10)
    static = torch.zeros(args.members, 1, 10, 10)

    def interpolate(end, time):
        copies = end.shape[0] // initial.shape[0]
        return interpolator(initial.repeat(copies, 1, 1, 1), end, time, static.repeat(copies, 1, 1, 1))

    def forecast(state, time, progress):
        return forecaster(state, time, initial, progress, static)

    variants = {
        "ours (batched cold step, inference mode)": lambda: sample_horizon(
            interpolate, forecast, initial, schedule, steps, "cold", True, max_batch=1024),
        "unbatched Algorithm 2 (no_grad)": lambda: unbatched_cold(interpolate, forecast, initial, schedule, steps),
    }
    timings = {name: [] for name in variants}
    for repeat in range(args.repeats + 1):
        for name, run in variants.items():
            context = torch.inference_mode() if name.startswith("ours") else torch.no_grad()
            with context:
                start = time.perf_counter()
                run()
                elapsed = time.perf_counter() - start
            if repeat > 0:  # the first round warms up
                timings[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    ours, baseline = medians.values()
    peak = matmul_gflops()
    achieved = counted_flops(variants["ours (batched cold step, inference mode)"]) / ours / 1e9

    command = "python benchmarks/sampling_speed.py " + " ".join(sys.argv[1:])
    lines = [
        f"\n## Sampling speed: batched cold step vs unbatched ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)\n",
        f"- command: `{command.strip()}`",
        f"- machine: {machine()}; "
        f"dense matmul in the same process: {peak:.0f} GFLOP/s",
        f"- workload: 1 initial condition x {args.members} members, h = {args.horizon}, all {len(steps)} steps, "
        f"refine on; spring-mesh ConvNet (width 64, kernels 9/7/5/3); medians of {args.repeats} interleaved repeats\n",
        "| variant | median [s] | runs |", "|---|---|---|",
    ]
    lines += [f"| {name} | {medians[name]:.2f} | {', '.join(f'{t:.2f}' for t in timings[name])} |" for name in variants]
    lines.append(f"\n**Speed-up of ours over the unbatched baseline: {baseline / ours:.2f}x** (ratio of medians). "
                 f"Ours reaches {achieved:.0f} GFLOP/s in convolutions and matmuls, {achieved / peak:.0%} of the "
                 "dense matmul rate measured in the same process.\n")
    append(lines)


if __name__ == "__main__":
    main()
