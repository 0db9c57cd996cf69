"""Frames read from disk on demand, for data sets larger than memory.

:class:`LazyFrames` stands in for the ``(trajectories, time, C, H, W)`` array of :class:`GriddedData`: integer
or integer-array indices on its first two axes read just those frames from the netCDF file or zarr store; plain
slices on them give a lazy view (as numpy's basic slicing gives a view). It holds only the file's path and the
chosen trajectory and time indices, so it pickles small, and each process (a DataLoader worker, a DDP rank)
opens the file for itself.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import xarray as xr

from dyffusion.data.reading import open_dataset, read_values
from dyffusion.errors import DataError

STREAM_FRACTION = 0.25  # stream a split whose frames would take more than this share of the usable memory


@dataclass
class LazyFrames:
    """(trajectories, time, C, H, W) float32 frames of ``path``, read when indexed.

    channel_variables: the file variable of each channel (a variable with an extra dim gives several).
    trajectories / times: indices into the file's ``trajectory`` (None: the file has no such dim) and ``time``.
    valid: (trajectories, H, W) bool or None; masked points read as 0, and any other non-finite value read is
    a :class:`~dyffusion.errors.DataError` (a streamed split is checked as it is read, not up front).
    """

    path: Path
    channel_variables: tuple[str, ...]
    spatial_dims: tuple[str, str]
    trajectories: np.ndarray | None
    times: np.ndarray
    grid: tuple[int, int, int]  # C, H, W
    valid: np.ndarray | None = None
    _opened: tuple[int, xr.Dataset] | None = field(default=None, repr=False, compare=False)

    dtype = np.dtype(np.float32)
    ndim = 5

    @property
    def shape(self) -> tuple[int, ...]:
        trajectories = 1 if self.trajectories is None else len(self.trajectories)
        return (trajectories, len(self.times), *self.grid)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_opened": None}  # an open file does not travel to another process

    def _dataset(self) -> xr.Dataset:
        if self._opened is None or self._opened[0] != os.getpid():
            self._opened = (os.getpid(), open_dataset(self.path))
        return self._opened[1]

    def __getitem__(self, key) -> "np.ndarray | LazyFrames":
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 2:
            raise IndexError("LazyFrames takes a trajectory and a time index; index the frames it returns further")
        trajectory_key, time_key = key + (slice(None),) * (2 - len(key))
        if isinstance(trajectory_key, slice) and isinstance(time_key, slice):
            return self._view(trajectory_key, time_key)
        if _is_array(trajectory_key) and _is_array(time_key):
            raise IndexError("index the trajectories or the times with an array, not both")
        trajectories = np.atleast_1d(np.arange(self.shape[0])[trajectory_key])
        times = np.atleast_1d(self.times[time_key])
        selection = {"time": times}
        if self.trajectories is not None:
            selection["trajectory"] = self.trajectories[trajectories]
        source = str(self.path)
        variables = tuple(dict.fromkeys(self.channel_variables))
        frames = read_values(self._dataset().isel(selection), variables, self.spatial_dims, source)
        frames = self._checked(frames, trajectories, times, source)  # (trajectories, times, C, H, W)
        if not isinstance(time_key, slice) and np.ndim(time_key) == 0:
            frames = frames[:, 0]
        if not isinstance(trajectory_key, slice) and np.ndim(trajectory_key) == 0:
            frames = frames[0]
        return frames

    def _view(self, trajectory_key: slice, time_key: slice) -> "LazyFrames":
        trajectories = None if self.trajectories is None else self.trajectories[trajectory_key]
        valid = None if self.valid is None else self.valid[trajectory_key]
        return replace(self, trajectories=trajectories, times=self.times[time_key], valid=valid, _opened=None)

    def _checked(self, frames: np.ndarray, trajectories: np.ndarray, times: np.ndarray, source: str) -> np.ndarray:
        """Masked points set to 0; any other NaN or inf is an error naming the first one."""
        valid = np.ones((len(trajectories), *self.grid[1:]), bool) if self.valid is None else self.valid[trajectories]
        valid = valid[:, None, None]
        bad = ~np.isfinite(frames) & valid
        if bad.any():
            trajectory, time, channel = np.argwhere(bad)[0][:3]
            raise DataError(f"{source}: variable {self.channel_variables[channel]!r} is NaN or inf at trajectory "
                            f"{trajectories[trajectory]}, time index {times[time]}, at a point that is not NaN in the "
                            "trajectory's first frame (only fixed land/obstacle masks may be NaN)")
        return np.where(valid, frames, np.float32(0)) if self.valid is not None else frames


def _is_array(key) -> bool:
    return not isinstance(key, slice) and np.ndim(key) > 0


def memory_budget() -> int:
    """Bytes this process may use: the memory the system has available, or a smaller limit set on the process."""
    limits = []
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        limits.append(int(fields["MemAvailable"].split()[0]) * 1024)
    except (OSError, KeyError, ValueError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        soft = resource.getrlimit(kind)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    return min(limits)


def should_stream(nbytes: int, stream: bool | None) -> bool:
    """``stream`` if given, else whether ``nbytes`` of frames would crowd the memory."""
    return stream if stream is not None else nbytes > STREAM_FRACTION * memory_budget()


def blocks(values: "np.ndarray | LazyFrames", max_bytes: int = 16 * 2**20):
    """(trajectory, block (T, C, H, W)) over all frames, one trajectory's run of times at a time, each block
    at most ``max_bytes`` (or one frame)."""
    frame_bytes = int(np.prod(values.shape[2:])) * 4
    step = max(1, max_bytes // frame_bytes)
    for trajectory in range(values.shape[0]):
        for first in range(0, values.shape[1], step):
            yield trajectory, values[trajectory, first : first + step]
