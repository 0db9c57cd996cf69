"""DYffusion's reverse process over one horizon (the paper's Algorithms 1 and 2), as plain functions of two callables.

``interpolate(end, time)`` is ``I(x_t, end, time)`` with x_t and the static conditions already bound;
``forecast(state, time, progress)`` is ``F(state, time, cond)``. Both take and return (B, C, H, W) tensors
with ``time`` and ``progress`` of shape (B,); ``interpolate`` also takes a whole multiple of B samples
(copies stacked on the batch dim), which lets one network pass serve several times. Keeping the networks behind callables lets tests drive the
samplers with exact (oracle) functions of an analytic system.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from dyffusion.errors import ConfigError, UserError
from dyffusion.method.schedule import StepSchedule

SAMPLERS = ("cold", "naive", "heun")  # the reverse processes of sample_horizon

Interpolate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Forecast = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _full(value: float, like: torch.Tensor) -> torch.Tensor:
    return torch.full((like.shape[0],), float(value), dtype=like.dtype, device=like.device)


def sample_horizon(interpolate: Interpolate, forecast: Forecast, initial: torch.Tensor, schedule: StepSchedule,
                   steps: Sequence[float], sampler: str = "cold", refine: bool = True,
                   output_times: Sequence[float] | None = None, max_batch: int | None = None,
                   ) -> tuple[list[float], torch.Tensor]:
    """Forecast the lead times ``output_times`` (default 1..h) from ``initial`` (B, C, H, W).

    steps: increasing diffusion steps from 0 to the last step (see ``schedule.sampling_steps``), fractional
    allowed, so any increasing list of interpolation times can be visited.
    sampler: ``cold`` (Algorithm 2: the Euler method of the ODE dx/ds = d/ds I(x_t, F(x(s), s), s)), ``naive``
    (Algorithm 1) or ``heun`` (Heun's second-order method of the same ODE: the cold step predicts the state at
    the next time, a second forecast from there gives a second increment, and the state moves by the mean of
    the two; twice the network evaluations of ``cold`` per step).
    Returns (lead_times, forecasts (B, L, C, H, W)). Lead times the loop does not land on, and all times
    before h when ``refine`` is on, are re-predicted as ``I(x_t, final forecast, time)``.
    """
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    horizon = schedule.horizon
    output_times = [float(t) for t in (output_times if output_times is not None else range(1, horizon + 1))]
    for time in output_times:
        if not 0 < time <= horizon:
            raise UserError(f"requested time {time} outside (0, {horizon}]")
    times = [schedule.time_of(step) for step in steps]
    progress = [step / schedule.last_step for step in steps]
    batch = initial.shape[0]

    def increment(end: torch.Tensor, time: float, next_time: float, state: torch.Tensor) -> torch.Tensor:
        """I(x_t, end, next_time) - I(x_t, end, time), in one pass; at time 0, I(x_t, end, 0) = x_t = state."""
        if time == 0:
            return interpolate(end, _full(next_time, initial)) - state
        both = interpolate(torch.cat([end, end]), torch.cat([_full(time, initial), _full(next_time, initial)]))
        return both[batch:] - both[:batch]

    state, landed = initial, {}
    for j, time in enumerate(times):
        prediction = forecast(state, _full(time, initial), _full(progress[j], initial))
        if j == len(times) - 1:
            break
        next_time = times[j + 1]
        if sampler == "heun":
            first = increment(prediction, time, next_time, state)
            second_prediction = forecast(state + first, _full(next_time, initial), _full(progress[j + 1], initial))
            state = state + (first + increment(second_prediction, time, next_time, state)) / 2
        elif sampler == "cold" and j > 0:
            # One pass for both interpolations of the cold update: I(x_t, xh, i_s) and I(x_t, xh, i_s').
            both = interpolate(torch.cat([prediction, prediction]),
                               torch.cat([_full(time, initial), _full(next_time, initial)]))
            state = state - both[:batch] + both[batch:]
        else:
            # Naive update; and the cold update at s = 0, where x = x_t and I(x_t, xh, 0) = x_t cancel.
            state = interpolate(prediction, _full(next_time, initial))
        if float(next_time).is_integer():
            landed[next_time] = state

    missing = [t for t in output_times if t < horizon and (refine or t not in landed)]
    refined = dict(zip(missing, _interpolate_many(interpolate, prediction, missing, max_batch)))
    frames = [prediction if t == horizon else refined[t] if t in refined else landed[t] for t in output_times]
    return output_times, torch.stack(frames, dim=1)


def _interpolate_many(interpolate: Interpolate, end: torch.Tensor, times: list[float],
                      max_batch: int | None) -> list[torch.Tensor]:
    """``I(x_t, end, t)`` for each t, several times per network call but at most ``max_batch`` samples."""
    if not times:
        return []
    batch = end.shape[0]
    per_call = max(1, (max_batch or batch * len(times)) // batch)
    frames: list[torch.Tensor] = []
    for start in range(0, len(times), per_call):
        chunk = times[start : start + per_call]
        time = torch.cat([_full(t, end) for t in chunk])
        frames += list(interpolate(end.repeat(len(chunk), 1, 1, 1), time).split(batch))
    return frames
