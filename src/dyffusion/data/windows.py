"""Training windows ``x_t .. x_{t+h}`` read frame by frame from the data (no window is materialised).

Each item reads and normalises only the frames a training step touches (x_t, x_{t+i}, x_{t+h}), so the memory
of a batch does not grow with the horizon, and data on disk (:class:`LazyFrames`) is never read whole.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from dyffusion.data.frames import LazyFrames
from dyffusion.data.normalization import Normalizer
from dyffusion.errors import ConfigError, DataError


class WindowDataset(Dataset):
    """Windows of length ``horizon + 1`` over every trajectory.

    values: (trajectories, time, C, H, W) float32 in physical units, in memory or on disk; normalizer: applied
    to each frame read; static: (trajectories, S, H, W) as the network sees it; valid: (trajectories, H, W) bool
    or None.
    Items (dict of tensors): ``initial`` (C, H, W) = x_t, ``end`` = x_{t+h}, ``static`` (S, H, W),
    ``valid`` (H, W) bool, and with ``target_range`` (first, last): ``target`` = x_{t+i} and ``time`` = i
    (float), i drawn uniformly from first..last with torch's global generator (seeded by Lightning); with
    ``with_window`` (validation only): ``window`` (h + 1, C, H, W).
    """

    def __init__(self, values: np.ndarray | LazyFrames, normalizer: Normalizer, static: np.ndarray, horizon: int,
                 stride: int = 1, valid: np.ndarray | None = None, target_range: tuple[int, int] | None = None,
                 with_window: bool = False):
        num_trajectories, num_frames = values.shape[:2]
        if horizon < 1:
            raise ConfigError(f"horizon must be >= 1, got {horizon}")
        if target_range is not None and not 1 <= target_range[0] <= target_range[1]:
            # The interpolator's targets x_{t+1}..x_{t+h-1} do not exist for h = 1.
            raise ConfigError(f"no target times {target_range[0]}..{target_range[1]} for horizon {horizon}")
        if num_frames <= horizon:
            raise DataError(f"trajectories have {num_frames} frames: too short for horizon {horizon} "
                             f"(needs at least {horizon + 1})")
        self.values, self.normalizer = values, normalizer
        self.static = torch.from_numpy(np.ascontiguousarray(static))
        height, width = values.shape[-2:]
        self.valid = torch.from_numpy(valid) if valid is not None else torch.ones(num_trajectories, height, width, dtype=torch.bool)
        self.horizon = horizon
        self.target_range, self.with_window = target_range, with_window
        starts = np.arange(0, num_frames - horizon, stride)
        self.index = np.stack(np.meshgrid(np.arange(num_trajectories), starts, indexing="ij"), -1).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.index)

    def _frames(self, trajectory: int, times: np.ndarray) -> torch.Tensor:
        """(len(times), C, H, W) normalised frames of one trajectory."""
        return torch.from_numpy(self.normalizer.normalize_array(self.values[trajectory, times]))

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        trajectory, start = (int(v) for v in self.index[item])
        offset = int(torch.randint(self.target_range[0], self.target_range[1] + 1, ())) if self.target_range else 0
        # One read per item: the whole window for validation, else just x_t, x_{t+h} and the target.
        if self.with_window:
            times = np.arange(start, start + self.horizon + 1)
        else:
            times = np.array([start, start + self.horizon] + ([start + offset] if self.target_range else []))
        frames = self._frames(trajectory, times)
        sample = {
            "initial": frames[0],
            "end": frames[self.horizon] if self.with_window else frames[1],
            "static": self.static[trajectory],
            "valid": self.valid[trajectory],
        }
        if self.target_range:
            sample["target"] = frames[offset] if self.with_window else frames[2]
            sample["time"] = torch.tensor(float(offset))
        if self.with_window:
            sample["window"] = frames
        return sample
