"""Typed experiment configuration, YAML presets and dotted overrides.

Defaults live in the dataclasses below and nowhere else; a preset YAML (``presets/NAME.yaml``) or a
user's YAML file overrides some of them, and command-line options override both.
YAML is read with ``yaml.safe_load`` only: configs are data, never code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from dyffusion.data.splits import SplitConfig
from dyffusion.ensemble import PRECISIONS
from dyffusion.errors import ConfigError
from dyffusion.method.sampler import SAMPLERS
from dyffusion.networks.config import NetworkConfig

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class DataConfig:
    """How snapshots become training windows.

    horizon: h, the number of data time steps one forecast chunk spans.
    time_stride: use every n-th stored frame (coarser data time step).
    window_stride: distance between the starts of consecutive training windows.
    val_window_stride: the same for validation windows (``None``: one window per horizon).
    normalization: ``channel`` (one mean and std per channel) or ``point`` (per channel and grid point).
    split: how a single data file is split into train, val and test (see :class:`SplitConfig`).
    """

    horizon: int = 16
    time_stride: int = 1
    window_stride: int = 1
    val_window_stride: int | None = None
    normalization: str = "channel"
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        _check_minimums("data", self, horizon=1, time_stride=1, window_stride=1, val_window_stride=1)


@dataclass
class InterpolatorConfig:
    """Stage 1: ``I(x_t, x_{t+h}, i) -> x_{t+i}``, trained with MSE, stochastic through MC dropout.

    val_members: ensemble size of the validation CRPS used to pick the checkpoint.
    val_times: how many interpolation times (evenly spread over 1..h-1) the validation CRPS averages; 0 = all.
    time_share: fraction of a ``--max-minutes`` budget given to this stage.
    """

    network: NetworkConfig = field(default_factory=lambda: NetworkConfig(dropout=0.15))
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 64
    val_members: int = 20
    val_times: int = 8
    time_share: float = 0.4

    def __post_init__(self) -> None:
        _check_minimums("interpolator", self, batch_size=1, val_members=1)


@dataclass
class ForecasterConfig:
    """Stage 2: ``F(x_{t+i_n}, i_n, cond) -> x_{t+h}`` with the frozen interpolator.

    schedule / extra_steps: the step -> time map (``before_t1_only`` with k extra steps, or ``linear``).
    conditioning: ``data`` (x_t concatenated), ``none``, or ``data+noise``.
    loss_weights: (a, b) of ``a * L1 + b * L2`` (L2 is the one-step look-ahead term).
    val_members: ensemble size of the sampled validation CRPS used to pick the checkpoint.
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    schedule: str = "before_t1_only"
    extra_steps: int = 0
    conditioning: str = "data"
    loss_weights: tuple[float, float] = (0.5, 0.5)
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 64
    val_members: int = 10

    def __post_init__(self) -> None:
        _check_minimums("forecaster", self, batch_size=1, val_members=1)


