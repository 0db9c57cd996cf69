"""The Perturbation and Dropout baselines: one time-conditioned forecaster ``G(x_t, j) -> x_{t+j}``.

Both train the same network with MSE at a lead time j drawn uniformly from 1..h; they differ only in how
an ensemble is drawn: Gaussian noise on the initial condition (Perturbation) or MC dropout (Dropout).
"""

from __future__ import annotations

from typing import Sequence

import lightning.pytorch as pl
import torch
from torch import nn

from dyffusion.config import BaselineConfig
from dyffusion.data.boundary import BoundaryCondition, no_boundary_condition
from dyffusion.distributed import log_validation_scores
from dyffusion.ensemble import EnsemblePipeline, ensemble_crps
from dyffusion.errors import UserError
from dyffusion.metrics.masked import masked_mean
from dyffusion.networks import NetworkConfig, build_network, set_mc_dropout


class MultiStepForecaster(nn.Module):
    """forward(initial (B, C, H, W), time (B,), static (B, S, H, W)) -> x_{t+time} (B, C, H, W)"""

    def __init__(self, network: NetworkConfig, channels: int, static_channels: int):
        super().__init__()
        self.network = build_network(network, channels + static_channels, channels)

    def forward(self, initial: torch.Tensor, time: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return self.network(torch.cat([initial, static], dim=1), time)


class MultiStepPipeline(EnsemblePipeline):
    """All lead times of a horizon from one initial condition, in batched network calls.

    ``perturbation_scale``: std of the noise added to the (normalised) initial condition of every member
    at every chunk start; ``mc_dropout``: dropout on at inference.
    """

    def __init__(self, model: MultiStepForecaster, horizon: int, perturbation_scale: float = 0.0,
                 mc_dropout: bool = False, boundary_condition: BoundaryCondition = no_boundary_condition,
                 max_batch: int = 1024, precision: str = "float32"):
        super().__init__(horizon, boundary_condition, max_batch, precision)
        self.model, self.perturbation_scale, self.mc_dropout = model, perturbation_scale, mc_dropout
        self.sampler = "mc-dropout" if mc_dropout else f"perturbation (scale {perturbation_scale:g})"

    @property
    def modules(self):
        return [self.model]

    @property
    def sampling_steps(self) -> int:
        return self.horizon

    def prepare(self) -> None:
        set_mc_dropout(self.model, self.mc_dropout)

    def sample_chunk(self, initial: torch.Tensor, static: torch.Tensor,
                     output_times: Sequence[float] | None) -> tuple[list[float], torch.Tensor]:
        times = [float(t) for t in (output_times if output_times is not None else range(1, self.horizon + 1))]
        for time in times:
            if not 0 < time <= self.horizon:
                raise UserError(f"requested time {time} outside (0, {self.horizon}]")
        batch = initial.shape[0]
        start = initial + self.perturbation_scale * torch.randn_like(initial) if self.perturbation_scale else initial
        model = self._counted(self.model, batch)
        per_call = max(1, self.max_batch // batch)
        frames = []
        for first in range(0, len(times), per_call):
            chunk = times[first : first + per_call]
            time = torch.tensor(chunk, dtype=initial.dtype, device=initial.device).repeat_interleave(batch)
            outputs = model(start.repeat(len(chunk), 1, 1, 1), time, static.repeat(len(chunk), 1, 1, 1))
            frames += list(outputs.split(batch))
        return times, torch.stack(frames, dim=1)


class MultiStepModule(pl.LightningModule):
    """Trains G with MSE; validates by ensemble CRPS (MC dropout for ``dropout``, the mean forecast otherwise)."""

    def __init__(self, config: BaselineConfig, channels: int, static_channels: int, horizon: int,
                 mc_dropout: bool):
        super().__init__()
        self.config, self.horizon, self.mc_dropout = config, horizon, mc_dropout
        self.model = MultiStepForecaster(config.network, channels, static_channels)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        prediction = self.model(batch["initial"], batch["time"], batch["static"])
        loss = masked_mean((prediction - batch["target"]) ** 2, batch["valid"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["initial"].shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        pipeline = MultiStepPipeline(self.model, self.horizon, mc_dropout=self.mc_dropout)
        crps, mse = ensemble_crps(pipeline, batch, self.config.val_members if self.mc_dropout else 1)
        log_validation_scores(self, crps, mse, batch["initial"].shape[0])

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay)


def choose_perturbation_scale(model: MultiStepForecaster, batches: list[dict], horizon: int,
                              scales: Sequence[float], members: int) -> tuple[float, dict[float, float]]:
    """The scale with the smallest mean validation CRPS, and the CRPS of every scale tried."""
    scores = {}
    for scale in scales:
        pipeline = MultiStepPipeline(model, horizon, perturbation_scale=scale)
        scores[float(scale)] = float(torch.stack([ensemble_crps(pipeline, b, members)[0] for b in batches]).mean())
    return min(scores, key=scores.get), scores
