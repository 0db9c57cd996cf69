"""A run directory: everything needed to forecast, and nothing that needs unpickling.

    RUN/config.yaml              the resolved ExperimentConfig
    RUN/data.json                channels, grid, time step, static names, boundary condition, normalisation
    RUN/<stage>.safetensors      the weights of each stage of the method (``dyffusion.methods``)
    RUN/static.safetensors       static conditions shared by all trajectories (to forecast a bare tensor)
    RUN/training.json            what each stage spent and its best validation scores, the validation choices
    RUN/checkpoints/<stage>/, RUN/logs/<stage>/   Lightning checkpoints (for resuming) and training logs

:class:`RunDir` is the one owner of these names; :class:`Run` is a loaded run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dyffusion.config import ExperimentConfig, SamplingConfig, read_config
from dyffusion.data.contract import DataError, GriddedData
from dyffusion.data.spec import DataSpec
from dyffusion.data.splits import open_split
from dyffusion.ensemble import EnsemblePipeline
from dyffusion.errors import RunError
from dyffusion.io import load_weights
from dyffusion.method.schedule import StepSchedule
from dyffusion.methods import Method, method_of


@dataclass(frozen=True)
class RunDir:
    """The paths of a run directory and what they say about its stages."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def data(self) -> Path:
        return self.path / "data.json"

    @property
    def summary(self) -> Path:
        return self.path / "training.json"

    @property
    def static(self) -> Path:
        return self.path / "static.safetensors"

    def weights(self, stage: str) -> Path:
        return self.path / f"{stage}.safetensors"

    def checkpoints(self, stage: str) -> Path:
        return self.path / "checkpoints" / stage

    def last_checkpoint(self, stage: str) -> Path:
        return self.checkpoints(stage) / "last.ckpt"

    def logs(self, stage: str | None = None) -> Path:
        return self.path / "logs" / stage if stage else self.path / "logs"

    def read_summary(self) -> dict:
        """``training.json`` ({} before training wrote it; RunError if it is not the summary a run writes)."""
        if not self.summary.exists():
            return {}
        try:
            summary = json.loads(self.summary.read_text())
        except ValueError:
            summary = None
        if not isinstance(summary, dict):
            raise RunError(f"{self.summary}: not the training summary a run writes")
        return summary

    def trained_on(self) -> Path | None:
        """The data the run was trained on, as ``training.json`` records it (None if it does not)."""
        source = self.read_summary().get("data")
        return Path(source) if source else None

    def finished(self, stage: str, summary: dict) -> bool:
        """The stage's best weights are saved and ``summary`` (training.json) records the stage as finished."""
        return bool(summary.get(stage, {}).get("finished")) and self.weights(stage).exists()

    def stage_status(self, stage: str, summary: dict) -> str:
        if self.finished(stage, summary):
            return "finished"
        return "interrupted" if self.last_checkpoint(stage).exists() else "not trained"


def read_run_description(path: Path) -> tuple[ExperimentConfig, DataSpec]:
    """The config and data description of the run directory ``path`` (RunError if it has none or they are not a
    run's); its weights need not be there yet."""
    files = RunDir(path)
    if not path.is_dir():
        raise RunError(f"run directory {path} does not exist")
    for file in (files.config, files.data):
        if not file.exists():
            raise RunError(f"run directory {path} is incomplete: {file.name} is missing (did training finish?)")
    try:
        config = read_config(files.config)
    except ValueError as error:  # names the file
        raise RunError(str(error)) from None
    try:
        spec = DataSpec.from_dict(json.loads(files.data.read_text()))
    except (KeyError, TypeError, ValueError) as error:
        raise RunError(f"{files.data}: not the data description a run writes ({type(error).__name__}: "
                       f"{error})") from None
    return config, spec


class Run:
    """A trained (or partly trained: some stages) model loaded from its directory."""

    def __init__(self, path: Path, config: ExperimentConfig, spec: DataSpec, models: dict[str, nn.Module]):
        self.path, self.config, self.spec, self.models = path, config, spec, models
        self.files = RunDir(path)

    @property
    def horizon(self) -> int:
        return self.config.data.horizon

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def parts(self) -> Method:
        """The methods table's entry for this run."""
        return method_of(self.config)

    @property
    def interpolator(self) -> nn.Module:
        return self.models["interpolator"]

    @property
    def forecaster(self) -> nn.Module:
        return self.models["forecaster"]

    @property
    def schedule(self) -> StepSchedule:
        return StepSchedule(self.horizon, self.config.forecaster.schedule, self.config.forecaster.extra_steps)

    @classmethod
    def load(cls, path: str | Path, stages: tuple[str, ...] | None = None) -> "Run":
        """``stages``: those whose weights must be there (default: all of the method's); the others are loaded
        when their weights exist (a run whose later stages are not trained yet)."""
        path = Path(path)
        config, spec = read_run_description(path)
        method = method_of(config)
        models = method.networks(config, spec)
        needed = method.stages if stages is None else stages
        files = RunDir(path)
        for name, module in models.items():
            file = files.weights(name)
            if not file.exists():
                if name not in needed:
                    continue
                raise RunError(f"run directory {path} is incomplete: {file.name} is missing (did training finish?)")
            try:
                load_weights(module, file)
            except ValueError as error:  # names the file and what is wrong with it
                raise RunError(str(error)) from None
        run = cls(path, config, spec, models)
        return run.to("cuda" if torch.cuda.is_available() else "cpu")

    def pipeline(self, sampling: SamplingConfig | None = None) -> EnsemblePipeline:
        """The method's ensemble sampler with ``sampling`` (default: the run's own ``config.sampling``)."""
        return self.parts.pipeline(self.models, self.config, sampling or self.config.sampling, self.spec.boundary())

    def split_data(self, split: str | None, data: str | Path | None = None,
                   stream: bool | None = None) -> GriddedData:
        """The ``split`` (None: all frames) of ``data``, by default the data the run was trained on; on the file
        it was trained on, the run's own split rule (``data.split``) says which frames a split holds."""
        trained_on = self.files.trained_on()
        path = data or trained_on
        if path is None:
            raise DataError(f"{self.path} does not record the data it was trained on: give the data (--data)")
        same_file = trained_on is not None and Path(path).resolve() == trained_on.resolve()
        rule = self.config.data.split if same_file and self.config.data.split.by else None
        return open_split(path, split, rule, stream)

    def to(self, device: str | torch.device) -> "Run":
        for module in self.models.values():
            module.to(device)
        return self
