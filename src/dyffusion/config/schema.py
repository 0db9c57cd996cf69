"""The typed experiment configuration: one dataclass per section, the defaults in them and nowhere else.

A preset YAML (``config/presets/NAME.yaml``), a user's YAML file and command-line options override some of
them (:mod:`dyffusion.config.loading`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from dyffusion.data.splits import SplitConfig
from dyffusion.ensemble import PRECISIONS
from dyffusion.errors import ConfigError
from dyffusion.method.sampler import SAMPLERS
from dyffusion.networks.config import NetworkConfig


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
    """The paper's baselines (its experiments: Perturbation, Dropout, DDPM, MCVD), trained on the same data and backbone.

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
