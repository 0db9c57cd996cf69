"""The validation choices ``fit`` makes after a method's last stage (``Method.chooses``), by their names in
``training.json``: each is made on the validation split and kept in the run's config.yaml."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import lightning.pytorch as pl
import torch
from tqdm.auto import tqdm

from dyffusion.baselines.multistep import choose_perturbation_scale
from dyffusion.config import save_config
from dyffusion.distributed import is_global_zero, process_group_shard
from dyffusion.evaluation.choose_steps import choose_steps
from dyffusion.io import write_json
from dyffusion.run import Run
from dyffusion.training.lightning import loader

if TYPE_CHECKING:
    from dyffusion.training.fitting import Fitting


def _sampling_steps(fitting: Fitting, trained: dict[str, torch.nn.Module]) -> None:
    """DYffusion's sampling steps of lowest validation CRPS into config.yaml (``sampling.steps``), the scores of
    every candidate into ``training.json``."""
    config, files, summary = fitting.config, fitting.files, fitting.summary
    device = "cuda" if torch.cuda.is_available() and config.trainer.accelerator != "cpu" else "cpu"
    # ``val`` is already at the run's time stride: a spec of stride 1 keeps evaluate from striding it again.
    scored = Run(files.path, config, replace(fitting.spec, time_stride=1), dict(trained))
    # Under DDP each process samples its share of the initial conditions and all get rank 0's choice; one writes.
    summary["sampling_steps"] = choose_steps(scored.to(device), fitting.val, config.trainer.seed, fitting.quiet,
                                             process_group_shard())
    if is_global_zero():
        steps = summary["sampling_steps"]["setting"]
        save_config(replace(config, sampling=replace(config.sampling, steps=steps)), files.config)
        write_json(files.summary, summary)


def _perturbation_scale(fitting: Fitting, trained: dict[str, torch.nn.Module]) -> None:
    """The Perturbation baseline's noise scale of lowest validation CRPS into config.yaml
    (``baseline.perturbation_scale``), the score of every scale tried into ``training.json``."""
    config, baseline, trainer_config = fitting.config, fitting.config.baseline, fitting.config.trainer
    # Under DDP every process chooses on all validation windows, in batches as large as all processes' together
    # (a single process's choice with that batch size): the same scale from the same weights; one writes it.
    batches = loader(fitting.val_windows, baseline.batch_size * process_group_shard().count, trainer_config, None,
                     whole=True)
    batches = [b for i, b in enumerate(batches) if trainer_config.val_batches is None or i < trainer_config.val_batches]
    pl.seed_everything(trainer_config.seed, workers=True, verbose=False)
    scales = tqdm(baseline.perturbation_scales, desc="perturbation scale search", unit="scale",
                  disable=fitting.quiet or not is_global_zero())
    scale, scores = choose_perturbation_scale(trained["forecaster"], batches, config.data.horizon, scales,
                                              baseline.val_members)
    baseline.perturbation_scale = scale
    if is_global_zero():
        save_config(config, fitting.files.config)
    fitting.summary["perturbation"] = {"chosen_scale": scale, "val_crps_by_scale": scores}


CHOICES: dict[str, Callable[[Fitting, dict[str, torch.nn.Module]], None]] = {
    "sampling_steps": _sampling_steps,
    "perturbation": _perturbation_scale,
}
