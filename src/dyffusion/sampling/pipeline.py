"""Ensembles and long rollouts from trained networks: the glue between models, sampler and boundaries."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from dyffusion.data.boundary import BoundaryCondition, no_boundary_condition
from dyffusion.forecaster.model import Forecaster
from dyffusion.interpolator.model import Interpolator
from dyffusion.networks import set_mc_dropout
from dyffusion.sampling.sampler import sample_horizon
from dyffusion.schedule import StepSchedule, sampling_steps


class DYffusionPipeline:
    """Samples ensembles in normalised space.

    The interpolator runs with MC dropout (fresh masks each call); the forecaster is deterministic unless
    ``forecaster_dropout``. ``max_batch`` bounds the samples per network call, so memory does not grow with
    the ensemble size. ``network_evaluations`` counts network calls per forecast sample (one sample =
    one initial condition x one member x one horizon).
    """

    def __init__(self, interpolator: Interpolator, forecaster: Forecaster, schedule: StepSchedule,
                 boundary_condition: BoundaryCondition = no_boundary_condition, sampler: str = "cold",
                 steps: str | Sequence[float] = "all", refine: bool = True, max_batch: int = 1024,
                 forecaster_dropout: bool = False):
        self.interpolator, self.forecaster, self.schedule = interpolator, forecaster, schedule
        self.boundary_condition = boundary_condition
        self.sampler, self.refine, self.max_batch = sampler, refine, max_batch
        self.steps = sampling_steps(schedule, steps)
        self.forecaster_dropout = forecaster_dropout
        self.network_evaluations = 0.0

    @property
    def horizon(self) -> int:
        return self.schedule.horizon

    def _counted(self, function, samples_per_forecast: int):
        def call(*args):
            self.network_evaluations += args[0].shape[0] / samples_per_forecast
            return function(*args)

        return call

    def _sample_chunk(self, initial: torch.Tensor, static: torch.Tensor,
                      output_times: Sequence[float] | None) -> tuple[list[float], torch.Tensor]:
        """One horizon for a flat batch (B, C, H, W) -> (lead_times, (B, L, C, H, W))."""
        batch = initial.shape[0]

        def interpolate(end: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            copies = end.shape[0] // batch
            return self.interpolator(initial.repeat(copies, 1, 1, 1), end, time, static.repeat(copies, 1, 1, 1))

        def forecast(state: torch.Tensor, time: torch.Tensor, progress: torch.Tensor) -> torch.Tensor:
            return self.forecaster(state, time, initial, progress, static)

        return sample_horizon(self._counted(interpolate, batch), self._counted(forecast, batch), initial,
                              self.schedule, self.steps, self.sampler, self.refine, output_times, self.max_batch)

    @torch.inference_mode()
    def forecast(self, initial: torch.Tensor, static: torch.Tensor, members: int,
                 output_times: Sequence[float] | None = None) -> tuple[list[float], torch.Tensor]:
        """Ensemble over one horizon: initial (B, C, H, W), static (B, S, H, W) -> (lead_times, (M, B, L, C, H, W))."""
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        set_mc_dropout(self.interpolator, True)
        set_mc_dropout(self.forecaster, self.forecaster_dropout)
        batch = initial.shape[0]
        device = next(self.forecaster.parameters()).device  # inputs follow the model; outputs come back
        flat_initial = initial.to(device).repeat(members, 1, 1, 1)  # member-major: row m * B + b
        flat_static = static.to(device).repeat(members, 1, 1, 1)
        rows = max(1, self.max_batch)
        lead_times, outputs = None, []
        self.network_evaluations = 0.0
        for start in range(0, flat_initial.shape[0], rows):
            chunk_initial = flat_initial[start : start + rows]
            chunk_static = flat_static[start : start + rows]
            lead_times, frames = self._sample_chunk(chunk_initial, chunk_static, output_times)
            outputs.append(self.boundary_condition(frames, chunk_initial, chunk_static).to(initial.device))
        # Each chunk counted its calls per own sample; average them over the chunks.
        self.network_evaluations /= len(outputs)
        frames = torch.cat(outputs)
        return lead_times, frames.reshape(members, batch, *frames.shape[1:])

    def rollout(self, initial: torch.Tensor, static: torch.Tensor, members: int,
                num_lead_times: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Autoregressive ensemble rollout to ``num_lead_times`` data steps, one horizon at a time.

        Yields (lead_times, frames (M, B, L, C, H, W)) per chunk; each member's forecast at t + h becomes
        its own next initial condition (after the boundary condition).
        """
        batch = initial.shape[0]
        states = initial.repeat(members, 1, 1, 1)
        flat_static = static.repeat(members, 1, 1, 1)
        done = 0
        while done < num_lead_times:
            lead_times, frames = self.forecast(states, flat_static, 1)
            count = min(self.horizon, num_lead_times - done)
            frames = frames[0, :, :count]  # (M * B, L, C, H, W)
            yield ([done + int(t) for t in lead_times[:count]],
                   frames.reshape(members, batch, *frames.shape[1:]))
            states = frames[:, -1]
            done += count
