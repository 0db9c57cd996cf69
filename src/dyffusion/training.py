"""``fit``: train a method with Lightning into a self-contained run directory.

DYffusion trains its interpolator, then its forecaster; the baselines train their single network.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from dyffusion.baselines.multistep import MultiStepModule, choose_perturbation_scale
from dyffusion.baselines.video_diffusion import VideoDiffusionModule
from dyffusion.config import ExperimentConfig, TrainerConfig, save_config
from dyffusion.data.contract import GriddedData
from dyffusion.data.normalization import Normalizer
from dyffusion.data.splits import open_split
from dyffusion.data.windows import WindowDataset
from dyffusion.forecaster.module import ForecasterModule
from dyffusion.interpolator.module import InterpolatorModule
from dyffusion.io import load_weights, save_tensors, save_weights, write_json
from dyffusion.run import DataSpec, Run, RunError, build_models

STAGES = ("interpolator", "forecaster")


def _as_network_input(data: GriddedData, spec: DataSpec) -> GriddedData:
    """The split as the networks see it: normalised values, static channels plus the mask channel.

    Done once per split; the raw copy is released, so training holds the data once.
    """
    return replace(data, values=spec.normalizer.normalize_array(data.values), static=spec.network_static(data))


def _windows(data: GriddedData, horizon: int, stride: int, **flags) -> WindowDataset:
    return WindowDataset(data.values, data.static, horizon, stride, data.valid, **flags)


def _loader(windows: WindowDataset, batch_size: int, config: TrainerConfig, train: bool) -> DataLoader:
    # Dropping a ragged last batch keeps batch statistics even, unless the split is smaller than one batch.
    return DataLoader(windows, batch_size, shuffle=train, drop_last=train and len(windows) >= batch_size,
                      num_workers=config.num_workers, persistent_workers=config.num_workers > 0)


def _trainer(config: TrainerConfig, run: Path, stage: str, max_minutes: float | None, quiet: bool) -> pl.Trainer:
    checkpoint = ModelCheckpoint(dirpath=run / "checkpoints" / stage, filename="best", monitor="val/crps",
                                 mode="min", save_top_k=1, save_last=True)
    return pl.Trainer(
        max_epochs=config.max_epochs if config.max_epochs is not None else -1,
        max_time=timedelta(minutes=max_minutes) if max_minutes is not None else None,
        limit_train_batches=config.batches_per_epoch, limit_val_batches=config.val_batches,
        gradient_clip_val=config.gradient_clip, precision=config.precision, accelerator=config.accelerator,
        devices=config.devices, num_nodes=config.num_nodes, strategy=config.strategy,
        callbacks=[checkpoint], logger=CSVLogger(run / "logs", name=stage, version=0),
        deterministic=True, num_sanity_val_steps=0, enable_progress_bar=not quiet,
        enable_model_summary=not quiet, log_every_n_steps=10, default_root_dir=run,
    )


def _best_weights(trainer: pl.Trainer, module: pl.LightningModule) -> float | None:
    """Load the best validated weights into ``module``; returns their val/crps (None if never validated)."""
    callback = trainer.checkpoint_callback
    if not callback or not callback.best_model_path:
        return None
    state = torch.load(callback.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    return float(callback.best_model_score)


def _train_stage(module: pl.LightningModule, network: torch.nn.Module, stage: str, run: Path,
                 config: TrainerConfig, max_minutes: float | None, batch_size: int, train: WindowDataset,
                 val: WindowDataset, quiet: bool) -> dict:
    """Fit one stage, keep its best validated weights, save them as ``RUN/<stage>.safetensors``."""
    trainer = _trainer(config, run, stage, max_minutes, quiet)
    started = time.monotonic()
    trainer.fit(module, _loader(train, batch_size, config, True), _loader(val, batch_size, config, False))
    best = _best_weights(trainer, module)
    if trainer.is_global_zero:
        save_weights(network, run / f"{stage}.safetensors")
    return {"best_val_crps": best, "epochs": trainer.current_epoch, "steps": trainer.global_step,
            "minutes": (time.monotonic() - started) / 60}


def fit(data: str | Path, out: str | Path, config: ExperimentConfig, stage: str = "both",
        quiet: bool = False) -> Run:
    """Train on ``data`` (a directory with ``train`` and ``val`` splits, or one file split by
    ``config.data.split``) into the run directory ``out``."""
    if stage not in ("both", *STAGES):
        raise ValueError(f"unknown stage {stage!r}; choose both, interpolator or forecaster")
    if config.trainer.max_epochs is None and not config.trainer.max_minutes:
        raise ValueError("no training budget: give --max-epochs or --max-minutes (trainer.max_epochs/max_minutes)")
    if quiet:
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)
    # Lightning's advice for GPU-sized data loaders and short epochs does not apply to small CPU runs.
    for message in (".*does not have many workers.*", ".*smaller than the logging interval.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message=message)
    started = time.monotonic()
    run = Path(out)

    train = open_split(data, "train", config.data.split).subsample_time(config.data.time_stride)
    val = open_split(data, "val", config.data.split).subsample_time(config.data.time_stride)
    if stage == "forecaster":
        spec = Run.load(run, need_forecaster=False).spec  # the normalisation stage 1 was trained with
    else:
        if config.data.normalization not in ("channel", "point"):
            raise ValueError(f"data.normalization must be 'channel' or 'point', got {config.data.normalization!r}")
        normalizer = Normalizer.fit(train.values, train.valid, per_point=config.data.normalization == "point")
        spec = DataSpec.from_data(train, normalizer, config.data.time_stride)
    spec.check(val)
    run.mkdir(parents=True, exist_ok=True)
    save_config(config, run / "config.yaml")
    write_json(run / "data.json", spec.to_dict())
    if train.static.shape[1] and (train.static == train.static[:1]).all():
        # Static conditions shared by all trajectories travel with the model, so a bare tensor can be forecast.
        save_tensors({"static": torch.from_numpy(train.static[0])}, run / "static.safetensors")

    train, val = _as_network_input(train, spec), _as_network_input(val, spec)
    summary_path = run / "training.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary["data"] = str(Path(data).resolve())
    stages = _fit_dyffusion if config.method == "dyffusion" else _fit_baseline
    stages(config, spec, train, val, run, stage, summary, started, quiet)
    summary["total_minutes"] = (time.monotonic() - started) / 60
    write_json(summary_path, summary)
    return Run.load(run, need_forecaster=stage != "interpolator")


def _fit_dyffusion(config: ExperimentConfig, spec: DataSpec, train: GriddedData, val: GriddedData, run: Path,
                   stage: str, summary: dict, started: float, quiet: bool) -> None:
    """Stage 1 (interpolator) then stage 2 (forecaster through the frozen interpolator)."""
    trainer_config, horizon = config.trainer, config.data.horizon
    val_windows = _windows(val, horizon, config.data.val_window_stride or horizon, with_window=True)
    interpolator = build_models(config, spec)["interpolator"]
    if stage in ("both", "interpolator"):
        pl.seed_everything(trainer_config.seed, workers=True, verbose=False)
        module = InterpolatorModule(config.interpolator, spec.num_channels, spec.network_static_channels, horizon)
        budget = trainer_config.max_minutes * config.interpolator.time_share if trainer_config.max_minutes else None
        summary["interpolator"] = _train_stage(
            module, module.interpolator, "interpolator", run, trainer_config, budget, config.interpolator.batch_size,
            _windows(train, horizon, config.data.window_stride, target_range=(1, horizon - 1)),
            val_windows, quiet)
        interpolator = module.interpolator
    else:
        if not (run / "interpolator.safetensors").exists():
            raise RunError(f"{run} has no trained interpolator: run `dyffusion fit --stage interpolator` first")
        load_weights(interpolator, run / "interpolator.safetensors")

    if stage in ("both", "forecaster"):
        pl.seed_everything(trainer_config.seed + 1, workers=True, verbose=False)
        module = ForecasterModule(config.forecaster, config.sampling, interpolator, spec.num_channels,
                                  spec.network_static_channels, horizon)
        summary["forecaster"] = _train_stage(
            module, module.forecaster, "forecaster", run, trainer_config, _remaining(config, started),
            config.forecaster.batch_size, _windows(train, horizon, config.data.window_stride), val_windows, quiet)


def _remaining(config: ExperimentConfig, started: float) -> float | None:
    if not config.trainer.max_minutes:
        return None
    return max(config.trainer.max_minutes - (time.monotonic() - started) / 60, 0.1)


def _fit_baseline(config: ExperimentConfig, spec: DataSpec, train: GriddedData, val: GriddedData, run: Path,
                  stage: str, summary: dict, started: float, quiet: bool) -> None:
    """One network: G(x_t, j) for Perturbation and Dropout, the frame-stack denoiser for DDPM and MCVD."""
    if stage != "both":
        raise ValueError(f"--stage {stage} is for DYffusion; method {config.method!r} has a single stage")
    trainer_config, horizon, baseline = config.trainer, config.data.horizon, config.baseline
    channels, static = spec.num_channels, spec.network_static_channels
    val_windows = _windows(val, horizon, config.data.val_window_stride or horizon, with_window=True)
    pl.seed_everything(trainer_config.seed, workers=True, verbose=False)
    if config.method in ("dropout", "perturbation"):
        module = MultiStepModule(baseline, channels, static, horizon, mc_dropout=config.method == "dropout")
        train_windows = _windows(train, horizon, config.data.window_stride, target_range=(1, horizon))
        name, network = "forecaster", module.model
    else:
        module = VideoDiffusionModule(baseline, config.method, channels, static, horizon)
        train_windows = _windows(train, horizon, config.data.window_stride, with_window=True)
        name, network = "denoiser", module.model
    summary[name] = _train_stage(module, network, name, run, trainer_config, _remaining(config, started),
                                 baseline.batch_size, train_windows, val_windows, quiet)
    if config.method == "perturbation":
        loader = _loader(val_windows, baseline.batch_size, trainer_config, False)
        batches = [b for i, b in enumerate(loader) if trainer_config.val_batches is None or i < trainer_config.val_batches]
        pl.seed_everything(trainer_config.seed, workers=True, verbose=False)
        scale, scores = choose_perturbation_scale(network, batches, horizon, baseline.perturbation_scales,
                                                  baseline.val_members)
        baseline.perturbation_scale = scale
        save_config(config, run / "config.yaml")
        summary["perturbation"] = {"chosen_scale": scale, "val_crps_by_scale": scores}
