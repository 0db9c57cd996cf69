"""Samplers driven by oracle networks of an analytic system must reproduce its exact trajectory."""

import math

import pytest
import torch

from dyffusion.sampling.sampler import sample_horizon
from dyffusion.schedule import StepSchedule, sampling_steps

OMEGA, DECAY, HORIZON = 0.7, 0.1, 6


def flow(x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
    """Exact solution operator of a damped rotation dx/dt = A x over ``time`` (B,); x is (B, 2, H, W)."""
    angle = OMEGA * time.reshape(-1, 1, 1)
    scale = torch.exp(-DECAY * time).reshape(-1, 1, 1)
    a, b = x[:, 0], x[:, 1]
    return torch.stack([scale * (torch.cos(angle) * a - torch.sin(angle) * b),
                        scale * (torch.sin(angle) * a + torch.cos(angle) * b)], dim=1)


def oracles(initial: torch.Tensor):
    """Exact I and F: on the true trajectory, I blends the flows from both ends, F flows to h."""

    def interpolate(end, time):
        start = initial.repeat(end.shape[0] // initial.shape[0], 1, 1, 1)
        weight = (time / HORIZON).reshape(-1, 1, 1, 1)
        return (1 - weight) * flow(start, time) + weight * flow(end, time - HORIZON)

    def forecast(state, time, progress):
        return flow(state, HORIZON - time)

    return interpolate, forecast


def truth(initial: torch.Tensor, times) -> torch.Tensor:
    return torch.stack([flow(initial, torch.full((initial.shape[0],), float(t), dtype=initial.dtype)) for t in times], dim=1)


@pytest.mark.parametrize("sampler", ["cold", "naive"])
@pytest.mark.parametrize("refine", [True, False])
@pytest.mark.parametrize("kind,extra", [("before_t1_only", 0), ("before_t1_only", 4), ("linear", 2)])
def test_oracle_sampling_reproduces_the_trajectory(sampler, refine, kind, extra):
    torch.manual_seed(0)
    initial = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    schedule = StepSchedule(HORIZON, kind, extra)
    interpolate, forecast = oracles(initial)
    lead_times, frames = sample_horizon(interpolate, forecast, initial, schedule, sampling_steps(schedule),
                                        sampler, refine)
    assert lead_times == [float(t) for t in range(1, HORIZON + 1)]
    assert frames.shape == (3, HORIZON, 2, 4, 5)
    torch.testing.assert_close(frames, truth(initial, lead_times), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("which", ["dynamical", "every:2", "first:1", [0, 0.5, 2.5, 4]])
def test_step_subsets_and_fractional_steps_stay_exact(which):
    initial = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    schedule = StepSchedule(HORIZON, "before_t1_only", 3)
    lead_times, frames = sample_horizon(*oracles(initial), initial, schedule, sampling_steps(schedule, which))
    torch.testing.assert_close(frames, truth(initial, lead_times), rtol=1e-10, atol=1e-10)


def test_continuous_times_come_from_the_interpolator():
    initial = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    schedule = StepSchedule(HORIZON)
    times = [0.25, 1.5, math.pi, 6]
    lead_times, frames = sample_horizon(*oracles(initial), initial, schedule, sampling_steps(schedule),
                                        output_times=times, max_batch=4)
    assert lead_times == times
    torch.testing.assert_close(frames, truth(initial, times), rtol=1e-10, atol=1e-10)


def test_cold_sampling_is_more_robust_than_naive_to_a_biased_forecaster():
    """Algorithm 2 corrects the state by the interpolator's own increment, so a constant forecaster
    error affects it less than the naive update, which trusts each new forecast completely."""
    initial = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    schedule = StepSchedule(HORIZON)
    interpolate, forecast = oracles(initial)
    biased = lambda state, time, progress: forecast(state, time, progress) + 0.05  # noqa: E731
    errors = {}
    for sampler in ("cold", "naive"):
        lead_times, frames = sample_horizon(interpolate, biased, initial, schedule, sampling_steps(schedule),
                                            sampler, refine=False)
        errors[sampler] = (frames[:, :-1] - truth(initial, lead_times)[:, :-1]).abs().mean()
    assert errors["cold"] < errors["naive"]


def test_requested_times_outside_the_horizon_are_refused():
    initial = torch.randn(1, 2, 2, 2)
    with pytest.raises(ValueError):
        sample_horizon(*oracles(initial), initial, StepSchedule(HORIZON), [0, 5], output_times=[7])
