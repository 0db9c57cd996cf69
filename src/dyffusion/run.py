"""A run directory: everything needed to forecast, and nothing that needs unpickling.

    RUN/config.yaml              the resolved ExperimentConfig
    RUN/data.json                channels, grid, time step, static names, boundary condition, normalisation
    RUN/interpolator.safetensors DYffusion: weights of stage 1
    RUN/forecaster.safetensors   DYffusion: stage 2; Perturbation/Dropout: G(x_t, j)
    RUN/denoiser.safetensors     DDPM/MCVD: the frame-stack denoiser
    RUN/training.json            what each stage spent and its best validation scores
    RUN/checkpoints/, RUN/logs/  Lightning checkpoints (for resuming) and training logs (CSV, or fit --logger's)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dyffusion.baselines.multistep import MultiStepForecaster, MultiStepPipeline
from dyffusion.baselines.video_diffusion import FrameStackDenoiser, VideoDiffusionPipeline, noise_schedule
from dyffusion.config import ExperimentConfig, read_config
from dyffusion.data.boundary import BoundaryCondition, build_boundary_condition
from dyffusion.data.contract import Channel, GriddedData, figure_view
from dyffusion.data.normalization import Normalizer
from dyffusion.errors import RunError
from dyffusion.method.forecaster import Forecaster
from dyffusion.method.interpolator import Interpolator
from dyffusion.io import load_weights
from dyffusion.ensemble import EnsemblePipeline
from dyffusion.method.pipeline import DYffusionPipeline
from dyffusion.method.schedule import StepSchedule


def build_models(config: ExperimentConfig, spec: DataSpec) -> dict[str, nn.Module]:
    """The method's networks by name; each is saved as ``RUN/<name>.safetensors``."""
    channels, static = spec.num_channels, spec.network_static_channels
    if config.method == "dyffusion":
        return {"interpolator": Interpolator(config.interpolator.network, channels, static),
                "forecaster": Forecaster(config.forecaster.network, channels, static, config.forecaster.conditioning)}
    if config.method in ("dropout", "perturbation"):
        return {"forecaster": MultiStepForecaster(config.baseline.network, channels, static)}
    return {"denoiser": FrameStackDenoiser(config.baseline.network, channels, static, config.data.horizon,
                                           config.baseline.denoiser_width)}


def read_run_description(path: Path) -> tuple[ExperimentConfig, DataSpec]:
    """The config and data description of the run directory ``path`` (RunError if it has none or they are not a
    run's); its weights need not be there yet."""
    if not path.is_dir():
        raise RunError(f"run directory {path} does not exist")
    for name in ("config.yaml", "data.json"):
        if not (path / name).exists():
            raise RunError(f"run directory {path} is incomplete: {name} is missing (did training finish?)")
    try:
        config = read_config(path / "config.yaml")
    except ValueError as error:  # names the file
        raise RunError(str(error)) from None
    try:
        spec = DataSpec.from_dict(json.loads((path / "data.json").read_text()))
    except (KeyError, TypeError, ValueError) as error:
        raise RunError(f"{path / 'data.json'}: not the data description a run writes ({type(error).__name__}: "
                       f"{error})") from None
    return config, spec


class Run:
    """A trained (or, for DYffusion, partly trained) model loaded from its directory."""

    def __init__(self, path: Path, config: ExperimentConfig, spec: DataSpec, models: dict[str, nn.Module]):
        self.path, self.config, self.spec, self.models = path, config, spec, models

    @property
    def horizon(self) -> int:
        return self.config.data.horizon

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def interpolator(self) -> Interpolator:
        return self.models["interpolator"]

    @property
    def forecaster(self) -> nn.Module:
        return self.models["forecaster"]

    @property
    def schedule(self) -> StepSchedule:
        return StepSchedule(self.horizon, self.config.forecaster.schedule, self.config.forecaster.extra_steps)

    @classmethod
    def load(cls, path: str | Path, need_forecaster: bool = True) -> "Run":
        """``need_forecaster=False`` accepts a DYffusion run whose stage 2 is not trained yet."""
        path = Path(path)
        config, spec = read_run_description(path)
        models = build_models(config, spec)
        for name, module in models.items():
            file = path / f"{name}.safetensors"
            if not file.exists():
                if name == "forecaster" and config.method == "dyffusion" and not need_forecaster:
                    continue
                raise RunError(f"run directory {path} is incomplete: {file.name} is missing (did training finish?)")
            try:
                load_weights(module, file)
            except ValueError as error:  # names the file and what is wrong with it
                raise RunError(str(error)) from None
        run = cls(path, config, spec, models)
        return run.to("cuda" if torch.cuda.is_available() else "cpu")

    def pipeline(self, sampler: str | None = None, steps=None, refine: bool | None = None,
                 max_batch: int | None = None, ddim_steps: int | None = None,
                 precision: str | None = None) -> EnsemblePipeline:
        """The method's sampler; ``sampler``, ``steps`` and ``refine`` are DYffusion's, ``ddim_steps`` DDPM/MCVD's."""
        sampling, baseline = self.config.sampling, self.config.baseline
        max_batch = max_batch or sampling.max_batch
        precision = precision or sampling.precision
        boundary = self.spec.boundary()
        if self.method == "dyffusion":
            return DYffusionPipeline(
                self.interpolator, self.forecaster, self.schedule, boundary,
                sampler=sampler or sampling.sampler, steps=steps if steps is not None else sampling.steps,
                refine=sampling.refine if refine is None else refine, max_batch=max_batch, precision=precision)
        if self.method in ("dropout", "perturbation"):
            scale = (baseline.perturbation_scale or 0.0) if self.method == "perturbation" else 0.0
            return MultiStepPipeline(self.forecaster, self.horizon, scale, self.method == "dropout", boundary, max_batch,
                                     precision)
        return VideoDiffusionPipeline(self.models["denoiser"], noise_schedule(baseline, self.method),
                                      ddim_steps or baseline.ddim_steps, boundary, max_batch, baseline.clip, precision)

    def to(self, device: str | torch.device) -> "Run":
        for module in self.models.values():
            module.to(device)
        return self
