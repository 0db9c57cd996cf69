"""Lightning glue of ``fit``: window order and seeding that survive a resume, atomic checkpoints, loggers, the
progress bar, and the trainer of one stage.

Every random generator is seeded from (stage seed, epoch) at the start of each epoch, so the epoch redone after a
resume replays exactly what the interrupted one would have done.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import random
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

from dyffusion.config import TrainerConfig
from dyffusion.data.windows import WindowDataset
from dyffusion.distributed import process_group_shard
from dyffusion.errors import ConfigError, RunError
from dyffusion.io import atomic_path
from dyffusion.run import RunDir

# Loggers of the training curves and the packages each needs (any one of them; the first is the pip extra's).
# The choice is not part of config.yaml: a resumed run may log elsewhere.
LOGGER_PACKAGES = {"csv": (), "tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb",),
                   "mlflow": ("mlflow",)}


def _epoch_seeds(seed: int, epoch: int) -> tuple[int, int]:
    """Two independent 32-bit seeds from (stage seed, epoch): one for the training steps, one for the window order."""
    steps, order = np.random.SeedSequence([seed, epoch]).generate_state(2)
    return int(steps), int(order)


class EpochShuffle(Sampler[int]):
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


class ValidationShare(Sampler[int]):
    """The validation windows in order; under DDP every world-size-th from the process's rank, so that each is
    scored once (Lightning's DistributedSampler scores some twice to give every process as many)."""

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return len(process_group_shard().indices(self.size))

    def __iter__(self) -> Iterator[int]:
        return iter(process_group_shard().indices(self.size))


class EpochSeeding(Callback):
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


class AtomicCheckpointIO(TorchCheckpointIO):
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


def loader(windows: WindowDataset, batch_size: int, config: TrainerConfig, shuffle_seed: int | None,
            whole: bool = False) -> DataLoader:
    """Training batches shuffled by (``shuffle_seed``, epoch), or validation batches in order (``None``); under DDP
    this process's part of them (``whole``: all validation batches, for work outside Lightning)."""
    train = shuffle_seed is not None
    per_epoch = (config.batches_per_epoch or 0) * batch_size
    sampler = (EpochShuffle(len(windows), shuffle_seed, per_epoch, batch_size) if train
               else None if whole else ValidationShare(len(windows)))
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


def stage_loggers(names: Sequence[str], run: RunDir, stage: str) -> list[Logger]:
    """The loggers of one training attempt of ``stage``. CSV and TensorBoard files go to RUN/logs/STAGE/version_N
    (N: the attempt); Weights & Biases runs offline into RUN/logs/wandb unless WANDB_MODE says otherwise; MLflow
    writes RUN/logs/mlflow.db (SQLite) unless MLFLOW_TRACKING_URI names another store or a server."""
    logs = run.logs()
    # version_0, then a new version per resumed attempt (Lightning would empty an existing version's log), shared by
    # the file loggers of the attempt.
    version = CSVLogger(logs, name=stage).version
    title = f"{run.path.resolve().name}/{stage}"
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


class StageProgressBar(TQDMProgressBar):
    """Lightning's bar (the epoch's batches, their rate and the time left) named after the stage, with the epoch
    out of the budget's when the budget counts epochs."""

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        budget = f"/{trainer.max_epochs}" if trainer.max_epochs > 0 else ""
        self.train_progress_bar.set_description(f"{self.stage} epoch {trainer.current_epoch + 1}{budget}")


def stage_trainer(config: TrainerConfig, run: RunDir, stage: str, max_minutes: float | None, quiet: bool,
                  seed: int, loggers: Sequence[str]) -> pl.Trainer:
    # Two checkpoints: the best validated epoch, and the latest epoch to resume from. Lightning's save_last would
    # only refresh last.ckpt when the best one changes, so a resumed stage would redo every epoch since then.
    best = ModelCheckpoint(dirpath=run.checkpoints(stage), filename="best", monitor="val/crps", mode="min",
                           save_top_k=1, enable_version_counter=False)
    last = ModelCheckpoint(dirpath=run.checkpoints(stage), filename="last", save_top_k=1,
                           enable_version_counter=False)
    return pl.Trainer(
        max_epochs=config.max_epochs if config.max_epochs is not None else -1,
        max_time=timedelta(minutes=max_minutes) if max_minutes is not None else None,
        limit_train_batches=config.batches_per_epoch, limit_val_batches=config.val_batches,
        gradient_clip_val=config.gradient_clip, precision=config.precision, accelerator=config.accelerator,
        devices=config.devices, num_nodes=config.num_nodes, strategy=config.strategy,
        callbacks=[best, last, EpochSeeding(seed), *([] if quiet else [StageProgressBar(stage)])],
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # the loaders' own samplers split the windows over the processes
        logger=stage_loggers(loggers, run, stage),
        deterministic=True, num_sanity_val_steps=0, enable_progress_bar=not quiet,
        enable_model_summary=not quiet, log_every_n_steps=10, default_root_dir=run.path,
    )


def best_weights(trainer: pl.Trainer, module: pl.LightningModule) -> float | None:
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

