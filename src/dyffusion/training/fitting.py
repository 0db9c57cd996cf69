"""``fit``: train a method's stages (``dyffusion.methods``) with Lightning into a self-contained run directory.

Crash safety: every file of the run is written atomically (temporary file, then rename), Lightning's checkpoints
included. A stage is *finished* once its best weights are in ``RUN/<stage>.safetensors`` and ``training.json``
says ``"finished": true``; ``fit(..., resume=True)`` skips finished stages and continues an interrupted one from
its ``last.ckpt`` (written at every epoch end; see :mod:`dyffusion.training.lightning` for the seeding that makes
the redone epoch replay the interrupted one).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as pl
import torch

from dyffusion.config import ExperimentConfig, config_to_dict, read_config, save_config
from dyffusion.data.contract import GriddedData
from dyffusion.data.frames import LazyFrames
from dyffusion.data.normalization import Normalizer
from dyffusion.data.spec import DataSpec
from dyffusion.data.splits import open_split
from dyffusion.data.windows import WindowDataset
from dyffusion.distributed import barrier, is_global_zero, quiet_lightning
from dyffusion.errors import ConfigError, RunError, UserError
from dyffusion.io import load_weights, save_tensors, save_weights, write_json
from dyffusion.methods import Method, method_of
from dyffusion.run import Run, RunDir
from dyffusion.training.choices import CHOICES
from dyffusion.training.lightning import best_weights, check_loggers, loader, read_checkpoint, stage_trainer

# What a resumed run may change: the budget, and the outputs of training kept in config.yaml (the Perturbation
# scale, DYffusion's sampling steps chosen on validation).
RESUMABLE_CHANGES = ("trainer.max_epochs", "trainer.max_minutes", "baseline.perturbation_scale", "sampling.steps")


def windows(data: GriddedData, spec: DataSpec, horizon: int, stride: int, **flags) -> WindowDataset:
    """The split's windows as the networks see them: normalised frames, static channels plus the mask channel."""
    return WindowDataset(data.values, spec.normalizer, spec.network_static(data), horizon, stride, data.valid,
                         **flags)


@dataclass
class Fitting:
    """What every stage of one ``fit`` shares. ``summary``: training.json as it is being written; ``started``:
    time.monotonic() when this process began."""

    config: ExperimentConfig
    method: Method
    spec: DataSpec
    val: GriddedData
    val_windows: WindowDataset
    files: RunDir
    summary: dict
    started: float
    quiet: bool
    resume: bool
    loggers: Sequence[str]

    def remaining(self, spent_before: float = 0.0) -> float | None:
        """Minutes of ``trainer.max_minutes`` left: less this process's time and ``spent_before`` (earlier ones')."""
        if not self.config.trainer.max_minutes:
            return None
        return max(self.config.trainer.max_minutes - spent_before - (time.monotonic() - self.started) / 60, 0.1)


def _train_stage(fitting: Fitting, module: pl.LightningModule, network: torch.nn.Module, stage: str,
                 max_minutes: float | None, batch_size: int, train: WindowDataset, seed: int) -> None:
    """Fit one stage (with ``resume``, from its ``last.ckpt`` if there is one), keep its best validated weights,
    save them as ``RUN/<stage>.safetensors``, then record the stage as finished in ``RUN/training.json``."""
    files, config = fitting.files, fitting.config.trainer
    last = files.last_checkpoint(stage)
    restart = last if fitting.resume and last.exists() else None
    if restart and config.max_epochs is not None:
        # Lightning refuses a checkpoint beyond max_epochs; a budget smaller than the epochs done means done.
        done = read_checkpoint(restart).get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
        config = replace(config, max_epochs=max(config.max_epochs, done.get("current", {}).get("completed", 0)))
    trainer = stage_trainer(config, files, stage, max_minutes, fitting.quiet, seed, fitting.loggers)
    processes = trainer.num_nodes * trainer.num_devices
    val = fitting.val_windows
    if len(val) < processes:  # a process without validation windows would leave the others waiting for its scores
        raise RunError(f"{len(val)} validation windows cannot be shared by {processes} processes: each needs one; "
                       "use fewer --devices or more validation data")
    started = time.monotonic()
    # Lightning restores weights, optimizer, epoch and step counters and callback states from last.ckpt with
    # torch.load(weights_only=True): tensors and plain containers only, nothing that could run code.
    trainer.fit(module, loader(train, batch_size, config, seed), loader(val, batch_size, config, None),
                ckpt_path=restart, weights_only=True)
    best = best_weights(trainer, module)
    fitting.summary[stage] = {"best_val_crps": best, "epochs": trainer.current_epoch, "steps": trainer.global_step,
                              "minutes": (time.monotonic() - started) / 60, "finished": True}
    if trainer.is_global_zero:
        save_weights(network, files.weights(stage))
        write_json(files.summary, fitting.summary)  # after the weights: "finished" never names a missing file


