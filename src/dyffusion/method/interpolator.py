"""The interpolator ``I(x_t, x_{t+h}, i) -> x_{t+i}`` (stage 1) and its objective, as plain PyTorch (no training
loop)."""

from __future__ import annotations

import torch
from torch import nn

from dyffusion.metrics.masked import masked_mean
from dyffusion.networks import NetworkConfig, build_network


class Interpolator(nn.Module):
    """Inputs x_t and x_{t+h} are concatenated on channels with the static conditions.

    forward(initial (B, C, H, W), end (B, C, H, W), time (B,), static (B, S, H, W)) -> (B, C, H, W)
    """

    def __init__(self, network: NetworkConfig, channels: int, static_channels: int):
        super().__init__()
        self.network = build_network(network, 2 * channels + static_channels, channels)

    def forward(self, initial: torch.Tensor, end: torch.Tensor, time: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        return self.network(torch.cat([initial, end, static], dim=1), time)


def interpolator_loss(interpolator, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """MSE of ``I(x_t, x_{t+h}, i)`` against ``x_{t+i}``; the dataset drew ``i`` in 1..h-1 per sample."""
    prediction = interpolator(batch["initial"], batch["end"], batch["time"], batch["static"])
    return masked_mean((prediction - batch["target"]) ** 2, batch["valid"])
