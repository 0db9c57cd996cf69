"""The one table of methods: a method's name -> its networks, training stages, sampling pipeline and description.

Everything else (training, loading a run, ``info``, the evaluations) asks this table instead of branching on a
method's name. Adding a method is one entry in :data:`METHODS` plus its own module(s): a subclass of
:class:`Method` saying which networks it has, how each is trained (a Lightning module per stage) and how it
samples (an :class:`~dyffusion.ensemble.EnsemblePipeline`).

Stages are trained in order, each seeded with ``trainer.seed + its index`` (``Method.stages``); a stage's network
is saved as ``RUN/<stage>.safetensors``. After the last stage, the method's validation choices (``chooses``) are
made by :mod:`dyffusion.training.fit` on the validation split and kept in the run's config.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
from torch import nn

from dyffusion.baselines.multistep import MultiStepForecaster, MultiStepModule, MultiStepPipeline
from dyffusion.baselines.video_diffusion import (
    DEFAULT_SCHEDULES,
    FrameStackDenoiser,
    VideoDiffusionModule,
    VideoDiffusionPipeline,
    denoiser_width,
    noise_schedule,
)
from dyffusion.config import ExperimentConfig, SamplingConfig
from dyffusion.data.boundary import BoundaryCondition
from dyffusion.data.spec import DataSpec
from dyffusion.ensemble import EnsemblePipeline
from dyffusion.errors import ConfigError
from dyffusion.method.forecaster import Forecaster
from dyffusion.method.interpolator import Interpolator
from dyffusion.method.pipeline import DYffusionPipeline
from dyffusion.method.schedule import StepSchedule
from dyffusion.method.stages import ForecasterModule, InterpolatorModule
from dyffusion.networks import NetworkConfig


class Method:
    """What the library needs to know of a method. ``stages``: its networks in training order."""

    label: str
    description: str
    stages: tuple[str, ...]
    choices: tuple[str, ...] = ()  # every validation choice it can make (their entries in training.json)
    forecasts_between_steps: bool = False  # samples at real-valued lead times (evaluate --continuous)
    has_sampling_schedules: bool = False  # samplers and step subsets to compare (dyffusion frontier)

    def check(self, config: ExperimentConfig, spec: DataSpec | None = None) -> None:
        """Raise ConfigError for settings the method cannot train with (``spec``: once the data is known)."""

    def networks(self, config: ExperimentConfig, spec: DataSpec) -> dict[str, nn.Module]:
        """The untrained networks by stage name."""
        raise NotImplementedError

    def network_config(self, config: ExperimentConfig, stage: str) -> NetworkConfig:
        return config.baseline.network

    def stage_module(self, stage: str, config: ExperimentConfig, spec: DataSpec,
                     trained: dict[str, nn.Module]) -> tuple[pl.LightningModule, nn.Module]:
        """The Lightning module that trains ``stage`` and the network it saves; ``trained``: the earlier stages'."""
        raise NotImplementedError

    def batch_size(self, stage: str, config: ExperimentConfig) -> int:
        return config.baseline.batch_size

    def time_share(self, stage: str, config: ExperimentConfig) -> float | None:
        """The share of ``trainer.max_minutes`` the stage gets; None: what the earlier stages left."""
        return None

    def training_windows(self, stage: str, horizon: int) -> dict:
        """Options of the stage's training :class:`~dyffusion.data.windows.WindowDataset`."""
        return {}

    def chooses(self, config: ExperimentConfig) -> tuple[str, ...]:
        """The validation choices this config asks for, of ``choices``."""
        return self.choices

    def pipeline(self, models: dict[str, nn.Module], config: ExperimentConfig, sampling: SamplingConfig,
                 boundary: BoundaryCondition) -> EnsemblePipeline:
        raise NotImplementedError

    def sampling_summary(self, config: ExperimentConfig) -> dict:
        """How the method samples, for ``dyffusion info``."""
        return {"kind": f"one network call per lead time 1..{config.data.horizon}", "members": config.sampling.members}


class DYffusion(Method):
    label, stages = "DYffusion", ("interpolator", "forecaster")
    description = "the interpolator (stage 1), then the forecaster through the frozen interpolator (stage 2)"
    choices = ("sampling_steps",)
    forecasts_between_steps = has_sampling_schedules = True

    def check(self, config, spec=None):
        if config.data.horizon < 2:
            raise ConfigError(f"DYffusion needs data.horizon >= 2 (got {config.data.horizon}): its interpolator "
                              "learns the states between x_t and x_{t+h}, and h = 1 has none; the baselines accept "
                              "h = 1")

    def networks(self, config, spec):
        channels, static = spec.num_channels, spec.network_static_channels
        return {"interpolator": Interpolator(config.interpolator.network, channels, static),
                "forecaster": Forecaster(config.forecaster.network, channels, static, config.forecaster.conditioning)}

    def network_config(self, config, stage):
        return getattr(config, stage).network

    def stage_module(self, stage, config, spec, trained):
        channels, static, horizon = spec.num_channels, spec.network_static_channels, config.data.horizon
        if stage == "interpolator":
            module = InterpolatorModule(config.interpolator, channels, static, horizon)
            return module, module.interpolator
        module = ForecasterModule(config.forecaster, config.sampling, trained["interpolator"], channels, static,
                                  horizon)
        return module, module.forecaster

    def batch_size(self, stage, config):
        return getattr(config, stage).batch_size

    def time_share(self, stage, config):
        return config.interpolator.time_share if stage == "interpolator" else None

    def training_windows(self, stage, horizon):
        # Stage 1 learns the states strictly inside the horizon (Eq. 2); stage 2 the whole window.
        return {"target_range": (1, horizon - 1)} if stage == "interpolator" else {}

    def chooses(self, config):
        return self.choices if config.sampling.choose_steps else ()

    def pipeline(self, models, config, sampling, boundary):
        schedule = StepSchedule(config.data.horizon, config.forecaster.schedule, config.forecaster.extra_steps)
        return DYffusionPipeline(models["interpolator"], models["forecaster"], schedule, boundary,
                                 sampler=sampling.sampler, steps=sampling.steps, refine=sampling.refine,
                                 max_batch=sampling.max_batch, precision=sampling.precision)

    def sampling_summary(self, config):
        forecaster, sampling = config.forecaster, config.sampling
        steps = StepSchedule(config.data.horizon, forecaster.schedule, forecaster.extra_steps).num_steps
        return {"kind": forecaster.schedule, "extra_steps": forecaster.extra_steps, "diffusion_steps": steps,
                "sampler": sampling.sampler, "sampling_steps": sampling.steps, "refine": sampling.refine,
                "members": sampling.members}