def _wanted(method: Method, stage: str) -> tuple[str, ...]:
    """The stages ``--stage`` asks to train (``both``: all of them)."""
    if stage == "both":
        return method.stages
    if len(method.stages) < 2:
        raise UserError(f"--stage {stage} is for methods of several stages; {method.label} has a single stage")
    if stage not in method.stages:
        raise UserError(f"unknown stage {stage!r}; choose both or one of {', '.join(method.stages)}")
    return (stage,)


def _fresh_stages(method: Method, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The stages (networks with their own checkpoints, logs and weights) a fit without resume starts from scratch:
    those it trains, and every later one, since a later stage is trained through the earlier ones."""
    return method.stages[method.stages.index(wanted[0]):]


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


def _resumed_config(files: RunDir, given: ExperimentConfig) -> ExperimentConfig:
    """The run's stored config (the truth) with the budget of ``given``; any other difference is refused."""
    stored = read_config(files.config)
    changed = [f"{key} {old!r} -> {new!r}" for key, old, new in _differences(config_to_dict(stored),
                                                                           config_to_dict(given))
               if key not in RESUMABLE_CHANGES]
    if changed:
        raise RunError(f"cannot resume {files.path}: it was started with another configuration "
                       f"({'; '.join(changed)}); give the options it was started with (only --max-epochs/"
                       "--max-minutes may change)")
    budget = replace(stored.trainer, max_epochs=given.trainer.max_epochs, max_minutes=given.trainer.max_minutes)
    return replace(stored, trainer=budget)


def _refuse_interrupted(files: RunDir, summary: dict, stages: tuple[str, ...]) -> None:
    """Starting over would throw away an interrupted stage's checkpoint: that takes an explicit choice."""
    for name in stages:
        if files.stage_status(name, summary) == "interrupted":
            raise RunError(f"{files.path} holds an interrupted {name} stage (checkpoints/{name}/last.ckpt): "
                           "continue it with --resume, or train into a new --out")


def _start_over(files: RunDir, summary: dict, method: Method, stages: tuple[str, ...]) -> None:
    """Remove what earlier training left of ``stages``: checkpoints, logs and weights first, then their entries
    in training.json, so that no interruption leaves a stage that looks finished or resumable but is not."""
    for name in stages:
        shutil.rmtree(files.checkpoints(name), ignore_errors=True)
        shutil.rmtree(files.logs(name), ignore_errors=True)
        files.weights(name).unlink(missing_ok=True)
    # The validation choices are made on the last stage's network.
    entries = [*stages, *method.choices] if method.stages[-1] in stages else list(stages)
    if any(key in summary for key in entries):
        for key in entries:
            summary.pop(key, None)
        write_json(files.summary, summary)


def fit(data: str | Path, out: str | Path, config: ExperimentConfig, stage: str = "both",
        quiet: bool = False, resume: bool = False, stream: bool | None = None,
        loggers: Sequence[str] = ("csv",)) -> Run:
    """Train on ``data`` (a directory with ``train`` and ``val`` splits, or one file split by
    ``config.data.split``) into the run directory ``out``; ``stage``: ``both`` (every stage of the method) or the
    name of one of DYffusion's two.

    ``resume``: continue a run that was interrupted. Its own config.yaml is used (only the budget may differ from
    ``config``), finished stages are loaded instead of trained, the interrupted stage continues from its
    ``last.ckpt``; a run without a checkpoint yet starts from scratch. Without ``resume``, the stages to train
    start from scratch (DYffusion's stage 2 too when stage 1 does: it depends on it) and earlier checkpoints,
    logs and weights of them are removed, but a stage that was interrupted is refused rather than thrown away.
    ``stream``: read training windows from disk as they are needed (True), load the splits into memory (False),
    or stream when they would crowd the memory (None).
    ``loggers``: where the training curves go, any of :data:`~dyffusion.training.lightning.LOGGER_PACKAGES`.

    With several processes (DDP: ``config.trainer`` devices, num_nodes, strategy), Lightning starts the others when
    training begins by running the command line again, so every process runs this function: only global rank 0
    writes or deletes files, and all return the run once it is written.
    """
    check_loggers(loggers)
    files = RunDir(Path(out))
    if resume and files.config.exists():
        config = _resumed_config(files, config)
    method = method_of(config)
    method.check(config)
    wanted = _wanted(method, stage)
    if config.trainer.max_epochs is None and not config.trainer.max_minutes:
        raise UserError("no training budget: give --max-epochs or --max-minutes (trainer.max_epochs/max_minutes)")
    summary = files.read_summary()
    if resume and summary.get("data") and Path(summary["data"]) != Path(data).resolve():
        raise RunError(f"cannot resume {files.path}: it was trained on {summary['data']}, not on "
                       f"{Path(data).resolve()}")
    if not resume:
        _refuse_interrupted(files, summary, _fresh_stages(method, wanted))
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
    if wanted[0] != method.stages[0]:
        spec = Run.load(files.path, stages=()).spec  # the normalisation the earlier stages were trained with
    elif resume and files.data.exists():
        spec = DataSpec.from_dict(json.loads(files.data.read_text()))
    else:
        if config.data.normalization not in ("channel", "point"):
            raise ConfigError(f"data.normalization must be 'channel' or 'point', got {config.data.normalization!r}")
        normalizer = Normalizer.fit(train.values, train.valid, per_point=config.data.normalization == "point",
                                    progress=not quiet and isinstance(train.values, LazyFrames))
        spec = DataSpec.from_data(train, normalizer, config.data.time_stride)
    spec.check(val)
    method.check(config, spec)  # before any file is written
    # The other DDP processes redo the above (rank 0 waits for them in its first trainer.fit) to reach the same
    # decisions from the same files; only rank 0 writes.
    writer = is_global_zero()
    if writer:
        if not resume:
            _start_over(files, summary, method, _fresh_stages(method, wanted))
        files.path.mkdir(parents=True, exist_ok=True)
        save_config(config, files.config)
        write_json(files.data, spec.to_dict())
        if train.static.shape[1] and (train.static == train.static[:1]).all():
            # Static conditions shared by all trajectories travel with the model, so a bare tensor can be forecast.
            save_tensors({"static": torch.from_numpy(train.static[0])}, files.static)

    summary["data"] = str(Path(data).resolve())
    if writer:
        write_json(files.summary, summary)
    val_windows = windows(val, spec, config.data.horizon, config.data.val_window_stride or config.data.horizon,
                          with_window=True)
    fitting = Fitting(config, method, spec, val, val_windows, files, summary, started, quiet, resume, loggers)
    trained = _fit_stages(fitting, train, wanted)
    if method.stages[-1] in wanted:
        for choice in method.chooses(config):
            if not (resume and choice in summary):
                CHOICES[choice](fitting, trained)
    summary["total_minutes"] = (time.monotonic() - started) / 60
    if writer:
        write_json(files.summary, summary)
    barrier()  # the other processes load the run once rank 0 has written all of it
    return Run.load(files.path, stages=method.stages[:method.stages.index(wanted[-1]) + 1])


def _fit_stages(fitting: Fitting, train: GriddedData, wanted: tuple[str, ...]) -> dict[str, torch.nn.Module]:
    """Train the ``wanted`` stages in order, each seeded with ``trainer.seed + its index``; the earlier stages
    they are trained through are loaded from the run. Returns the networks of the stages trained or loaded."""
    config, method, files, summary = fitting.config, fitting.method, fitting.files, fitting.summary
    trainer_config, horizon = config.trainer, config.data.horizon
    trained: dict[str, torch.nn.Module] = {}
    last_wanted = method.stages.index(wanted[-1])
    spent_before = 0.0  # minutes an earlier process spent on stages finished before this one started
    for index, name in enumerate(method.stages[:last_wanted + 1]):
        seed = trainer_config.seed + index
        if name in wanted and not (fitting.resume and files.finished(name, summary)):
            pl.seed_everything(seed, workers=True, verbose=False)
            module, network = method.stage_module(name, config, fitting.spec, trained)
            share = method.time_share(name, config)
            if share is None:
                budget = fitting.remaining(spent_before)
            else:
                budget = trainer_config.max_minutes * share if trainer_config.max_minutes else None
            _train_stage(fitting, module, network, name, budget, method.batch_size(name, config),
                         windows(train, fitting.spec, horizon, config.data.window_stride,
                                 **method.training_windows(name, horizon)), seed)
        else:
            if not files.weights(name).exists():
                raise RunError(f"{files.path} has no trained {name}: run `dyffusion fit --stage {name}` first")
            network = method.networks(config, fitting.spec)[name]
            load_weights(network, files.weights(name))
            if len(wanted) == len(method.stages):
                spent_before += summary[name].get("minutes", 0.0)
        trained[name] = network
    return trained
