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
from dyffusion.forecaster.model import Forecaster
from dyffusion.interpolator.model import Interpolator
from dyffusion.io import load_weights
from dyffusion.sampling.ensemble import EnsemblePipeline
from dyffusion.sampling.pipeline import DYffusionPipeline
from dyffusion.schedule import StepSchedule


@dataclass
class DataSpec:
    """What a trained model knows of its data (stored as ``data.json``)."""

    channels: list[Channel]
    static_names: list[str]
    spatial_dims: tuple[str, str]
    grid_shape: tuple[int, int]
    time_stride: int
    time_step: float  # of the strided data, in the units of the time coordinate (seconds for datetimes)
    normalizer: Normalizer
    boundary_condition: str | None = None
    boundary_mask: str | None = None
    masked: bool = False  # the data has invariant-NaN points; their mask is an extra static channel
    boundary_parameters: dict = field(default_factory=dict)  # from the data attrs dyffusion_inflow_* (no prefix)
    view: str | None = None  # the system-aware figure (data attribute dyffusion_view) and its two channels
    view_channels: list[str] = field(default_factory=list)

    @classmethod
    def from_data(cls, data: GriddedData, normalizer: Normalizer, time_stride: int) -> "DataSpec":
        """``data`` is already subsampled by ``time_stride``."""
        steps = np.diff(data.time[:2])
        step = steps[0] / np.timedelta64(1, "s") if np.issubdtype(data.time.dtype, np.datetime64) else float(steps[0])
        return cls(data.channels, data.static_names, data.spatial_dims, data.grid_shape, time_stride,
                   float(step), normalizer, data.attrs.get("dyffusion_boundary_condition"),
                   data.attrs.get("dyffusion_boundary_mask"), data.valid is not None,
                   {key.removeprefix("dyffusion_"): _plain(value) for key, value in data.attrs.items()
                    if key.startswith("dyffusion_inflow_")},
                   *figure_view(data.attrs, data.channel_names, data.source))

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def network_static_channels(self) -> int:
        return len(self.static_names) + int(self.masked)

    def check(self, data: GriddedData) -> None:
        """Raise RunError unless ``data`` has the channels, static variables and grid the model was trained on."""
        problems = []
        if data.channel_names != [c.name for c in self.channels]:
            problems.append(f"channels {data.channel_names} instead of {[c.name for c in self.channels]}")
        if data.static_names != self.static_names:
            problems.append(f"static variables {data.static_names} instead of {self.static_names}")
        if tuple(data.grid_shape) != tuple(self.grid_shape):
            problems.append(f"grid {tuple(data.grid_shape)} instead of {tuple(self.grid_shape)}")
        if problems:
            raise RunError(f"{data.source} does not fit this run: " + "; ".join(problems))

    def network_static(self, data: GriddedData) -> np.ndarray:
        """(trajectories, S', H, W): the static conditions plus the validity mask when the data is masked."""
        if not self.masked:
            return data.static
        valid = data.valid if data.valid is not None else np.ones((data.num_trajectories, *data.grid_shape), bool)
        return np.concatenate([data.static, valid[:, None].astype(np.float32)], axis=1)

    def boundary(self) -> BoundaryCondition:
        return build_boundary_condition(self.boundary_condition, self.static_names, self.boundary_mask,
                                        channel_names=[c.name for c in self.channels], normalizer=self.normalizer,
                                        time_step=self.time_step, parameters=self.boundary_parameters)

    def to_dict(self) -> dict:
        return {
            "channels": [asdict(c) for c in self.channels], "static_names": self.static_names,
            "spatial_dims": list(self.spatial_dims), "grid_shape": list(self.grid_shape),
            "time_stride": self.time_stride, "time_step": self.time_step, "normalizer": self.normalizer.to_dict(),
            "boundary_condition": self.boundary_condition, "boundary_mask": self.boundary_mask, "masked": self.masked,
            "boundary_parameters": self.boundary_parameters, "view": self.view, "view_channels": self.view_channels,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "DataSpec":
        return cls([Channel(**c) for c in values["channels"]], list(values["static_names"]),
                   tuple(values["spatial_dims"]), tuple(values["grid_shape"]), int(values["time_stride"]),
                   float(values["time_step"]), Normalizer.from_dict(values["normalizer"]),
                   values.get("boundary_condition"), values.get("boundary_mask"), bool(values.get("masked", False)),
                   dict(values.get("boundary_parameters") or {}), values.get("view"),
                   list(values.get("view_channels") or []))


def _plain(value):
    """A netCDF attribute value as a JSON-friendly float (or string)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


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
