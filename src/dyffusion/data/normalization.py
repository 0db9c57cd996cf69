"""Standardisation fitted on the training split and stored with the model.

``per_point=False`` gives one mean and std per channel; ``per_point=True`` one per channel and grid point
(a climatology-style standardisation: for the spring mesh it removes the rest positions, so the network
sees displacements, not the grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from tqdm.auto import tqdm

from dyffusion.data.frames import LazyFrames, blocks


@dataclass
class Normalizer:
    """``(x - mean) / std``; channels sit at dim -3 of every tensor it touches.

    mean, std: (C, 1, 1) per channel or (C, H, W) per point, float64.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: "np.ndarray | LazyFrames", valid: np.ndarray | None = None, per_point: bool = False,
            progress: bool = False, block_bytes: int = 16 * 2**20) -> "Normalizer":
        """values (trajectories, time, C, H, W) in memory or on disk; valid (trajectories, H, W) or None.

        One pass over blocks of frames of at most ``block_bytes`` (float64 sums), so data on disk is never read
        whole.
        """
        trajectories, frames, channels, height, width = values.shape
        weights = np.ones((trajectories, height, width)) if valid is None else valid.astype(np.float64)
        sums, squares = np.zeros((2, channels, height, width))
        with tqdm(total=trajectories * frames, desc="normalisation", unit="frame", disable=not progress) as bar:
            for trajectory, block in blocks(values, block_bytes):
                data = block.astype(np.float64)
                sums += data.sum(0) * weights[trajectory]
                squares += (data**2).sum(0) * weights[trajectory]
                bar.update(len(block))
        count = weights.sum(0) * frames  # (H, W)
        if not per_point:
            sums, squares, count = (x.sum((-2, -1), keepdims=True) for x in (sums, squares, count))
        mean = sums / np.maximum(count, 1)
        spread = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean**2, 0))
        # Constant channels or points (fixed particles, land) pass through unscaled.
        std = np.where(spread > 1e-6 * np.maximum(np.abs(mean), 1), spread, 1.0)
        return cls(mean, std)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._as(x)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._as(x)
        return x * std + mean

    def normalize_array(self, values: np.ndarray) -> np.ndarray:
        """A normalised float32 copy of a numpy array with channels at dim -3."""
        mean, std = self._float32
        return (values - mean) / std

    @cached_property
    def _float32(self) -> tuple[np.ndarray, np.ndarray]:
        # Once, not per training item: WindowDataset normalises every frame it reads.
        return self.mean.astype(np.float32), self.std.astype(np.float32)

    def _as(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)
        return mean, std

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, values: dict) -> "Normalizer":
        return cls(np.asarray(values["mean"], dtype=np.float64), np.asarray(values["std"], dtype=np.float64))
