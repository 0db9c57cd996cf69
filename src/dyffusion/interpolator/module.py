"""Lightning module of stage 1: trains the interpolator, validates it by ensemble CRPS (MC dropout)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from dyffusion.config import InterpolatorConfig
from dyffusion.distributed import log_validation_scores
from dyffusion.interpolator.loss import interpolator_loss, masked_mean
from dyffusion.interpolator.model import Interpolator
from dyffusion.metrics import crps_ensemble
from dyffusion.networks import set_mc_dropout


def validation_times(horizon: int, count: int) -> list[int]:
    """``count`` interpolation times spread evenly over 1..h-1 (all of them when count is 0 or enough)."""
    every = list(range(1, horizon))
    if count <= 0 or count >= len(every):
        return every
    picks = torch.linspace(0, len(every) - 1, count).round().long().tolist()
    return sorted({every[i] for i in picks})


class InterpolatorModule(pl.LightningModule):
    def __init__(self, config: InterpolatorConfig, channels: int, static_channels: int, horizon: int):
        super().__init__()
        self.config, self.horizon = config, horizon
        self.interpolator = Interpolator(config.network, channels, static_channels)
        self.val_times = validation_times(horizon, config.val_times)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        loss = interpolator_loss(self.interpolator, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["initial"].shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        """Ensemble CRPS of ``val_members`` MC-dropout draws, averaged over the validation times."""
        set_mc_dropout(self.interpolator, True)
        members, size = self.config.val_members, batch["initial"].shape[0]
        crps, mse = [], []
        initial, end, static = (batch[key].repeat(members, 1, 1, 1) for key in ("initial", "end", "static"))
        for time in self.val_times:
            times = torch.full((members * size,), float(time), device=self.device)
            ensemble = self.interpolator(initial, end, times, static)
            ensemble = ensemble.reshape(members, size, *ensemble.shape[1:])
            truth = batch["window"][:, time]
            crps.append(masked_mean(crps_ensemble(ensemble, truth), batch["valid"]))
            mse.append(masked_mean((ensemble.mean(0) - truth) ** 2, batch["valid"]))
        set_mc_dropout(self.interpolator, False)
        log_validation_scores(self, torch.stack(crps).mean(), torch.stack(mse).mean(), size)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay)