@dataclass
class MultiStep(Method):
    """One time-conditioned forecaster G(x_t, j) -> x_{t+j}, j in 1..h; an ensemble from MC dropout or from
    Gaussian noise on x_t (the paper's Dropout and Perturbation baselines)."""

    label: str
    mc_dropout: bool
    description: str
    stages = ("forecaster",)

    @property
    def choices(self):
        return () if self.mc_dropout else ("perturbation",)

    def networks(self, config, spec):
        return {"forecaster": MultiStepForecaster(config.baseline.network, spec.num_channels,
                                                  spec.network_static_channels)}

    def stage_module(self, stage, config, spec, trained):
        module = MultiStepModule(config.baseline, spec.num_channels, spec.network_static_channels,
                                 config.data.horizon, mc_dropout=self.mc_dropout)
        return module, module.model

    def training_windows(self, stage, horizon):
        return {"target_range": (1, horizon)}

    def pipeline(self, models, config, sampling, boundary):
        scale = 0.0 if self.mc_dropout else (config.baseline.perturbation_scale or 0.0)
        return MultiStepPipeline(models["forecaster"], config.data.horizon, scale, self.mc_dropout, boundary,
                                 sampling.max_batch, sampling.precision)

    def sampling_summary(self, config):
        scale = {} if self.mc_dropout else {"perturbation_scale": config.baseline.perturbation_scale}
        return {**super().sampling_summary(config), **scale}


@dataclass
class VideoDiffusion(Method):
    """Gaussian diffusion over the h future frames stacked on channels (the paper's DDPM and MCVD baselines);
    ``schedule_name``: its key in DEFAULT_SCHEDULES."""

    label: str
    schedule_name: str
    description: str
    stages = ("denoiser",)

    def check(self, config, spec=None):
        super().check(config, spec)
        if spec is not None:  # a denoiser too narrow for its outputs is refused before any file is written
            denoiser_width(config.baseline.network, config.data.horizon * spec.num_channels,
                           config.baseline.denoiser_width)

    def networks(self, config, spec):
        return {"denoiser": FrameStackDenoiser(config.baseline.network, spec.num_channels,
                                               spec.network_static_channels, config.data.horizon,
                                               config.baseline.denoiser_width)}

    def stage_module(self, stage, config, spec, trained):
        module = VideoDiffusionModule(config.baseline, self.schedule_name, spec.num_channels,
                                      spec.network_static_channels, config.data.horizon)
        return module, module.model

    def training_windows(self, stage, horizon):
        return {"with_window": True}

    def pipeline(self, models, config, sampling, boundary):
        baseline = config.baseline
        return VideoDiffusionPipeline(models["denoiser"], noise_schedule(baseline, self.schedule_name),
                                      sampling.ddim_steps, boundary, sampling.max_batch,
                                      baseline.clip, sampling.precision)

    def sampling_summary(self, config):
        baseline = config.baseline
        return {"kind": baseline.noise_schedule or DEFAULT_SCHEDULES[self.schedule_name],
                "diffusion_steps": baseline.diffusion_steps, "ddim_steps": config.sampling.ddim_steps,
                "members": config.sampling.members}


METHODS: dict[str, Method] = {
    "dyffusion": DYffusion(),
    "dropout": MultiStep("Dropout", True, "one multi-step forecaster, an ensemble by MC dropout"),
    "perturbation": MultiStep("Perturbation", False, "one multi-step forecaster, an ensemble by Gaussian noise on "
                                                     "the initial condition (its scale chosen on validation)"),
    "ddpm": VideoDiffusion("DDPM", "ddpm", "Gaussian diffusion over the stacked future frames, cosine schedule"),
    "mcvd": VideoDiffusion("MCVD", "mcvd", "Gaussian diffusion over the stacked future frames, linear schedule"),
}


def method_of(config: ExperimentConfig) -> Method:
    """The table's entry for ``config.method`` (ConfigError for a name it does not hold)."""
    if config.method not in METHODS:
        raise ConfigError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[config.method]
