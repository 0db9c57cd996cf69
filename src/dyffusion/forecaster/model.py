"""The forecaster ``F(x_{t+i_n}, i_n, cond) -> x_{t+h}`` as a plain module (no training code)."""

from __future__ import annotations

import torch
from torch import nn

from dyffusion.errors import ConfigError
from dyffusion.networks import NetworkConfig, build_network

CONDITIONING_MODES = ("data", "none", "data+noise")


class Forecaster(nn.Module):
    """forward(state (B, C, H, W), time (B,), initial (B, C, H, W), progress (B,), static (B, S, H, W)) -> (B, C, H, W)

    ``progress`` is n / (N - 1), the position of the diffusion step; only ``data+noise`` uses it, to blend
    the initial condition with fresh Gaussian noise: ``progress * x_t + (1 - progress) * eps``.
    """

    def __init__(self, network: NetworkConfig, channels: int, static_channels: int, conditioning: str = "data"):
        super().__init__()
        if conditioning not in CONDITIONING_MODES:
            raise ConfigError(f"unknown conditioning {conditioning!r}; choose one of {CONDITIONING_MODES}")
        self.conditioning = conditioning
        condition_channels = 0 if conditioning == "none" else channels
        self.network = build_network(network, channels + condition_channels + static_channels, channels)

    def condition(self, initial: torch.Tensor, progress: torch.Tensor) -> list[torch.Tensor]:
        if self.conditioning == "none":
            return []
        if self.conditioning == "data":
            return [initial]
        weight = progress.to(initial.dtype).reshape(-1, 1, 1, 1)
        return [weight * initial + (1 - weight) * torch.randn_like(initial)]

    def forward(self, state: torch.Tensor, time: torch.Tensor, initial: torch.Tensor, progress: torch.Tensor,
                static: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([state, *self.condition(initial, progress), static], dim=1)
        return self.network(inputs, time)
