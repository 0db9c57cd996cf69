"""Diffusion steps -> interpolation times, and the subsets of steps a sampler visits.

DYffusion's diffusion step ``n = 0..N-1`` stands for the interpolation time ``i_n`` in ``[0, h)``:
the forecaster sees ``i_n`` and the interpolator moves the state to ``i_n``. Steps with an integer
time are real lead times ("dynamical"); the others are "artificial" refinements between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from dyffusion.errors import ConfigError, UserError

SCHEDULE_KINDS = ("before_t1_only", "linear")


@dataclass(frozen=True)
class StepSchedule:
    """The step -> time map of the paper's forward process (diffusion step n <-> interpolation time i_n).

    kind: ``before_t1_only`` puts ``extra_steps`` (k) fractional times in ``[0, 1)``;
          ``linear`` puts ``extra_steps`` (f) fractional times between every pair of integers.
    """

    horizon: int
    kind: str = "before_t1_only"
    extra_steps: int = 0

    def __post_init__(self) -> None:
        if self.horizon < 2:
            raise ConfigError(f"horizon must be at least 2 (got {self.horizon}): DYffusion interpolates inside it")
        if self.kind not in SCHEDULE_KINDS:
            raise ConfigError(f"unknown schedule kind {self.kind!r}; choose one of {SCHEDULE_KINDS}")
        if self.extra_steps < 0:
            raise ConfigError(f"extra_steps must be >= 0 (got {self.extra_steps})")

    @property
    def num_steps(self) -> int:
        """N, the number of diffusion steps."""
        if self.kind == "before_t1_only":
            return self.horizon + self.extra_steps
        return self.horizon + self.extra_steps * (self.horizon - 1)

    @property
    def last_step(self) -> int:
        return self.num_steps - 1

    def time_of_step(self, step: int) -> float:
        """``i_n`` for an integer step ``n``."""
        if not 0 <= step < self.num_steps:
            raise ValueError(f"step {step} outside 0..{self.num_steps - 1}")
        k = self.extra_steps
        if self.kind == "before_t1_only":
            return step / (k + 1) if step <= k else float(step - k)
        return step / (k + 1)

    @property
    def times(self) -> torch.Tensor:
        """``(N,)`` float32 tensor of ``i_n``."""
        return torch.tensor([self.time_of_step(n) for n in range(self.num_steps)], dtype=torch.float32)

    def time_of(self, step: float) -> float:
        """Time of a possibly fractional step, linear between neighbouring integer steps."""
        if not 0 <= step <= self.last_step:
            raise ValueError(f"step {step} outside [0, {self.last_step}]")
        lower = min(int(math.floor(step)), self.last_step - 1)
        fraction = step - lower
        return (1 - fraction) * self.time_of_step(lower) + fraction * self.time_of_step(lower + 1)

    def is_dynamical(self, step: float) -> bool:
        """True when the step's time is a whole number of data time steps."""
        return float(self.time_of(step)).is_integer()

    @property
    def dynamical_steps(self) -> list[int]:
        return [n for n in range(self.num_steps) if self.is_dynamical(n)]

    @property
    def artificial_steps(self) -> list[int]:
        return [n for n in range(self.num_steps) if not self.is_dynamical(n)]


def sampling_steps(schedule: StepSchedule, which: str | Sequence[float] = "all") -> list[float]:
    """The increasing list of diffusion steps a sampler visits, always from 0 to the last step.

    which: ``"all"``; ``"dynamical"`` (only integer times); ``"every:m"`` (dynamical steps plus every
    m-th artificial step); ``"first:m"`` (dynamical plus the first m artificial steps); or an explicit
    list of steps, fractional allowed (0 and the last step are added if missing).
    """
    if isinstance(which, str):
        mode, _, argument = which.partition(":")
        artificial = schedule.artificial_steps
        if mode == "all":
            chosen: list[float] = list(range(schedule.num_steps))
        elif mode == "dynamical":
            chosen = list(schedule.dynamical_steps)
        elif mode in ("every", "first"):
            if not argument.isdigit() or int(argument) < 1:
                raise UserError(f"{which!r}: expected {mode}:m with a whole number m >= 1")
            m = int(argument)
            extra = artificial[m - 1 :: m] if mode == "every" else artificial[:m]
            chosen = list(schedule.dynamical_steps) + list(extra)
        else:
            raise UserError(
                f"unknown sampling steps {which!r}; use all, dynamical, every:m, first:m or a list of steps"
            )
    else:
        chosen = [float(s) for s in which]
        for step in chosen:
            if not 0 <= step <= schedule.last_step:
                raise UserError(f"sampling step {step} outside [0, {schedule.last_step}]")
    return sorted(set(chosen) | {0, schedule.last_step})


def parse_steps(text: str) -> str | list[float]:
    """CLI form of :func:`sampling_steps`: a mode name or a comma-separated list of steps."""
    text = text.strip()
    if "," in text or text.replace(".", "", 1).isdigit():
        return [float(part) for part in text.split(",") if part.strip()]
    return text
