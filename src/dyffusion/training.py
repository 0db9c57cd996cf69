"""``fit``: train a method with Lightning into a self-contained run directory.

DYffusion trains its interpolator, then its forecaster; the baselines train their single network.

Crash safety: every file of the run is written atomically (temporary file, then rename), Lightning's checkpoints
included. A stage is *finished* once its best weights are in ``RUN/<stage>.safetensors`` and ``training.json``
says ``"finished": true``; ``fit(..., resume=True)`` skips finished stages and continues an interrupted one from
its ``last.ckpt`` (written at every epoch end). Every random generator is seeded from (seed, epoch) at the start
of each epoch, so the redone epoch replays exactly what the interrupted one would have done.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import random
import shutil
import time
import warnings
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.plugins import TorchCheckpointIO
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from dyffusion.baselines.multistep import MultiStepModule, choose_perturbation_scale
from dyffusion.baselines.video_diffusion import VideoDiffusionModule, denoiser_width
from dyffusion.config import ConfigError, ExperimentConfig, TrainerConfig, config_to_dict, read_config, save_config
from dyffusion.data.contract import GriddedData
from dyffusion.data.frames import LazyFrames
from dyffusion.data.normalization import Normalizer
from dyffusion.data.splits import open_split
from dyffusion.data.windows import WindowDataset
from dyffusion.distributed import barrier, is_global_zero, process_group_shard, quiet_lightning
from dyffusion.errors import UserError
from dyffusion.evaluation.choose_steps import choose_steps
from dyffusion.method.stages import ForecasterModule
from dyffusion.method.stages import InterpolatorModule
from dyffusion.io import atomic_path, load_weights, save_tensors, save_weights, write_json
from dyffusion.run import DataSpec, Run, RunError, build_models

STAGES = ("interpolator", "forecaster")
# What a resumed run may change: the budget, and the outputs of training kept in config.yaml (the Perturbation
# scale, DYffusion's sampling steps chosen on validation).
RESUMABLE_CHANGES = ("trainer.max_epochs", "trainer.max_minutes", "baseline.perturbation_scale", "sampling.steps")
# Loggers of the training curves and the packages each needs (any one of them; the first is the pip extra's).
# The choice is not part of config.yaml: a resumed run may log elsewhere.
LOGGER_PACKAGES = {"csv": (), "tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb",),
                   "mlflow": ("mlflow",)}


def _windows(data: GriddedData, spec: DataSpec, horizon: int, stride: int, **flags) -> WindowDataset:
    """The split's windows as the networks see them: normalised frames, static channels plus the mask channel."""
    return WindowDataset(data.values, spec.normalizer, spec.network_static(data), horizon, stride, data.valid,
                         **flags)


def _epoch_seeds(seed: int, epoch: int) -> tuple[int, int]:
    """Two independent 32-bit seeds from (stage seed, epoch): one for the training steps, one for the window order."""
    steps, order = np.random.SeedSequence([seed, epoch]).generate_state(2)
    return int(steps), int(order)


