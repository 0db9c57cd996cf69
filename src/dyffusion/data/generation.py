"""What the simulators share when they write a data set: independent split seeds and crash-safe files."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import xarray as xr

from dyffusion.io import atomic_path


def split_seed(seed: int, split: str) -> int:
    """Independent seed of a split, derived from (seed, split name) so splits never share trajectories."""
    return int(np.random.SeedSequence([seed, zlib.crc32(split.encode())]).generate_state(1)[0])


def is_complete(path: Path, trajectories: int, frames: int, **attrs) -> bool:
    """True if ``path`` opens with xarray and holds the expected trajectories, frames and attribute values
    (what the file was made from); a missing, truncated or foreign file is not complete."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            found = (ds.sizes.get("trajectory"), ds.sizes.get("time"), *(ds.attrs.get(key) for key in attrs))
            return found == (trajectories, frames, *attrs.values())
    except Exception:  # missing, truncated or not netCDF: regenerate
        return False


def write_netcdf(dataset: xr.Dataset, path: Path) -> None:
    """Write to a temporary file beside ``path`` and rename it in place: never a half-written file at ``path``."""
    with atomic_path(path) as temporary:
        dataset.to_netcdf(temporary, engine="netcdf4")


def write_array(array: np.ndarray, path: Path) -> None:
    """``np.save`` through a temporary file; read back with ``np.load(path, allow_pickle=False)``."""
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        np.save(file, array)
