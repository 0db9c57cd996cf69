"""Stage-1 objective (SPEC section 2)."""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, C, H, W) over points where ``valid`` (B, H, W) is True."""
    weights = valid[:, None].to(values.dtype).expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1)


def interpolator_loss(interpolator, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """MSE of ``I(x_t, x_{t+h}, i)`` against ``x_{t+i}``; the dataset drew ``i`` in 1..h-1 per sample."""
    prediction = interpolator(batch["initial"], batch["end"], batch["time"], batch["static"])
    return masked_mean((prediction - batch["target"]) ** 2, batch["valid"])
