"""One ensemble forecast from a split, returned as an xarray Dataset in the data's own layout."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import xarray as xr

from dyffusion.data.contract import DataError, GriddedData
from dyffusion.run import DataSpec, Run


def forecast_dataset(run: Run, data: GriddedData, trajectory: int = 0, start: int = 0, members: int | None = None,
                     steps: int | None = None, times: Sequence[float] | None = None, seed: int = 0,
                     member_dim: str = "member", pipeline_options: dict | None = None) -> xr.Dataset:
    """Ensemble from frame ``start`` of ``trajectory``: ``steps`` lead times by rollout (default h), or the
    real-valued ``times`` in (0, h] (units of the data time step x stride)."""
    run.spec.check(data)
    data = data.subsample_time(run.spec.time_stride)
    members = run.config.sampling.members if members is None else members
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    if not 0 <= trajectory < data.num_trajectories:
        raise DataError(f"trajectory {trajectory} outside 0..{data.num_trajectories - 1}")
    if not 0 <= start < data.num_frames:
        raise DataError(f"start {start} outside 0..{data.num_frames - 1} (frames after time stride)")
    normalizer = run.spec.normalizer
    initial = normalizer.normalize(torch.from_numpy(data.values[trajectory, start][None]))
    static = torch.from_numpy(np.ascontiguousarray(run.spec.network_static(data)[trajectory][None]))
    pipeline = run.pipeline(**(pipeline_options or {}))
    torch.manual_seed(seed)
    if times is not None:
        lead_times, frames = pipeline.forecast(initial, static, members, output_times=list(times))
    else:
        chunks = list(pipeline.rollout(initial, static, members, steps or run.horizon))
        lead_times = [t for chunk_times, _ in chunks for t in chunk_times]
        frames = torch.cat([chunk for _, chunk in chunks], dim=2)
    ensemble = normalizer.denormalize(frames[:, 0]).numpy()  # (M, L, C, H, W)
    valid = data.valid[trajectory] if data.valid is not None else None
    dataset = to_xarray(ensemble, lead_times, run.spec, data, member_dim, valid)
    truth_index = [start + t for t in lead_times if float(t).is_integer() and start + t < data.num_frames]
    if len(truth_index) == len(lead_times):
        truth = to_xarray(data.values[trajectory, np.array(truth_index, dtype=int)][None], lead_times, run.spec,
                          data, member_dim, valid).isel({member_dim: 0}, drop=True)
        dataset = dataset.merge(truth.rename({name: f"truth_{name}" for name in truth.data_vars}))
    dataset.attrs.update({"trajectory": trajectory, "start_index": start, "members": members,
                          "initial_time": str(data.time[start]), "source": data.source})
    return dataset


def to_xarray(ensemble: np.ndarray, lead_times: Sequence[float], spec: DataSpec, data: GriddedData,
              member_dim: str = "member", valid: np.ndarray | None = None) -> xr.Dataset:
    """(M, L, C, H, W) -> Dataset with one variable per data variable, dims (member, lead_time, [extra], sp1, sp2);
    points where ``valid`` (H, W) is False are NaN again."""
    if valid is not None:
        ensemble = np.where(valid, ensemble, np.nan)
    sp1, sp2 = spec.spatial_dims
    coords = {member_dim: np.arange(ensemble.shape[0]), "lead_time": np.asarray(lead_times, dtype=float),
              sp1: data.spatial_coords[sp1], sp2: data.spatial_coords[sp2]}
    variables = {}
    for variable in dict.fromkeys(c.variable for c in spec.channels):
        indices = [i for i, c in enumerate(spec.channels) if c.variable == variable]
        channel = spec.channels[indices[0]]
        attrs = {"units": channel.units, "long_name": channel.long_name}
        if channel.extra_dim is None:
            variables[variable] = ((member_dim, "lead_time", sp1, sp2), ensemble[:, :, indices[0]], attrs)
        else:
            coords[channel.extra_dim] = data.extra_coords.get(channel.extra_dim, list(range(len(indices))))
            variables[variable] = ((member_dim, "lead_time", channel.extra_dim, sp1, sp2), ensemble[:, :, indices], attrs)
    dataset = xr.Dataset(variables, coords=coords)
    dataset["lead_time"].attrs.update({"units": f"data time steps of {spec.time_step:g}",
                                       "long_name": "lead time"})
    return dataset
