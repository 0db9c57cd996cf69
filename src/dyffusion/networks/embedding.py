"""Embedding of a real-valued time (interpolation step or forecast horizon) and FiLM conditioning."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dyffusion.errors import ConfigError


def sinusoidal_embedding(time: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer-style sinusoidal features of a real-valued time.

    time: [B] float (fractional values such as 0.25 are fine). Returns [B, dim] with
    ``dim // 2`` sines then ``dim // 2`` cosines at frequencies spaced geometrically from 1
    down to ``1 / max_period`` (a zero column is appended when ``dim`` is odd). The highest
    frequency (1 rad per time unit) separates fractional steps; the lowest ones vary
    monotonically over the whole ~0..150 range, so both resolutions are available to the MLP.
    """
    if dim < 2:
        raise ConfigError(f"time embedding dim must be >= 2, got {dim}")
    half = dim // 2
    # Computed in float32 whatever the input dtype: sin/cos of t*freq loses precision in half.
    exponent = torch.arange(half, device=time.device, dtype=torch.float32) / half
    freqs = torch.exp(-math.log(max_period) * exponent)
    args = time.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoid + MLP: time [B] -> [B, out_dim].

    The output is already passed through SiLU so that each block's FiLM projection is a single
    Linear (the usual "SiLU, Linear" per block, with the shared SiLU computed once).
    """

    def __init__(self, dim: int, out_dim: int | None = None, max_period: float = 10_000.0):
        super().__init__()
        out_dim = out_dim or 4 * dim
        self.dim = dim
        self.out_dim = out_dim
        self.max_period = max_period
        self.mlp = nn.Sequential(
            nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim), nn.SiLU()
        )

    def forward(self, time: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(time, self.dim, self.max_period))


class FiLM(nn.Module):
    """Per-channel scale and shift from the time embedding: h * (1 + scale) + shift.

    h: [B, C, H, W], emb: [B, E] -> [B, C, H, W]. The "1 +" keeps the block close to
    unconditioned at initialisation (scale ~ 0), which keeps the early optimisation stable.
    """

    def __init__(self, emb_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(emb_dim, 2 * channels)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.proj(emb)[:, :, None, None].chunk(2, dim=1)
        # addcmul: one fused kernel instead of three elementwise passes over h.
        return torch.addcmul(shift, h, 1.0 + scale)


def batch_time(time: Tensor | float, x: Tensor) -> Tensor:
    """Normalise the time argument to a [B] tensor on x's device (a scalar is broadcast)."""
    time = torch.as_tensor(time, device=x.device)
    if time.ndim == 0:
        time = time.expand(x.shape[0])
    if time.shape != (x.shape[0],):
        raise ValueError(
            f"time must have shape [B]=({x.shape[0]},) or be a scalar, got {tuple(time.shape)}"
        )
    return time
