"""Conditional Gaussian diffusion (DDPM / DDIM) for the paper's baselines, as plain PyTorch functions.

The DDPM baseline diffuses the h future frames stacked on channels (K = h * C) and conditions the network
on the initial condition (plus static channels) by concatenation; it uses the cosine schedule (Nichol &
Dhariwal 2021). The MCVD-style baseline is the same with the linear schedule of Ho et al. (2020).

Indexing: diffusion step ``n = 0..T-1`` is DDPM's ``t = n + 1``, so ``betas[n]`` is the noise added going
from ``x_n`` to ``x_{n+1}`` in DDPM's 1-based notation and ``abar_n = prod_{i <= n} (1 - betas[i])`` is the
signal fraction of the noisy state the network sees at step ``n``; ``abar_{-1} = 1`` is the clean data.

A denoiser is any callable ``denoiser(noisy (B, K, H, W), condition (B, Cc, H, W), step (B,) float32)`` that
returns the predicted noise (B, K, H, W); ``step`` holds the indices ``n`` of the full T-step schedule, also
when DDIM skips steps, so one network serves every sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from dyffusion.errors import ConfigError, UserError

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
SCHEDULE_NAMES = ("cosine", "linear")


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensor fields element-wise has no truth value
class NoiseSchedule:
    """The variances ``betas`` (T,) float64 of the forward process, ``betas[n]`` in (0, 1)."""

    betas: torch.Tensor

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64).detach().cpu()
        if betas.dim() != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor (got shape {tuple(betas.shape)})")
        # beta = 0 would make 1 - abar_0 = 0 (no noise to predict); beta = 1 would erase the data.
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must lie in (0, 1)")
        object.__setattr__(self, "betas", betas)

    @classmethod
    def cosine(cls, num_steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """Nichol & Dhariwal's schedule: ``abar_n = f(n + 1) / f(0)``, ``f(t) = cos^2((t/T + s) / (1 + s) pi/2)``.

        ``betas[n] = 1 - f(n + 1) / f(n)``, clipped at ``max_beta`` to avoid the singularity at ``t = T`` (where
        f = 0), so ``alphas_cumprod`` follows the closed form exactly except where the clip is active
        (the last step for T = 1000).
        """
        _check_num_steps(num_steps)
        t = torch.arange(num_steps + 1, dtype=torch.float64)
        f = torch.cos((t / num_steps + offset) / (1 + offset) * math.pi / 2) ** 2
        return cls((1 - f[1:] / f[:-1]).clamp(max=max_beta))

    @classmethod
    def linear(cls, num_steps: int = 1000, start: float = 1e-4, end: float = 0.02) -> "NoiseSchedule":
        """Ho et al.'s schedule: betas evenly spaced from ``start`` (step 0) to ``end`` (step T-1)."""
        _check_num_steps(num_steps)
        return cls(torch.linspace(start, end, num_steps, dtype=torch.float64))

    @classmethod
    def named(cls, name: str, num_steps: int) -> "NoiseSchedule":
        """``cosine`` or ``linear`` with their default parameters."""
        if name == "cosine":
            return cls.cosine(num_steps)
        if name == "linear":
            return cls.linear(num_steps)
        raise ConfigError(f"unknown noise schedule {name!r}; choose one of {SCHEDULE_NAMES}")

    @property
    def num_steps(self) -> int:
        """T."""
        return self.betas.numel()

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """``abar_n = prod_{i <= n} (1 - betas[i])``, (T,) float64, decreasing."""
        return torch.cumprod(1 - self.betas, dim=0)


def _check_num_steps(num_steps: int) -> None:
    if num_steps < 1:
        raise ConfigError(f"num_steps must be at least 1 (got {num_steps})")


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) float64 -> (B, 1, ..., 1) in the dtype and device of ``like``, to broadcast over a sample."""
    return values.to(device=like.device, dtype=like.dtype).reshape(-1, *[1] * (like.dim() - 1))


def q_sample(x0: torch.Tensor, step: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """The forward marginal ``x_n = sqrt(abar_n) x0 + sqrt(1 - abar_n) noise``; x0, noise (B, ...), step (B,) long."""
    abar = schedule.alphas_cumprod[step.cpu().long()]
    return _per_sample(abar.sqrt(), x0) * x0 + _per_sample((1 - abar).sqrt(), x0) * noise


def diffusion_loss(denoiser: Denoiser, x0: torch.Tensor, condition: torch.Tensor, schedule: NoiseSchedule,
                   step: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Epsilon-prediction MSE of Ho et al. for targets x0 (B, K, H, W) given ``condition`` (B, Cc, H, W).

    step: (B,) long diffusion steps; by default uniform in 0..T-1 per sample (torch's global RNG).
    valid: bool (B, H, W) or broadcastable (e.g. (H, W)), True where a grid point counts; the loss is the
    mean over channels and valid points (an all-invalid mask gives 0 rather than NaN).
    """
    batch = x0.shape[0]
    if step is None:
        step = torch.randint(0, schedule.num_steps, (batch,), device=x0.device)
    noise = torch.randn_like(x0)
    noisy = q_sample(x0, step, noise, schedule)
    error = (denoiser(noisy, condition, step.to(device=x0.device, dtype=torch.float32)) - noise) ** 2
    if valid is None:
        return error.mean()
    mask = torch.broadcast_to(valid.to(device=x0.device), (batch, *x0.shape[2:])).to(error.dtype)
    return (error.mean(dim=1) * mask).sum() / mask.sum().clamp(min=1)


