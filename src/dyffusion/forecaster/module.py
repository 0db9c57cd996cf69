"""Lightning module of stage 2: trains the forecaster through the frozen interpolator."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from dyffusion.config import ForecasterConfig, SamplingConfig
from dyffusion.distributed import log_validation_scores
from dyffusion.forecaster.loss import forecaster_loss
from dyffusion.forecaster.model import Forecaster
from dyffusion.interpolator.model import Interpolator
from dyffusion.networks import set_mc_dropout
from dyffusion.sampling.ensemble import ensemble_crps
from dyffusion.sampling.pipeline import DYffusionPipeline
from dyffusion.schedule import StepSchedule


class ForecasterModule(pl.LightningModule):
    """The interpolator is kept outside the module tree: Lightning never sees it, so it is never switched
    to train mode, never optimised and never saved in this stage's checkpoints; only its dropout runs."""

    def __init__(self, config: ForecasterConfig, sampling: SamplingConfig, interpolator: Interpolator,
                 channels: int, static_channels: int, horizon: int):
        super().__init__()
        self.config, self.sampling = config, sampling
        self.schedule = StepSchedule(horizon, config.schedule, config.extra_steps)
        self.forecaster = Forecaster(config.network, channels, static_channels, config.conditioning)
        interpolator.requires_grad_(False)
        set_mc_dropout(interpolator, True)
        object.__setattr__(self, "frozen_interpolator", interpolator)  # bypasses nn.Module registration

    def on_fit_start(self) -> None:
        self.frozen_interpolator.to(self.device)

    def on_validation_start(self) -> None:
        self.frozen_interpolator.to(self.device)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        set_mc_dropout(self.frozen_interpolator, True)
        loss, parts = forecaster_loss(self.forecaster, self.frozen_interpolator, batch, self.schedule.times,
                                      tuple(self.config.loss_weights))
        size = batch["initial"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size, sync_dist=True)
        self.log("train/l1", parts["l1"], batch_size=size, sync_dist=True)
        self.log("train/lookahead", parts["lookahead"], batch_size=size, sync_dist=True)
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        """Ensemble CRPS of the full sampler over lead times 1..h (what the checkpoint is chosen by)."""
        pipeline = DYffusionPipeline(self.frozen_interpolator, self.forecaster, self.schedule,
                                     sampler=self.sampling.sampler, steps=self.sampling.steps,
                                     refine=self.sampling.refine, max_batch=self.sampling.max_batch)
        crps, mse = ensemble_crps(pipeline, batch, self.config.val_members)
        log_validation_scores(self, crps, mse, batch["initial"].shape[0])

    def configure_optimizers(self):
        return torch.optim.AdamW(self.forecaster.parameters(), lr=self.config.learning_rate,
                                 weight_decay=self.config.weight_decay)