class _EpochShuffle(Sampler[int]):
    """A random order of ``size`` windows that depends on (seed, epoch) only; Lightning calls ``set_epoch``.
    Under DDP each process takes every world-size-th window of it from its rank, as many as every other process:
    the processes' batches of a step hold the windows of one single-process batch world-size times as large.

    An epoch of at least ``per_process`` windows on every process: a split smaller than that is shuffled several
    times end to end. Otherwise it would end its epoch, and validate, after every pass; with sampled validation
    (ensembles of whole sampling loops) that can cost more than the training between two validations. A split
    smaller than ``batch_size`` keeps one pass, so that no batch holds a window twice.

    torch's RandomSampler takes its order from a generator whose state is in no checkpoint, so the epoch redone
    after a resume would get other batches; Lightning's DistributedSampler would shuffle it once more.
    """

    def __init__(self, size: int, seed: int, per_process: int = 0, batch_size: int = 1):
        self.size, self.seed, self.per_process, self.batch_size, self.epoch = size, seed, per_process, batch_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def passes(self) -> int:
        # Read when iterated, not when built: Lightning sets up the process group after the loaders are made.
        if self.size < self.batch_size:
            return 1
        return max(1, -(-self.per_process * process_group_shard().count // self.size))

    def __len__(self) -> int:
        return self.size * self.passes // process_group_shard().count

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(_epoch_seeds(self.seed, self.epoch)[1])
        order = torch.cat([torch.randperm(self.size, generator=generator) for _ in range(self.passes)]).tolist()
        shard = process_group_shard()
        return iter([order[index] for index in shard.indices(len(self) * shard.count)])


class _ValidationShare(Sampler[int]):
    """The validation windows in order; under DDP every world-size-th from the process's rank, so that each is
    scored once (Lightning's DistributedSampler scores some twice to give every process as many)."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return len(process_group_shard().indices(self.size))

    def __iter__(self) -> Iterator[int]:
        return iter(process_group_shard().indices(self.size))


class _EpochSeeding(Callback):
    """Seeds torch, numpy and random from (stage seed, epoch) at the start of every training epoch.

    Lightning's checkpoints hold no RNG state: without this, the epoch redone after a resume would draw other
    dropout masks, interpolation times and diffusion steps than the uninterrupted run did.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # Each process of a multi-process run draws its own masks and noise (rank 0 those of a single process).
        seed = (_epoch_seeds(self.seed, trainer.current_epoch)[0] + trainer.global_rank) % 2**32
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """A Lightning checkpoint as tensors and plain containers; anything else is refused without running it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise RunError(f"{path}: refused: it holds Python objects other than tensors and plain containers (not a "
                       "checkpoint this library wrote); delete it, or fit into a new --out") from None
    except (RuntimeError, EOFError, KeyError, ValueError) as error:  # what torch raises for damaged files
        raise RunError(f"{path}: not a whole checkpoint, damaged or cut short ({type(error).__name__}); delete it "
                       "to start the stage over, or fit into a new --out") from None


class _AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each Lightning checkpoint beside its path and renames it onto it: a kill never leaves half a file;
    reads them with :func:`read_checkpoint`.

    Lightning's own writer stages the file in the system's temporary directory; from another file system the
    final move is a copy, which a kill can cut short.
    """

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        return read_checkpoint(path, map_location)

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("storage_options are not supported for local run directories")
        with atomic_path(path) as temporary:
            torch.save(checkpoint, temporary)


def _loader(windows: WindowDataset, batch_size: int, config: TrainerConfig, shuffle_seed: int | None,
            whole: bool = False) -> DataLoader:
    """Training batches shuffled by (``shuffle_seed``, epoch), or validation batches in order (``None``); under DDP
    this process's part of them (``whole``: all validation batches, for work outside Lightning)."""
    train = shuffle_seed is not None
    per_epoch = (config.batches_per_epoch or 0) * batch_size
    sampler = (_EpochShuffle(len(windows), shuffle_seed, per_epoch, batch_size) if train
               else None if whole else _ValidationShare(len(windows)))
    # Dropping a ragged last batch keeps batch statistics even, unless the split is smaller than one batch.
    # The loader's own generator: each new iterator draws a worker seed from it, and that draw must not move the
    # global RNG (Lightning makes the iterator of a resumed epoch at another moment than in an uninterrupted run).
    return DataLoader(windows, batch_size, sampler=sampler,
                      drop_last=train and len(windows) >= batch_size, generator=torch.Generator(),
                      num_workers=config.num_workers, persistent_workers=config.num_workers > 0)


def check_loggers(names: Sequence[str]) -> None:
    """Raise ConfigError, before any training, for an unknown logger or one whose package is not installed."""
    for name in names:
        if name not in LOGGER_PACKAGES:
            raise ConfigError(f"unknown logger {name!r}; choose from {', '.join(LOGGER_PACKAGES)}")
        packages = LOGGER_PACKAGES[name]
        if packages and not any(importlib.util.find_spec(package) for package in packages):
            raise ConfigError(f"logger {name} needs the {packages[0]} package: pip install 'dyffusion[{name}]'")


def _stage_loggers(names: Sequence[str], run: Path, stage: str) -> list[Logger]:
    """The loggers of one training attempt of ``stage``. CSV and TensorBoard files go to RUN/logs/STAGE/version_N
    (N: the attempt); Weights & Biases runs offline into RUN/logs/wandb unless WANDB_MODE says otherwise; MLflow
    writes RUN/logs/mlflow.db (SQLite) unless MLFLOW_TRACKING_URI names another store or a server."""
    logs = run / "logs"
    # version_0, then a new version per resumed attempt (Lightning would empty an existing version's log), shared by
    # the file loggers of the attempt.
    version = CSVLogger(logs, name=stage).version
    title = f"{run.resolve().name}/{stage}"
    makers = {
        "csv": lambda: CSVLogger(logs, name=stage, version=version),
        "tensorboard": lambda: TensorBoardLogger(logs, name=stage, version=version, default_hp_metric=False),
        "wandb": lambda: WandbLogger(name=title, save_dir=logs, project="dyffusion",
                                     offline="WANDB_MODE" not in os.environ),
        # A SQLite store: MLflow 3 refuses its file store (./mlruns) unless told to allow it.
        "mlflow": lambda: MLFlowLogger(
            experiment_name="dyffusion", run_name=title,
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(logs / 'mlflow.db').resolve()}",
            artifact_location=(logs / "mlflow-artifacts").resolve().as_uri()),
    }
    return [makers[name]() for name in dict.fromkeys(names)]


class _StageProgressBar(TQDMProgressBar):
    """Lightning's bar (the epoch's batches, their rate and the time left) named after the stage, with the epoch
    out of the budget's when the budget counts epochs."""

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        budget = f"/{trainer.max_epochs}" if trainer.max_epochs > 0 else ""
        self.train_progress_bar.set_description(f"{self.stage} epoch {trainer.current_epoch + 1}{budget}")


def _trainer(config: TrainerConfig, run: Path, stage: str, max_minutes: float | None, quiet: bool,
             seed: int, loggers: Sequence[str]) -> pl.Trainer:
    # Two checkpoints: the best validated epoch, and the latest epoch to resume from. Lightning's save_last would
    # only refresh last.ckpt when the best one changes, so a resumed stage would redo every epoch since then.
    best = ModelCheckpoint(dirpath=run / "checkpoints" / stage, filename="best", monitor="val/crps", mode="min",
                           save_top_k=1, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=run / "checkpoints" / stage, filename="last", save_top_k=1,
                           enable_version_counter=False)
    return pl.Trainer(
        max_epochs=config.max_epochs if config.max_epochs is not None else -1,
        max_time=timedelta(minutes=max_minutes) if max_minutes is not None else None,
        limit_train_batches=config.batches_per_epoch, limit_val_batches=config.val_batches,
        gradient_clip_val=config.gradient_clip, precision=config.precision, accelerator=config.accelerator,
        devices=config.devices, num_nodes=config.num_nodes, strategy=config.strategy,
        callbacks=[best, last, _EpochSeeding(seed), *([] if quiet else [_StageProgressBar(stage)])],
        plugins=[_AtomicCheckpointIO()],
        use_distributed_sampler=False,  # the loaders' own samplers split the windows over the processes
        logger=_stage_loggers(loggers, run, stage),
        deterministic=True, num_sanity_val_steps=0, enable_progress_bar=not quiet,
        enable_model_summary=not quiet, log_every_n_steps=10, default_root_dir=run,
    )


def _best_weights(trainer: pl.Trainer, module: pl.LightningModule) -> float | None:
    """Load the best validated weights into ``module``; returns their val/crps (None if never validated)."""
    callback = trainer.checkpoint_callback
    if not callback or not callback.best_model_path:
        return None
    # The run's own best.ckpt (save_top_k=1), not the restored path: a moved run directory would point elsewhere.
    checkpoint = read_checkpoint(Path(callback.dirpath) / "best.ckpt")
    module.load_state_dict(checkpoint["state_dict"])
    if callback.best_model_score is not None:
        return float(callback.best_model_score)
    saved = [state for name, state in checkpoint.get("callbacks", {}).items() if name.startswith("ModelCheckpoint")]
    return float(saved[0]["best_model_score"]) if saved and saved[0].get("best_model_score") is not None else None


def _finished(run: Path, summary: dict, stage: str) -> bool:
    """The stage's best weights are saved and ``training.json`` records the stage as finished."""
    return bool(summary.get(stage, {}).get("finished")) and (run / f"{stage}.safetensors").exists()


def _train_stage(module: pl.LightningModule, network: torch.nn.Module, stage: str, run: Path,
                 config: TrainerConfig, max_minutes: float | None, batch_size: int, train: WindowDataset,
                 val: WindowDataset, quiet: bool, seed: int, summary: dict, resume: bool,
                 loggers: Sequence[str]) -> None:
    """Fit one stage (with ``resume``, from its ``last.ckpt`` if there is one), keep its best validated weights,
    save them as ``RUN/<stage>.safetensors``, then record the stage as finished in ``RUN/training.json``."""
    last = run / "checkpoints" / stage / "last.ckpt"
    restart = last if resume and last.exists() else None
    if restart and config.max_epochs is not None:
        # Lightning refuses a checkpoint beyond max_epochs; a budget smaller than the epochs done means done.
        done = read_checkpoint(restart).get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
        config = replace(config, max_epochs=max(config.max_epochs, done.get("current", {}).get("completed", 0)))
    trainer = _trainer(config, run, stage, max_minutes, quiet, seed, loggers)
    processes = trainer.num_nodes * trainer.num_devices
    if len(val) < processes:  # a process without validation windows would leave the others waiting for its scores
        raise RunError(f"{len(val)} validation windows cannot be shared by {processes} processes: each needs one; "
                       "use fewer --devices or more validation data")
    started = time.monotonic()
    # Lightning restores weights, optimizer, epoch and step counters and callback states from last.ckpt with
    # torch.load(weights_only=True): tensors and plain containers only, nothing that could run code.
    trainer.fit(module, _loader(train, batch_size, config, seed), _loader(val, batch_size, config, None),
                ckpt_path=restart, weights_only=True)
    best = _best_weights(trainer, module)
    summary[stage] = {"best_val_crps": best, "epochs": trainer.current_epoch, "steps": trainer.global_step,
                      "minutes": (time.monotonic() - started) / 60, "finished": True}
    if trainer.is_global_zero:
        save_weights(network, run / f"{stage}.safetensors")
        write_json(run / "training.json", summary)  # after the weights: "finished" never names a missing file


def _fresh_stages(config: ExperimentConfig, stage: str) -> tuple[str, ...]:
    """The stages (networks with their own checkpoints, logs and weights) a fit without resume starts from scratch:
    those it trains, and DYffusion's forecaster whenever the interpolator it is trained through is retrained."""
    if config.method == "dyffusion":
        return ("forecaster",) if stage == "forecaster" else STAGES
    return ("forecaster",) if config.method in ("dropout", "perturbation") else ("denoiser",)


def _differences(stored: dict, given: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, stored value, given value) of every leaf in which two nested dicts differ."""
    found = []
    for key in sorted(stored.keys() | given.keys()):
        old, new = stored.get(key), given.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            found.append((f"{prefix}{key}", old, new))
    return found


def _resumed_config(run: Path, given: ExperimentConfig) -> ExperimentConfig:
    """The run's stored config (the truth) with the budget of ``given``; any other difference is refused."""
    stored = read_config(run / "config.yaml")
    changed = [f"{key} {old!r} -> {new!r}" for key, old, new in _differences(config_to_dict(stored),
                                                                           config_to_dict(given))
               if key not in RESUMABLE_CHANGES]
    if changed:
        raise RunError(f"cannot resume {run}: it was started with another configuration ({'; '.join(changed)}); "
                       "give the options it was started with (only --max-epochs/--max-minutes may change)")
    budget = replace(stored.trainer, max_epochs=given.trainer.max_epochs, max_minutes=given.trainer.max_minutes)
    return replace(stored, trainer=budget)


def _refuse_interrupted(run: Path, summary: dict, stages: tuple[str, ...]) -> None:
    """Starting over would throw away an interrupted stage's checkpoint: that takes an explicit choice."""
    for name in stages:
        if (run / "checkpoints" / name / "last.ckpt").exists() and not _finished(run, summary, name):
            raise RunError(f"{run} holds an interrupted {name} stage (checkpoints/{name}/last.ckpt): continue it "
                           "with --resume, or train into a new --out")


def _start_over(run: Path, summary: dict, stages: tuple[str, ...]) -> None:
    """Remove what earlier training left of ``stages``: checkpoints, logs and weights first, then their entries
    in training.json, so that no interruption leaves a stage that looks finished or resumable but is not."""
    for name in stages:
        shutil.rmtree(run / "checkpoints" / name, ignore_errors=True)
        shutil.rmtree(run / "logs" / name, ignore_errors=True)
        (run / f"{name}.safetensors").unlink(missing_ok=True)
    # The Perturbation scale and DYffusion's sampling steps are chosen on the trained forecaster.
    entries = [*stages, "perturbation", "sampling_steps"] if "forecaster" in stages else list(stages)
    if any(key in summary for key in entries):
        for key in entries:
            summary.pop(key, None)
        write_json(run / "training.json", summary)


def _save_config(config: ExperimentConfig, path: Path) -> None:
    with atomic_path(path) as temporary:
        save_config(config, temporary)


def fit(data: str | Path, out: str | Path, config: ExperimentConfig, stage: str = "both",
        quiet: bool = False, resume: bool = False, stream: bool | None = None,
        loggers: Sequence[str] = ("csv",)) -> Run:
    """Train on ``data`` (a directory with ``train`` and ``val`` splits, or one file split by
    ``config.data.split``) into the run directory ``out``.

    ``resume``: continue a run that was interrupted. Its own config.yaml is used (only the budget may differ from
    ``config``), finished stages are loaded instead of trained, the interrupted stage continues from its
    ``last.ckpt``; a run without a checkpoint yet starts from scratch. Without ``resume``, the stages to train
    start from scratch (DYffusion's stage 2 too when stage 1 does: it depends on it) and earlier checkpoints,
    logs and weights of them are removed, but a stage that was interrupted is refused rather than thrown away.
    ``stream``: read training windows from disk as they are needed (True), load the splits into memory (False),
    or stream when they would crowd the memory (None).
    ``loggers``: where the training curves go, any of :data:`LOGGER_PACKAGES` (csv, tensorboard, wandb, mlflow).

    With several processes (DDP: ``config.trainer`` devices, num_nodes, strategy), Lightning starts the others when
    training begins by running the command line again, so every process runs this function: only global rank 0
    writes or deletes files, and all return the run once it is written.
    """
    if stage not in ("both", *STAGES):
        raise UserError(f"unknown stage {stage!r}; choose both, interpolator or forecaster")
    check_loggers(loggers)
    run = Path(out)
    if resume and (run / "config.yaml").exists():
        config = _resumed_config(run, config)
    if config.method != "dyffusion" and stage != "both":
        raise UserError(f"--stage {stage} is for DYffusion; method {config.method!r} has a single stage")
    if config.trainer.max_epochs is None and not config.trainer.max_minutes:
        raise UserError("no training budget: give --max-epochs or --max-minutes (trainer.max_epochs/max_minutes)")
    summary_path = run / "training.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if resume and summary.get("data") and Path(summary["data"]) != Path(data).resolve():
        raise RunError(f"cannot resume {run}: it was trained on {summary['data']}, not on {Path(data).resolve()}")
    if not resume:
        _refuse_interrupted(run, summary, _fresh_stages(config, stage))
    if quiet:
        quiet_lightning()
    # Lightning's advice for GPU-sized data loaders and short epochs does not apply to small CPU runs, nor its
    # warning about a non-empty checkpoint directory to a resumed stage.
    for message in (".*does not have many workers.*", ".*smaller than the logging interval.*", ".*LeafSpec.*",
                    ".*Checkpoint directory .* exists and is not empty.*"):
        warnings.filterwarnings("ignore", message=message)
    started = time.monotonic()

    train = open_split(data, "train", config.data.split, stream).subsample_time(config.data.time_stride)
    val = open_split(data, "val", config.data.split, stream).subsample_time(config.data.time_stride)
    if stage == "forecaster":
        spec = Run.load(run, need_forecaster=False).spec  # the normalisation stage 1 was trained with
    elif resume and (run / "data.json").exists():
        spec = DataSpec.from_dict(json.loads((run / "data.json").read_text()))
    else:
        if config.data.normalization not in ("channel", "point"):
            raise ConfigError(f"data.normalization must be 'channel' or 'point', got {config.data.normalization!r}")
        normalizer = Normalizer.fit(train.values, train.valid, per_point=config.data.normalization == "point",
                                    progress=not quiet and isinstance(train.values, LazyFrames))
        spec = DataSpec.from_data(train, normalizer, config.data.time_stride)
    spec.check(val)
    if config.method in ("ddpm", "mcvd"):  # a denoiser too narrow for its outputs is refused before any file is written
        denoiser_width(config.baseline.network, config.data.horizon * spec.num_channels, config.baseline.denoiser_width)
    # The other DDP processes redo the above (rank 0 waits for them in its first trainer.fit) to reach the same
    # decisions from the same files; only rank 0 writes.
    writer = is_global_zero()
    if writer:
        if not resume:
            _start_over(run, summary, _fresh_stages(config, stage))
        run.mkdir(parents=True, exist_ok=True)
        _save_config(config, run / "config.yaml")
        write_json(run / "data.json", spec.to_dict())
        if train.static.shape[1] and (train.static == train.static[:1]).all():
            # Static conditions shared by all trajectories travel with the model, so a bare tensor can be forecast.
            save_tensors({"static": torch.from_numpy(train.static[0])}, run / "static.safetensors")

    summary["data"] = str(Path(data).resolve())
    if writer:
        write_json(summary_path, summary)
    stages = _fit_dyffusion if config.method == "dyffusion" else _fit_baseline
    stages(config, spec, train, val, run, stage, summary, started, quiet, resume, loggers)
    summary["total_minutes"] = (time.monotonic() - started) / 60
    if writer:
        write_json(summary_path, summary)
    barrier()  # the other processes load the run once rank 0 has written all of it
    return Run.load(run, need_forecaster=stage != "interpolator")


def _fit_dyffusion(config: ExperimentConfig, spec: DataSpec, train: GriddedData, val: GriddedData, run: Path,
                   stage: str, summary: dict, started: float, quiet: bool, resume: bool,
                   loggers: Sequence[str]) -> None:
    """Stage 1 (interpolator) then stage 2 (forecaster through the frozen interpolator)."""
    trainer_config, horizon = config.trainer, config.data.horizon
    val_windows = _windows(val, spec, horizon, config.data.val_window_stride or horizon, with_window=True)
    interpolator, forecaster = build_models(config, spec)["interpolator"], None
    # A stage finished by an earlier process spent part of the budget before this one started.
    spent_before = 0.0
    if stage in ("both", "interpolator") and not (resume and _finished(run, summary, "interpolator")):
        pl.seed_everything(trainer_config.seed, workers=True, verbose=False)
        module = InterpolatorModule(config.interpolator, spec.num_channels, spec.network_static_channels, horizon)
        budget = trainer_config.max_minutes * config.interpolator.time_share if trainer_config.max_minutes else None
        _train_stage(module, module.interpolator, "interpolator", run, trainer_config, budget,
                     config.interpolator.batch_size,
                     _windows(train, spec, horizon, config.data.window_stride, target_range=(1, horizon - 1)),
                     val_windows, quiet, trainer_config.seed, summary, resume, loggers)
        interpolator = module.interpolator
    else:
        if not (run / "interpolator.safetensors").exists():
            raise RunError(f"{run} has no trained interpolator: run `dyffusion fit --stage interpolator` first")
        load_weights(interpolator, run / "interpolator.safetensors")
        if stage == "both":
            spent_before = summary["interpolator"].get("minutes", 0.0)

    if stage in ("both", "forecaster") and not (resume and _finished(run, summary, "forecaster")):
        pl.seed_everything(trainer_config.seed + 1, workers=True, verbose=False)
        module = ForecasterModule(config.forecaster, config.sampling, interpolator, spec.num_channels,
                                  spec.network_static_channels, horizon)
        _train_stage(module, module.forecaster, "forecaster", run, trainer_config,
                     _remaining(config, started, spent_before),
                     config.forecaster.batch_size, _windows(train, spec, horizon, config.data.window_stride), val_windows,
                     quiet, trainer_config.seed + 1, summary, resume, loggers)
        forecaster = module.forecaster
    if stage != "interpolator" and config.sampling.choose_steps and not (resume and "sampling_steps" in summary):
        _choose_sampling_steps(config, spec, val, run, interpolator, forecaster, summary, quiet)


def _choose_sampling_steps(config: ExperimentConfig, spec: DataSpec, val: GriddedData, run: Path,
                           interpolator: torch.nn.Module, forecaster: torch.nn.Module | None, summary: dict,
                           quiet: bool) -> None:
    """The sampling steps of lowest validation CRPS into RUN/config.yaml (``sampling.steps``) and the scores of
    every candidate into ``summary["sampling_steps"]``; ``forecaster`` None: the one an earlier process saved."""
    if forecaster is None:
        forecaster = build_models(config, spec)["forecaster"]
        load_weights(forecaster, run / "forecaster.safetensors")
    device = "cuda" if torch.cuda.is_available() and config.trainer.accelerator != "cpu" else "cpu"
    # ``val`` is already at the run's time stride: a spec of stride 1 keeps evaluate from striding it again.
    scored = Run(run, config, replace(spec, time_stride=1), {"interpolator": interpolator, "forecaster": forecaster})
    # Under DDP each process samples its share of the initial conditions and all get rank 0's choice; one writes.
    summary["sampling_steps"] = choose_steps(scored.to(device), val, config.trainer.seed, quiet, process_group_shard())
    if is_global_zero():
        steps = summary["sampling_steps"]["setting"]
        _save_config(replace(config, sampling=replace(config.sampling, steps=steps)), run / "config.yaml")
        write_json(run / "training.json", summary)


def _remaining(config: ExperimentConfig, started: float, spent_before: float = 0.0) -> float | None:
    """Minutes of ``trainer.max_minutes`` left: less this process's time and ``spent_before`` (earlier ones')."""
    if not config.trainer.max_minutes:
        return None
    return max(config.trainer.max_minutes - spent_before - (time.monotonic() - started) / 60, 0.1)


def _fit_baseline(config: ExperimentConfig, spec: DataSpec, train: GriddedData, val: GriddedData, run: Path,
                  stage: str, summary: dict, started: float, quiet: bool, resume: bool,
                  loggers: Sequence[str]) -> None:
    """One network: G(x_t, j) for Perturbation and Dropout, the frame-stack denoiser for DDPM and MCVD."""
    trainer_config, horizon, baseline = config.trainer, config.data.horizon, config.baseline
    channels, static = spec.num_channels, spec.network_static_channels
    val_windows = _windows(val, spec, horizon, config.data.val_window_stride or horizon, with_window=True)
    pl.seed_everything(trainer_config.seed, workers=True, verbose=False)
    if config.method in ("dropout", "perturbation"):
        module = MultiStepModule(baseline, channels, static, horizon, mc_dropout=config.method == "dropout")
        train_windows = _windows(train, spec, horizon, config.data.window_stride, target_range=(1, horizon))
        name, network = "forecaster", module.model
    else:
        module = VideoDiffusionModule(baseline, config.method, channels, static, horizon)
        train_windows = _windows(train, spec, horizon, config.data.window_stride, with_window=True)
        name, network = "denoiser", module.model
    if resume and _finished(run, summary, name):
        load_weights(network, run / f"{name}.safetensors")
    else:
        _train_stage(module, network, name, run, trainer_config, _remaining(config, started), baseline.batch_size,
                     train_windows, val_windows, quiet, trainer_config.seed, summary, resume, loggers)
    if config.method == "perturbation" and not (resume and "perturbation" in summary):
        # Under DDP every process chooses on all validation windows, in batches as large as all processes' together
        # (a single process's choice with that batch size): the same scale from the same weights; one writes it.
        loader = _loader(val_windows, baseline.batch_size * process_group_shard().count, trainer_config, None,
                         whole=True)
        batches = [b for i, b in enumerate(loader) if trainer_config.val_batches is None or i < trainer_config.val_batches]
        pl.seed_everything(trainer_config.seed, workers=True, verbose=False)
        scales = tqdm(baseline.perturbation_scales, desc="perturbation scale search", unit="scale",
                      disable=quiet or not is_global_zero())
        scale, scores = choose_perturbation_scale(network, batches, horizon, scales, baseline.val_members)
        baseline.perturbation_scale = scale
        if is_global_zero():
            _save_config(config, run / "config.yaml")
        summary["perturbation"] = {"chosen_scale": scale, "val_crps_by_scale": scores}