@dataclass
class SamplingConfig:
    """Inference defaults (each can be changed per call).

    sampler: ``cold`` (Algorithm 2), ``naive`` (Algorithm 1) or ``heun`` (second order, see ``sample_horizon``).
    steps: which diffusion steps to visit: ``all``, ``dynamical``, ``every:m``, ``first:m`` or a list.
    refine: re-predict the intermediate lead times from the final forecast.
    members: ensemble size.
    max_batch: largest number of samples (initial conditions x members) in one network call.
    precision: ``float32``, or ``bfloat16`` to run the networks under bfloat16 autocast (faster on CPUs with
    bfloat16 instructions; the sampler's state stays float32).
    ddim_steps: DDPM/MCVD sample with DDIM in this many steps (None: every diffusion step, ancestral).

    DYffusion's ``fit`` replaces ``steps`` by the step list of lowest validation CRPS (``choose_steps``; see
    :mod:`dyffusion.evaluation.choose_steps`): the frontier's candidates, the configured steps among them, scored
    with ``choose_members`` members over ``choose_rollout`` lead steps (None: whole validation trajectories) from
    ``choose_inits`` initial conditions (None: each trajectory's first frame, as ``evaluate``);
    ``choose_subdivisions`` K adds "all xK", every interval split into K (fractional steps, unseen in training).
    """

    sampler: str = "cold"
    steps: Union[str, list[float]] = "all"
    refine: bool = True
    members: int = 20
    max_batch: int = 1024
    precision: str = "float32"
    ddim_steps: int | None = None
    choose_steps: bool = True
    choose_members: int = 10
    choose_rollout: int | None = None
    choose_inits: int | None = None
    choose_subdivisions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_minimums("sampling", self, members=1, max_batch=1, ddim_steps=1, choose_members=1, choose_rollout=1,
                        choose_inits=1)
        if any(parts < 2 for parts in self.choose_subdivisions):
            raise ConfigError(f"sampling.choose_subdivisions must each be >= 2, got {list(self.choose_subdivisions)}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampling.sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"sampling.precision must be float32 or bfloat16, got {self.precision!r}")


@dataclass
class BaselineConfig:
    """The paper's baselines (SPEC section 6), trained on the same data and backbone.

    ``dropout`` and ``perturbation``: one time-conditioned forecaster ``G(x_t, j) -> x_{t+j}``, j in 1..h, MSE.
    Dropout samples with MC dropout; Perturbation adds Gaussian noise of scale ``perturbation_scale`` (in
    normalised units) to x_t, the scale chosen after training on validation CRPS among ``perturbation_scales``.
    ``ddpm`` and ``mcvd``: Gaussian diffusion over the h future frames stacked on channels, epsilon prediction,
    ``diffusion_steps`` steps with the ``cosine`` (ddpm) or ``linear`` (mcvd) schedule unless ``noise_schedule``
    says otherwise; validation samples with DDIM in ``val_ddim_steps`` steps (inference: ``sampling.ddim_steps``).
    ``denoiser_width``: the DDPM/MCVD network's width; unset, ``network.width`` raised to the h x C channels it
    predicts (a narrower network cannot represent their noise, and is refused when given).
    ``clip``: the sampler clamps each predicted x0 to [-clip, clip] (normalised units), as DDPM clamps images to
    [-1, 1]; without it the cosine schedule's last step (beta = 0.999) amplifies an untrained denoiser's error
    about 30-fold and rollouts overflow.
    """

    network: NetworkConfig = field(default_factory=lambda: NetworkConfig(dropout=0.15))
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    batch_size: int = 64
    val_members: int = 10
    perturbation_scales: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    perturbation_scale: float | None = None
    diffusion_steps: int = 1000
    noise_schedule: str | None = None
    val_ddim_steps: int = 20
    clip: float | None = 5.0
    denoiser_width: int | None = None

    def __post_init__(self) -> None:
        _check_minimums("baseline", self, batch_size=1, val_members=1, diffusion_steps=1, val_ddim_steps=1,
                        denoiser_width=1)


@dataclass
class TrainerConfig:
    """Budget and hardware for both stages, passed on to Lightning.

    max_minutes caps the whole fit (both stages); max_epochs caps each stage.
    batches_per_epoch: how often to validate (and checkpoint); ``None`` = a full pass over the windows. A
        training split of fewer batches is shuffled several times end to end to fill the epoch.
    """

    max_epochs: int | None = 10
    max_minutes: float | None = None
    batches_per_epoch: int | None = 200
    val_batches: int | None = None
    gradient_clip: float = 1.0
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: Union[int, str] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    num_workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        # Lightning reads max_epochs = -1 as "no limit": a negative budget would train forever.
        _check_minimums("trainer", self, max_epochs=1, batches_per_epoch=1, val_batches=1, num_workers=0)
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"trainer.max_minutes must be > 0, got {self.max_minutes:g}")


MEMBER_DIMS = ("member", "number", "realization", "sample")  # names verification tools use for the ensemble


