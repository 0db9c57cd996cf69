"""Per-channel standardisation fitted on the training split and stored with the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Normalizer:
    """``(x - mean) / std`` per channel; channels sit at dim -3 of every tensor it touches."""

    mean: np.ndarray  # (C,) float64
    std: np.ndarray  # (C,) float64

    @classmethod
    def fit(cls, values: np.ndarray, valid: np.ndarray | None = None) -> "Normalizer":
        """values (trajectories, time, C, H, W); valid (trajectories, H, W) or None."""
        channels = values.shape[2]
        mean, std = np.zeros(channels), np.ones(channels)
        for c in range(channels):
            # Channel by channel keeps the float64 temporaries small on large data sets.
            data = values[:, :, c]
            if valid is not None:
                data = data[np.broadcast_to(valid[:, None], data.shape)]
            data = data.astype(np.float64)
            mean[c] = data.mean()
            spread = data.std()
            std[c] = spread if spread > 1e-12 else 1.0  # constant channels pass through unscaled
        return cls(mean, std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._as(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._as(x)
        return x * std + mean

    def normalize_array(self, values: np.ndarray) -> np.ndarray:
        """A normalised float32 copy of a numpy array with channels at dim -3."""
        mean = self.mean.astype(np.float32).reshape(-1, 1, 1)
        std = self.std.astype(np.float32).reshape(-1, 1, 1)
        return (values - mean) / std

    def _as(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
        return mean, std

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, values: dict) -> "Normalizer":
        return cls(np.asarray(values["mean"], dtype=np.float64), np.asarray(values["std"], dtype=np.float64))
