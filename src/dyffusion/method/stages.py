"""The two Lightning modules of DYffusion: stage 1 trains the interpolator and validates it by ensemble CRPS (MC
dropout); stage 2 trains the forecaster through the frozen interpolator."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

from dyffusion.config import ForecasterConfig, InterpolatorConfig, SamplingConfig
from dyffusion.distributed import log_validation_scores
from dyffusion.ensemble import ensemble_crps
from dyffusion.method.forecaster import Forecaster, forecaster_loss
from dyffusion.method.interpolator import Interpolator, interpolator_loss
from dyffusion.method.pipeline import DYffusionPipeline
from dyffusion.method.schedule import StepSchedule
from dyffusion.metrics import crps_ensemble
from dyffusion.metrics.masked import masked_mean
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