@dataclass
class ExperimentConfig:
    """``method``: a name in :data:`dyffusion.methods.METHODS` (checked there, by ``method_of``); the sections
    of the other methods are ignored."""

    name: str = "default"
    method: str = "dyffusion"
    data: DataConfig = field(default_factory=DataConfig)
    interpolator: InterpolatorConfig = field(default_factory=InterpolatorConfig)
    forecaster: ForecasterConfig = field(default_factory=ForecasterConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def _check_minimums(section: str, config: Any, **minimums: int) -> None:
    """Counts and sizes below their minimum (``None`` means unset and passes) are a ConfigError."""
    for name, minimum in minimums.items():
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ConfigError(f"{section}.{name} must be >= {minimum}, got {value}")


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    if dataclasses.is_dataclass(annotation):
        return "a mapping"
    if typing.get_origin(annotation) is None and hasattr(annotation, "__name__"):
        return annotation.__name__
    return str(annotation)


def available_presets() -> list[str]:
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn plain YAML data into the annotated type, or raise ConfigError naming the key."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(annotation, value, where)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {' or '.join(_type_name(option) for option in options)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        items = [_coerce(item, item_type, f"{where}[{i}]") for i, item in enumerate(value)]
        if origin is tuple and len(args) > 1 and args[1] is not Ellipsis and len(items) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(items)}")
        return tuple(items) if origin is tuple else items
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and type(value) is annotation:
        return value
    raise ConfigError(f"{where}: expected {_type_name(annotation)}, got {value!r}")


def _from_dict(cls: type, values: dict, where: str = "config") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys are {sorted(known)}")
    defaults = cls()
    kwargs = {}
    for name in known:
        if name in values:
            current = getattr(defaults, name)
            if dataclasses.is_dataclass(current) and isinstance(values[name], dict):
                # Nested sections merge into their defaults rather than replacing them.
                merged = _merge(dataclasses.asdict(current), values[name])
                kwargs[name] = _coerce(merged, hints[name], f"{where}.{name}")
            else:
                kwargs[name] = _coerce(values[name], hints[name], f"{where}.{name}")
    return cls(**kwargs)


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict:
    try:
        content = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a config is YAML text)") from None
    except yaml.YAMLError as error:
        # PyYAML's messages span lines (a quoted excerpt and a caret); one line says where and what.
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        if isinstance(error, yaml.constructor.ConstructorError):
            raise ConfigError(f"{path}{where}: refused: {problem} (a config is plain YAML data; tags that build "
                              "Python objects are never loaded)") from None
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return content


def nested(key: str, value: Any) -> dict:
    """``("a.b.c", value)`` -> ``{"a": {"b": {"c": value}}}``."""
    *parents, last = key.split(".")
    result: dict = {last: value}
    for part in reversed(parents):
        result = {part: result}
    return result


def parse_override(text: str) -> dict:
    """``"a.b.c=value"`` -> ``{"a": {"b": {"c": value}}}`` with the value read as YAML data."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML") from None
    return nested(key.strip(), value)


def _read_preset(name_or_path: str | Path, seen: tuple[str, ...] = ()) -> dict:
    """A preset's or YAML file's values; a top-level ``extends: OTHER`` starts from OTHER's values."""
    path = Path(name_or_path)
    if not path.suffix and (PRESET_DIR / f"{name_or_path}.yaml").exists():
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(
            f"config {str(name_or_path)!r} is neither a YAML file nor a preset ({', '.join(available_presets())})"
        )
    values = _read_yaml(path)
    values.setdefault("name", path.stem)
    base = values.pop("extends", None)
    if base is None:
        return values
    if str(base) in seen:
        raise ConfigError(f"{path}: 'extends' goes round in a circle ({' -> '.join((*seen, str(base)))})")
    return _merge(_read_preset(base, (*seen, str(name_or_path))), values)


def load_config(name_or_path: str | Path | None = None, overrides: list[dict] | None = None) -> ExperimentConfig:
    """A preset name (see :func:`available_presets`) or a YAML path, then overrides, on the defaults."""
    values: dict = {}
    if name_or_path is not None:
        values = _read_preset(name_or_path)
    for override in overrides or []:
        values = _merge(values, override)
    return _from_dict(ExperimentConfig, values)


def config_to_dict(config: Any) -> dict:
    """A plain, YAML-safe dict (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    return plain(dataclasses.asdict(config))


def save_config(config: ExperimentConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def read_config(path: Path) -> ExperimentConfig:
    values = _read_yaml(path)
    baseline = values.get("baseline")
    if isinstance(baseline, dict) and "ddim_steps" in baseline:  # runs written before it moved to sampling
        values.setdefault("sampling", {}).setdefault("ddim_steps", baseline.pop("ddim_steps"))
    try:
        return _from_dict(ExperimentConfig, values)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None
