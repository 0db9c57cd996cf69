"""Opening netCDF files and zarr stores and reading their variables, with damaged files as DataErrors.

Below both :mod:`dyffusion.data.contract` (what a file must hold) and :mod:`dyffusion.data.frames` (frames read
on demand), which read through it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from dyffusion.errors import DataError


def is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or (path / ".zgroup").exists() or (path / "zarr.json").exists()


def first_sentence(error: Exception) -> str:
    """The gist of a reader's error: some span lines (xarray lists its backends and links)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # without the errno and the path, which the message gives already
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(error).__name__


def open_dataset(path: Path) -> xr.Dataset:
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    try:
        if is_zarr(path):
            with warnings.catch_warnings():
                # A store without consolidated metadata is as valid as one with it.
                warnings.filterwarnings("ignore", "Failed to open Zarr store with consolidated metadata")
                return xr.open_zarr(path)
        return xr.open_dataset(path)
    except Exception as error:  # xarray raises many types for unreadable files
        raise DataError(f"cannot open {path} as netCDF or zarr: {first_sentence(error)}") from None


def read_variable(var: xr.DataArray, source: str) -> np.ndarray:
    """A variable's values as float32; a damaged chunk or block is a DataError, not a decoder's traceback."""
    try:
        return np.asarray(var.values, dtype=np.float32)
    except MemoryError:
        raise
    except Exception as error:  # netCDF, HDF5, zarr and their codecs raise many types for damaged data
        raise DataError(f"{source}: cannot read variable {var.name!r} (is the file damaged or cut short?): "
                        f"{first_sentence(error)}") from None


def extra_dims(var: xr.DataArray, spatial: tuple[str, str]) -> list[str]:
    return [d for d in var.dims if d not in ("trajectory", "time", *spatial)]


def read_values(ds: xr.Dataset, dynamic: list[str] | tuple[str, ...], spatial: tuple[str, str],
                source: str, block_bytes: int = 64 * 2**20) -> np.ndarray:
    """(trajectories, time, C, H, W) float32 of the time-dependent variables, in channel order, as stored.

    Filled block by block (one trajectory, at most ``block_bytes`` of frames of one variable), so reading
    holds the data once plus one block.
    """
    has_trajectories = "trajectory" in ds.dims
    widths = [ds[name].sizes[extra_dims(ds[name], spatial)[0]] if extra_dims(ds[name], spatial) else 1
              for name in dynamic]
    trajectories, frames = ds.sizes.get("trajectory", 1), ds.sizes["time"]
    height, width = ds.sizes[spatial[0]], ds.sizes[spatial[1]]
    values = np.empty((trajectories, frames, sum(widths), height, width), np.float32)
    first_channel = 0
    for name, channels in zip(dynamic, widths):
        var = ds[name].transpose(*(["trajectory"] if has_trajectories else []), "time",
                                 *extra_dims(ds[name], spatial), *spatial)
        step = max(1, block_bytes // (channels * height * width * 4))
        for trajectory in range(trajectories):
            for start in range(0, frames, step):
                block = var.isel(time=slice(start, start + step))
                if has_trajectories:
                    block = block.isel(trajectory=trajectory)
                values[trajectory, start : start + step, first_channel : first_channel + channels] = \
                    read_variable(block, source).reshape(-1, channels, height, width)
        first_channel += channels
    return values
