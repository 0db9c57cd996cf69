"""DYffusion's ensembles: the two trained networks driven by the cold or naive sampler."""

from __future__ import annotations

from typing import Sequence

import torch

from dyffusion.data.boundary import BoundaryCondition, no_boundary_condition
from dyffusion.ensemble import EnsemblePipeline
from dyffusion.method.forecaster import Forecaster
from dyffusion.method.interpolator import Interpolator
from dyffusion.method.sampler import sample_horizon
from dyffusion.method.schedule import StepSchedule, sampling_steps
from dyffusion.networks import set_mc_dropout


class DYffusionPipeline(EnsemblePipeline):
    """The interpolator runs with MC dropout (fresh masks each call); the forecaster is deterministic unless
    ``forecaster_dropout``."""

    def __init__(self, interpolator: Interpolator, forecaster: Forecaster, schedule: StepSchedule,
                 boundary_condition: BoundaryCondition = no_boundary_condition, sampler: str = "cold",
                 steps: str | Sequence[float] = "all", refine: bool = True, max_batch: int = 1024,
                 forecaster_dropout: bool = False, precision: str = "float32"):
        super().__init__(schedule.horizon, boundary_condition, max_batch, precision)
        self.interpolator, self.forecaster, self.schedule = interpolator, forecaster, schedule
        self.sampler, self.refine = sampler, refine
        self.steps = sampling_steps(schedule, steps)
        self.forecaster_dropout = forecaster_dropout

    @property
    def modules(self):
        return [self.forecaster, self.interpolator]

    @property
    def sampling_steps(self) -> int:
        return len(self.steps)

    def prepare(self) -> None:
        set_mc_dropout(self.interpolator, True)
        set_mc_dropout(self.forecaster, self.forecaster_dropout)

    def sample_chunk(self, initial: torch.Tensor, static: torch.Tensor,
                     output_times: Sequence[float] | None) -> tuple[list[float], torch.Tensor]:
        batch = initial.shape[0]

        def interpolate(end: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            copies = end.shape[0] // batch
            return self.interpolator(initial.repeat(copies, 1, 1, 1), end, time, static.repeat(copies, 1, 1, 1))

        def forecast(state: torch.Tensor, time: torch.Tensor, progress: torch.Tensor) -> torch.Tensor:
            return self.forecaster(state, time, initial, progress, static)

        return sample_horizon(self._counted(interpolate, batch), self._counted(forecast, batch), initial,
                              self.schedule, self.steps, self.sampler, self.refine, output_times, self.max_batch)
