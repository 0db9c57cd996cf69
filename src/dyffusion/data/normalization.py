"""Standardisation fitted on the training split and stored with the model.

``per_point=False`` gives one mean and std per channel; ``per_point=True`` one per channel and grid point
(a climatology-style standardisation: for the spring mesh it removes the rest positions, so the network
sees displacements, not the grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Normalizer:
    """``(x - mean) / std``; channels sit at dim -3 of every tensor it touches.

    mean, std: (C, 1, 1) per channel or (C, H, W) per point, float64.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, valid: np.ndarray | None = None, per_point: bool = False) -> "Normalizer":
        """values (trajectories, time, C, H, W); valid (trajectories, H, W) or None."""
        channels, height, width = values.shape[2:]
        weights = np.ones((values.shape[0], height, width)) if valid is None else valid.astype(np.float64)
        axes = (0,) if per_point else (0, 1, 2)  # over trajectories (and grid points) after the time sums
        count = weights.sum(axes) * values.shape[1]
        mean = np.zeros((channels, height, width) if per_point else (channels, 1, 1))
        std = np.ones_like(mean)
        for c in range(channels):
            # Channel by channel keeps the float64 temporaries small on large data sets.
            data = values[:, :, c].astype(np.float64)
            first = (data.sum(1) * weights).sum(axes) / np.maximum(count, 1)
            second = ((data**2).sum(1) * weights).sum(axes) / np.maximum(count, 1)
            spread = np.sqrt(np.maximum(second - first**2, 0))
            mean[c] = np.reshape(first, mean[c].shape)
            # Constant channels or points (fixed particles, land) pass through unscaled.
            std[c] = np.reshape(np.where(spread > 1e-6 * np.maximum(np.abs(first), 1), spread, 1.0), std[c].shape)
        return cls(mean, std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._as(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._as(x)
        return x * std + mean

    def normalize_array(self, values: np.ndarray) -> np.ndarray:
        """A normalised float32 copy of a numpy array with channels at dim -3."""
        return (values - self.mean.astype(np.float32)) / self.std.astype(np.float32)

    def _as(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)
        return mean, std

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, values: dict) -> "Normalizer":
        return cls(np.asarray(values["mean"], dtype=np.float64), np.asarray(values["std"], dtype=np.float64))
