"""The DDPM and MCVD-style baselines: Gaussian diffusion over the h future frames stacked on channels.

The denoiser sees the noisy stack, the initial condition and the static channels concatenated, and the
diffusion step as its time input. Training touches all h + 1 frames of a window, so its memory grows with
h: the contrast with DYffusion the paper draws.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import lightning.pytorch as pl
import torch
from torch import nn

from dyffusion.baselines.gaussian_diffusion import NoiseSchedule, ancestral_sample, ddim_sample, diffusion_loss
from dyffusion.config import BaselineConfig
from dyffusion.data.boundary import BoundaryCondition, no_boundary_condition
from dyffusion.distributed import log_validation_scores
from dyffusion.ensemble import EnsemblePipeline, ensemble_crps
from dyffusion.errors import ConfigError, UserError
from dyffusion.networks import NetworkConfig, build_network, set_mc_dropout

DEFAULT_SCHEDULES = {"ddpm": "cosine", "mcvd": "linear"}


def noise_schedule(config: BaselineConfig, method: str) -> NoiseSchedule:
    return NoiseSchedule.named(config.noise_schedule or DEFAULT_SCHEDULES[method], config.diffusion_steps)


def denoiser_width(network: NetworkConfig, outputs: int, width: int | None = None) -> int:
    """Hidden width of a frame-stack denoiser with ``outputs`` = h x C channels: ``width`` when given (refused when
    narrower than the outputs), else the backbone's width raised to ``outputs``.

    The predicted noise of every pixel is read linearly from the last hidden features (the backbone's head), so it
    spans at most ``width`` of the ``outputs`` directions; in the others DDIM takes the noise for signal and divides
    it by sqrt(abar), which puts samples on the clip (DDPM, Ho et al. 2020, eq. 11 needs the whole noise).
    """
    if width is None:
        return max(network.width, outputs)
    if width < outputs:
        raise ConfigError(f"baseline.denoiser_width {width} is narrower than the {outputs} channels the denoiser "
                          f"predicts (horizon x channels); give at least {outputs}, or leave it unset to size it")
    return width


class FrameStackDenoiser(nn.Module):
    """forward(noisy (B, h*C, H, W), condition (B, C+S, H, W), step (B,)) -> predicted noise (B, h*C, H, W)

    The backbone ``network`` with its width sized by :func:`denoiser_width` (``width`` as given there).
    """

    def __init__(self, network: NetworkConfig, channels: int, static_channels: int, horizon: int,
                 width: int | None = None):
        super().__init__()
        self.horizon, self.channels = horizon, channels
        outputs = horizon * channels
        network = replace(network, width=denoiser_width(network, outputs, width))
        self.network = build_network(network, outputs + channels + static_channels, outputs)

    def forward(self, noisy: torch.Tensor, condition: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        return self.network(torch.cat([noisy, condition], dim=1), step)


class VideoDiffusionPipeline(EnsemblePipeline):
    """Every member is one reverse diffusion from fresh noise: all T steps, or ``ddim_steps`` with DDIM."""

    def __init__(self, model: FrameStackDenoiser, schedule: NoiseSchedule, ddim_steps: int | None = None,
                 boundary_condition: BoundaryCondition = no_boundary_condition, max_batch: int = 1024,
                 clip: float | None = None, precision: str = "float32"):
        super().__init__(model.horizon, boundary_condition, max_batch, precision)
        self.model, self.schedule, self.ddim_steps, self.clip = model, schedule, ddim_steps, clip
        self.sampler = f"ddim ({ddim_steps} steps)" if ddim_steps else f"ancestral ({schedule.num_steps} steps)"

    @property
    def modules(self):
        return [self.model]

    @property
    def sampling_steps(self) -> int:
        return self.ddim_steps or self.schedule.num_steps

    def prepare(self) -> None:
        set_mc_dropout(self.model, False)

    def sample_chunk(self, initial: torch.Tensor, static: torch.Tensor,
                     output_times: Sequence[float] | None) -> tuple[list[float], torch.Tensor]:
        times = [float(t) for t in (output_times if output_times is not None else range(1, self.horizon + 1))]
        if any(not float(t).is_integer() or not 1 <= t <= self.horizon for t in times):
            raise UserError(f"this method forecasts the whole lead times 1..{self.horizon} only, not {times}")
        batch, height, width = initial.shape[0], *initial.shape[-2:]
        shape = (batch, self.horizon * self.model.channels, height, width)
        condition = torch.cat([initial, static], dim=1)
        denoiser = self._counted(self.model, batch)
        if self.ddim_steps:
            stack = ddim_sample(denoiser, condition, shape, self.schedule, self.ddim_steps, clip=self.clip)
        else:
            stack = ancestral_sample(denoiser, condition, shape, self.schedule, clip=self.clip)
        frames = stack.reshape(batch, self.horizon, self.model.channels, height, width)
        return times, frames[:, [int(t) - 1 for t in times]]


class VideoDiffusionModule(pl.LightningModule):
    """Epsilon-prediction training on whole windows; validation CRPS with a short DDIM sampler."""

    def __init__(self, config: BaselineConfig, method: str, channels: int, static_channels: int, horizon: int):
        super().__init__()
        self.config, self.horizon = config, horizon
        self.schedule = noise_schedule(config, method)
        self.model = FrameStackDenoiser(config.network, channels, static_channels, horizon, config.denoiser_width)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        future = batch["window"][:, 1:].flatten(1, 2)  # (B, h*C, H, W)
        condition = torch.cat([batch["initial"], batch["static"]], dim=1)
        loss = diffusion_loss(self.model, future, condition, self.schedule, valid=batch["valid"])
        self.log("train/loss", loss, prog_bar=True, batch_size=future.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        pipeline = VideoDiffusionPipeline(self.model, self.schedule, self.config.val_ddim_steps, clip=self.config.clip)
        crps, mse = ensemble_crps(pipeline, batch, self.config.val_members)
        log_validation_scores(self, crps, mse, batch["initial"].shape[0])

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay)
