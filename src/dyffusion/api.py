"""Python entry points that mirror the CLI: load a run, forecast from a tensor or an xarray Dataset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import xarray as xr
from safetensors.torch import load_file

from dyffusion.config import SamplingConfig
from dyffusion.data.contract import DataError, GriddedData, from_xarray
from dyffusion.errors import RunError
from dyffusion.evaluation.forecast import forecast_dataset
from dyffusion.run import Run


def load_run(path: str | Path) -> Run:
    """A trained run from its directory (weights are safetensors: nothing is unpickled)."""
    return Run.load(path)


def _from_tensor(run: Run, initial: torch.Tensor | np.ndarray, static: torch.Tensor | np.ndarray | None) -> GriddedData:
    values = torch.as_tensor(initial, dtype=torch.float32).numpy()
    if values.ndim != 3:
        raise DataError(f"initial condition must be (C, H, W), got shape {values.shape}")
    spec = run.spec
    if static is None:
        stored = run.files.static
        if spec.static_names and not stored.exists():
            raise RunError(f"this run needs static conditions {spec.static_names}: pass static=(S, H, W)")
        static = load_file(str(stored))["static"] if spec.static_names else np.zeros((0, *values.shape[-2:]))
    static = torch.as_tensor(static, dtype=torch.float32).numpy()
    sp1, sp2 = spec.spatial_dims
    return GriddedData(values[None, None], static[None], spec.channels, spec.static_names, np.array([0.0]),
                       spec.spatial_dims, {sp1: np.arange(values.shape[-2]), sp2: np.arange(values.shape[-1])},
                       source="tensor")


def forecast(run: Run, initial: torch.Tensor | np.ndarray | xr.Dataset, static=None, members: int | None = None,
             steps: int | None = None, times: Sequence[float] | None = None, seed: int = 0,
             member_dim: str = "member", sampling: SamplingConfig | None = None) -> xr.Dataset:
    """Ensemble forecast in physical units.

    sampling: how to sample (default: the run's ``config.sampling``); ``members``, when given, replaces its
    ``members``.

    initial: a (C, H, W) tensor in the run's channel order (static conditions from ``static`` or those stored
    in the run), or an xarray Dataset in the data contract's layout (its last time is the initial condition).
    Returns a Dataset with dims (member, init_time, lead_time, [extra], sp1, sp2), as ``dyffusion forecast``
    writes (init_time has length 1).
    """
    sampling = sampling or run.config.sampling
    if members is not None:
        sampling = replace(sampling, members=members)
    if isinstance(initial, xr.Dataset):
        # Only the last frame matters; keeping it alone also keeps it through the run's time stride.
        data = from_xarray(initial.isel(time=[-1]), "xarray input", min_frames=1)
        return forecast_dataset(run, data, [(0, 0)], sampling, steps, times, seed, member_dim)
    return forecast_dataset(run, _from_tensor(run, initial, static), [(0, 0)], sampling, steps, times, seed,
                            member_dim)
