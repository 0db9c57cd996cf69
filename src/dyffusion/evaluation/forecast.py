"""Ensemble forecasts from many initial conditions, as xarray Datasets that verification tools read directly.

Layout: one variable per data variable, dims ``(member, init_time, lead_time, [extra], sp1, sp2)``, with the
data's coordinates (latitude, longitude, ...), the datetime or value of each initial condition, lead times in
the units of the time coordinate (timedeltas for datetime data), ``valid_time = init_time + lead_time``, and
the variables' names and units. Masked points (land, obstacle interiors) are NaN.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from dyffusion.config import MEMBER_DIMS, SamplingConfig
from dyffusion.data.contract import DataError, GriddedData
from dyffusion.data.spec import DataSpec
from dyffusion.distributed import Shard
from dyffusion.ensemble import EnsemblePipeline
from dyffusion.errors import UserError
from dyffusion.io import atomic_path, check_writable_directory
from dyffusion.run import Run

InitialCondition = tuple[int, int]  # (trajectory, start frame)


def init_batches(inits: list[InitialCondition], max_batch: int, members: int) -> list[list[InitialCondition]]:
    """``inits`` in the batches sampled together: as many initial conditions per network call as ``max_batch``
    samples allow."""
    per_batch = max(1, max_batch // members)
    return [inits[first : first + per_batch] for first in range(0, len(inits), per_batch)]


def sample_ensembles(pipeline: EnsemblePipeline, spec: DataSpec, data: GriddedData, inits: list[InitialCondition],
                     members: int, rollout: int | None = None, times: Sequence[float] | None = None, seed: int = 0,
                     shard: Shard = Shard(), progress: bool = False,
                     ) -> Iterator[tuple[int, list[InitialCondition], list[float], torch.Tensor, float]]:
    """Forecasts of ``rollout`` lead steps (or at the real ``times`` in (0, h]) from ``inits`` of ``data``
    (already at the run's time stride), by :func:`init_batches`; with ``shard``, only this process's batches.

    Each batch draws from torch's generator seeded by (``seed``, batch index), so its forecast is the same
    whichever process samples it. Yields per batch and rollout chunk: (the batch's index, its initial
    conditions, the chunk's lead times, ensemble (M, B, L, C, H, W) in physical units, seconds spent sampling
    the chunk). ``progress``: a bar of forecast lead times (initial conditions x lead times) on rank 0.
    """
    static = torch.from_numpy(np.ascontiguousarray(spec.network_static(data)))
    mine = shard.share(init_batches(inits, pipeline.max_batch, members))
    leads = len(times) if times is not None else rollout
    bar = tqdm(total=sum(len(batch) for _, batch in mine) * leads, desc="forecasting", unit="lead",
               disable=not progress or shard.rank > 0)
    for index, batch in mine:
        torch.manual_seed(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))
        trajectories = [t for t, _ in batch]
        initial = spec.normalizer.normalize(torch.from_numpy(np.stack([data.values[t, s] for t, s in batch])))
        clock = time.perf_counter()
        if times is not None:
            chunks = iter([pipeline.forecast(initial, static[trajectories], members, output_times=list(times))])
        else:
            chunks = pipeline.rollout(initial, static[trajectories], members, rollout)
        for lead_times, frames in chunks:
            seconds = time.perf_counter() - clock
            yield index, batch, list(lead_times), spec.normalizer.denormalize(frames), seconds
            bar.update(len(batch) * len(lead_times))
            clock = time.perf_counter()
    bar.close()


def stack_batches(chunks: list[tuple[int, np.ndarray]], batch_axis: int) -> np.ndarray:
    """Rollout chunks, (batch index, array with the batch on ``batch_axis`` and lead times on the next axis), each
    batch's in sampling order -> one array of every initial condition (in batch order) and lead time."""
    batches: dict[int, list[np.ndarray]] = {}
    for index, array in chunks:
        batches.setdefault(index, []).append(array)
    return np.concatenate([np.concatenate(batches[index], axis=batch_axis + 1) for index in sorted(batches)],
                          axis=batch_axis)


def _check_inits(data: GriddedData, inits: list[InitialCondition]) -> None:
    if not inits:
        raise DataError("no initial conditions to forecast from")
    for trajectory, start in inits:
        if not 0 <= trajectory < data.num_trajectories:
            raise DataError(f"trajectory {trajectory} outside 0..{data.num_trajectories - 1}")
        if not 0 <= start < data.num_frames:
            raise DataError(f"start {start} outside 0..{data.num_frames - 1} (frames after the time stride)")


def forecast_dataset(run: Run, data: GriddedData, inits: list[InitialCondition],
                     sampling: SamplingConfig | None = None, steps: int | None = None,
                     times: Sequence[float] | None = None, seed: int = 0, member_dim: str = "member",
                     shard: Shard = Shard(), progress: bool = False) -> xr.Dataset | None:
    """Ensembles from each (trajectory, start frame) in ``inits``: ``steps`` lead times by rollout (default h), or
    the real-valued ``times`` in (0, h] (in data time steps after the stride). Truth is added where the data has it.

    ``sampling``: how to sample, members included (default: the run's ``config.sampling``).
    ``shard``: sample only this process's batches; rank 0 gathers all and returns the Dataset, the others None.
    ``progress``: a progress bar of the sampling.
    """
    run.spec.check(data)
    data = data.subsample_time(run.spec.time_stride)
    sampling = sampling or run.config.sampling
    if steps is not None and steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    _check_inits(data, inits)
    pipeline = run.pipeline(sampling)
    samples = sample_ensembles(pipeline, run.spec, data, inits, sampling.members, run.horizon if steps is None else steps,
                               times, seed, shard, progress)
    gathered = shard.gather([(index, lead_times, ensemble.numpy()) for index, _, lead_times, ensemble, _ in samples])
    if gathered is None:
        return None
    chunks = [chunk for part in gathered for chunk in part]
    lead_times = [t for index, chunk_times, _ in chunks if index == 0 for t in chunk_times]
    ensemble = stack_batches([(index, ensemble) for index, _, ensemble in chunks], batch_axis=1)
    dataset = forecast_to_xarray(ensemble, lead_times, run.spec, data, inits, member_dim, truth_of(data, inits, lead_times))
    return with_provenance(dataset, run, sampling.members, data.source)


def with_provenance(dataset: xr.Dataset, run: Run, members: int, source: str) -> xr.Dataset:
    """The forecast's global attributes: how many members, which method and run, from which data."""
    dataset.attrs.update({"members": members, "method": run.method, "run": str(run.path), "source": source})
    return dataset


def truth_of(data: GriddedData, inits: list[InitialCondition], lead_times: Sequence[float]) -> np.ndarray | None:
    """(N, L, C, H, W) observed frames at the lead times (NaN past a trajectory's end), or None when a lead
    time is not a whole data step."""
    if not all(float(t).is_integer() for t in lead_times):
        return None
    steps = np.asarray(lead_times, dtype=int)
    truth = np.full((len(inits), len(steps), *data.values.shape[2:]), np.nan, np.float32)
    for i, (trajectory, start) in enumerate(inits):
        inside = start + steps < data.num_frames
        truth[i, inside] = data.values[trajectory, start + steps[inside]]
    return truth


def lead_time_coordinate(lead_times: Sequence[float], spec: DataSpec, data: GriddedData) -> np.ndarray:
    """Lead times in the units of the time coordinate: timedelta64 for datetimes, else numbers."""
    values = np.asarray(lead_times, dtype=float) * spec.time_step
    if np.issubdtype(data.time.dtype, np.datetime64):
        return np.round(values * 1e9).astype("timedelta64[ns]")
    return values


def forecast_to_xarray(ensemble: np.ndarray, lead_times: Sequence[float], spec: DataSpec, data: GriddedData,
                       inits: list[InitialCondition], member_dim: str = "member",
                       truth: np.ndarray | None = None) -> xr.Dataset:
    """ensemble (M, N, L, C, H, W) from the N ``inits`` of ``data`` (at the run's stride) -> the forecast Dataset;
    ``truth`` (N, L, C, H, W) adds ``truth_<variable>`` with dims (init_time, lead_time, ...)."""
    if member_dim not in MEMBER_DIMS:
        raise UserError(f"member dimension must be one of {', '.join(MEMBER_DIMS)}, got {member_dim!r}")
    trajectories = np.array([t for t, _ in inits])
    starts = np.array([s for _, s in inits])
    if data.valid is not None:
        valid = data.valid[trajectories][:, None, None]  # (N, 1, 1, H, W)
        ensemble = np.where(valid, ensemble, np.nan)
        truth = np.where(valid, truth, np.nan) if truth is not None else None
    sp1, sp2 = spec.spatial_dims
    lead = lead_time_coordinate(lead_times, spec, data)
    init_time = data.time[starts]
    coords = {
        member_dim: np.arange(ensemble.shape[0]),
        "init_time": init_time,
        "lead_time": ("lead_time", lead, {"long_name": "lead time", "description": "valid_time - init_time"}),
        "lead_step": ("lead_time", np.asarray(lead_times, dtype=float),
                      {"long_name": f"lead time in data time steps of {spec.time_step:g}"}),
        "valid_time": (("init_time", "lead_time"), init_time[:, None] + lead[None]),
        "trajectory": ("init_time", trajectories),
        "start_index": ("init_time", starts, {"long_name": "index of the initial frame (after the time stride)"}),
        sp1: data.spatial_coords[sp1], sp2: data.spatial_coords[sp2],
    }
    for name, coordinate in data.coords.items():
        if "trajectory" in coordinate.dims:
            index = coordinate.dims.index("trajectory")
            values = np.take(coordinate.values, trajectories, axis=index)
            dims = tuple("init_time" if d == "trajectory" else d for d in coordinate.dims)
            coords[name] = xr.Variable(dims, values, coordinate.attrs)
        else:
            coords[name] = coordinate
    variables = {}
    for variable in dict.fromkeys(c.variable for c in spec.channels):
        indices = [i for i, c in enumerate(spec.channels) if c.variable == variable]
        channel = spec.channels[indices[0]]
        attrs = {key: value for key, value in (("units", channel.units), ("long_name", channel.long_name)) if value}
        extra = () if channel.extra_dim is None else (channel.extra_dim,)
        if extra:
            coords[channel.extra_dim] = data.extra_coords.get(channel.extra_dim, list(range(len(indices))))
        select = indices[0] if not extra else indices
        dims = ("init_time", "lead_time", *extra, sp1, sp2)
        variables[variable] = ((member_dim, *dims), ensemble[:, :, :, select], attrs)
        if truth is not None:
            variables[f"truth_{variable}"] = (dims, truth[:, :, select], {**attrs, "description": "observed"})
    return xr.Dataset(variables, coords=coords)


def check_forecast_path(path: str | Path) -> None:
    """Raise now, before any sampling, if :func:`write_forecast` could not write ``path``."""
    path = Path(path)
    if path.is_dir() and path.suffix != ".zarr":
        raise IsADirectoryError(errno.EISDIR, "is a directory; give a file name (.nc or .zarr)", str(path))
    check_writable_directory(path.parent)


def write_forecast(dataset: xr.Dataset, path: str | Path) -> None:
    """netCDF, or zarr for a ``.zarr`` path; written beside ``path`` first, so a crash leaves no partial file."""
    path = Path(path)
    if path.suffix != ".zarr":
        with atomic_path(path) as temporary:
            dataset.to_netcdf(temporary, engine="netcdf4")
        return
    try:
        import zarr  # noqa: F401
    except ImportError:
        raise DataError("writing zarr needs the zarr package: pip install 'dyffusion[zarr]'") from None
    path.parent.mkdir(parents=True, exist_ok=True)  # here, so that an error names the user's path
    temporary = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        # Zarr format 2 with consolidated metadata: what most xarray, dask and zarr versions in use can open.
        dataset.to_zarr(temporary, mode="w", zarr_format=2, consolidated=True)
        if path.exists():
            shutil.rmtree(path)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)  # what a failed write left; gone after a successful one
