"""Samplers driven by oracle networks of an analytic system must reproduce its exact trajectory."""

import math

import pytest
import torch

from dyffusion.method.sampler import sample_horizon
from dyffusion.method.schedule import StepSchedule, sampling_steps

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


@pytest.mark.parametrize("sampler", ["cold", "naive", "heun"])
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


@pytest.mark.parametrize("sampler", ["cold", "heun"])
@pytest.mark.parametrize("which", ["dynamical", "every:2", "first:1", [0, 0.5, 2.5, 4]])
def test_step_subsets_and_fractional_steps_stay_exact(which, sampler):
    initial = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    schedule = StepSchedule(HORIZON, "before_t1_only", 3)
    lead_times, frames = sample_horizon(*oracles(initial), initial, schedule, sampling_steps(schedule, which),
                                        sampler)
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


def _ode_case():
    """The DYffusion ODE dx/ds = d/ds I(x_t, F(x(s), s), s) of a linear interpolator and the exact forecaster
    of the damped rotation: an interpolator that is not exact, so the ODE's solution bends and the samplers
    have a discretisation error (with an exact interpolator cold sampling is exact at any step count)."""
    torch.manual_seed(0)
    initial = torch.randn(2, 2, 3, 3, dtype=torch.float64)

    def interpolate(end, time):
        start = initial.repeat(end.shape[0] // initial.shape[0], 1, 1, 1)
        return start + (time / HORIZON).reshape(-1, 1, 1, 1) * (end - start)

    def forecast(state, time, progress):
        return flow(state, HORIZON - time)

    return initial, interpolate, forecast


def test_heun_is_second_order_and_cold_first_order_against_an_independent_ode_solver():
    """The state at s = h - 1 against scipy's RK45 at tolerance 1e-12 on dx/ds = (F(x, s) - x_t) / h: halving
    the step halves cold sampling's error (order 1, Euler) and quarters Heun's (order 2); at equal network
    evaluations (Heun with n steps against cold with 2n) Heun's error is smaller."""
    from scipy.integrate import solve_ivp

    initial, interpolate, forecast = _ode_case()
    shape, last_time = initial.shape, HORIZON - 1.0

    def slope(s, x):
        state = torch.from_numpy(x).reshape(shape)
        return ((forecast(state, torch.full((shape[0],), s, dtype=state.dtype), None) - initial) / HORIZON).ravel().numpy()

    reference = solve_ivp(slope, (0.0, last_time), initial.ravel().numpy(), rtol=1e-12, atol=1e-12).y[:, -1]
    schedule = StepSchedule(HORIZON)
    errors = {}
    for sampler in ("cold", "heun"):
        for intervals in (5, 10, 20, 40, 80):
            steps = [last_time * k / intervals for k in range(intervals + 1)]
            lead_times, frames = sample_horizon(interpolate, forecast, initial, schedule, steps, sampler, refine=False)
            state = frames[:, lead_times.index(last_time)].ravel().numpy()
            errors[sampler, intervals] = float(abs(state - reference).max())
    for intervals in (10, 20, 40):
        assert 1.8 < errors["cold", intervals] / errors["cold", 2 * intervals] < 2.2
        assert 3.6 < errors["heun", intervals] / errors["heun", 2 * intervals] < 4.4
        assert errors["heun", intervals] < errors["cold", 2 * intervals]


def test_heun_costs_twice_the_network_evaluations_of_cold_per_step():
    initial, interpolate, forecast = _ode_case()
    calls = {"interpolate": 0, "forecast": 0}

    def counted(function, name):
        def call(first, *rest):
            calls[name] += first.shape[0] // initial.shape[0]
            return function(first, *rest)
        return call

    schedule = StepSchedule(HORIZON)
    for sampler, expected in (("cold", (1 + 2 * 4, 6)), ("heun", (2 * (1 + 2 * 4), 6 + 5))):
        calls.update(interpolate=0, forecast=0)
        sample_horizon(counted(interpolate, "interpolate"), counted(forecast, "forecast"), initial, schedule,
                       sampling_steps(schedule), sampler, refine=False)
        assert (calls["interpolate"], calls["forecast"]) == expected, sampler
