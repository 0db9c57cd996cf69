"""The mean over valid points that every loss and validation score takes."""

from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, C, H, W) over points where ``valid`` (B, H, W) is True."""
    weights = valid[:, None].to(values.dtype).expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1)