def _predict_x0(denoiser: Denoiser, x: torch.Tensor, condition: torch.Tensor, n: int, abar: torch.Tensor,
                clip: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One network call at step n: (predicted x0, the noise consistent with it) for the state x."""
    step = torch.full((x.shape[0],), float(n), dtype=torch.float32, device=x.device)
    eps = denoiser(x, condition, step)
    a = float(abar[n])
    x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        # Re-derive the noise so the update stays consistent with the clamped x0.
        eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
    return x0, eps


def _check_shape(shape: tuple, condition: torch.Tensor) -> None:
    if len(shape) < 1 or shape[0] != condition.shape[0]:
        raise ValueError(f"shape {tuple(shape)} must start with the batch size {condition.shape[0]} of the condition")


@torch.no_grad()
def ancestral_sample(denoiser: Denoiser, condition: torch.Tensor, shape: tuple, schedule: NoiseSchedule,
                     progress: bool = False, clip: float | None = None) -> torch.Tensor:
    """DDPM's reverse process: T network calls from ``x_{T-1} ~ N(0, I)`` of ``shape`` (B, K, H, W) to a sample.

    Each step draws from the Gaussian posterior q(x_{n-1} | x_n, x0 = predicted x0), variance ``beta_tilde``
    (zero at the last step, which returns the predicted x0). ``clip`` clamps the predicted x0 to [-clip, clip].
    Computes in the dtype and device of ``condition``.
    """
    _check_shape(shape, condition)
    abar = schedule.alphas_cumprod
    x = torch.randn(shape, dtype=condition.dtype, device=condition.device)
    for n in tqdm(range(schedule.num_steps - 1, -1, -1), desc="DDPM", unit="step", disable=not progress):
        x0, _ = _predict_x0(denoiser, x, condition, n, abar, clip)
        if n > 0:  # at n = 0 the posterior is a point mass at the predicted x0
            a, a_prev, beta = float(abar[n]), float(abar[n - 1]), float(schedule.betas[n])
            # Posterior mean and variance of Ho et al. eq. (7), with the scalars in float64.
            mean = (beta * math.sqrt(a_prev) / (1 - a)) * x0 + (math.sqrt(1 - beta) * (1 - a_prev) / (1 - a)) * x
            x = mean + math.sqrt(beta * (1 - a_prev) / (1 - a)) * torch.randn_like(x)
    return x0


def ddim_steps(num_train_steps: int, num_steps: int) -> list[int]:
    """Evenly spaced steps visited by DDIM, decreasing from T-1 to 0 (just [T-1] when ``num_steps`` is 1)."""
    if not 1 <= num_steps <= num_train_steps:
        raise UserError(f"DDIM num_steps must be in 1..{num_train_steps} (got {num_steps})")
    if num_steps == 1:
        return [num_train_steps - 1]
    # Spacing (T-1)/(S-1) >= 1, so the rounded steps are distinct.
    return torch.linspace(0, num_train_steps - 1, num_steps, dtype=torch.float64).round().long().flip(0).tolist()


@torch.no_grad()
def ddim_sample(denoiser: Denoiser, condition: torch.Tensor, shape: tuple, schedule: NoiseSchedule,
                num_steps: int = 50, eta: float = 0.0, progress: bool = False,
                clip: float | None = None) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) over ``ddim_steps(T, num_steps)`` from pure noise of ``shape`` (B, K, H, W).

    eta = 0 is deterministic given the initial noise; eta = 1 with num_steps = T is DDPM's ancestral sampler.
    ``clip`` clamps the predicted x0. Computes in the dtype and device of ``condition``.
    """
    _check_shape(shape, condition)
    steps = ddim_steps(schedule.num_steps, num_steps)
    abar = schedule.alphas_cumprod
    x = torch.randn(shape, dtype=condition.dtype, device=condition.device)
    for j, n in enumerate(tqdm(steps, desc="DDIM", unit="step", disable=not progress)):
        x0, eps = _predict_x0(denoiser, x, condition, n, abar, clip)
        a = float(abar[n])
        a_prev = float(abar[steps[j + 1]]) if j + 1 < len(steps) else 1.0
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
        # max(0, .): rounding could make the remaining noise variance slightly negative when eta = 1.
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(0.0, 1 - a_prev - sigma ** 2)) * eps
        if sigma > 0:
            x = x + sigma * torch.randn_like(x)
    return x
