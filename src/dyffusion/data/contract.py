"""The data contract (README, "Your own data"): any netCDF or zarr file xarray opens becomes :class:`GriddedData`.

- dims ``trajectory`` (optional), ``time`` and two spatial dims, the last two of every variable;
- a variable with ``time`` is one channel, or one per entry of its single extra dim (e.g. ``level``);
- a variable without ``time`` is a static condition, ``(trajectory, sp1, sp2)`` or ``(sp1, sp2)``;
- NaN at the same points at all times is a mask (land); any other NaN or inf is an error;
- the global attribute ``dyffusion_invalid_mask`` may name a static variable whose nonzero points are masked
  the same way (obstacle interiors): out of the loss and the metrics;
- coordinates over the trajectory and spatial dims (``lat``, ``longitude(trajectory, lon)``, ...) are kept for
  forecast files; a latitude among them (CF ``standard_name`` or ``units``, or the name ``lat``/``latitude``)
  gives the area weights of the metrics;
- the global attributes ``dyffusion_view`` and ``dyffusion_view_channels`` may ask for a system-aware figure
  (:func:`figure_view`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import xarray as xr

from dyffusion.data.frames import LazyFrames, should_stream
from dyffusion.data.reading import extra_dims, is_zarr, open_dataset, read_values, read_variable
from dyffusion.errors import DataError


@dataclass(frozen=True)
class Channel:
    """One channel: ``variable`` (the netCDF name), or one entry ``index`` of its extra dim."""

    name: str
    variable: str
    extra_dim: str | None = None
    index: int | None = None
    units: str = ""
    long_name: str = ""


@dataclass
class GriddedData:
    """A split of a data set, physical units.

    values: (trajectories, time, C, H, W) float32, in memory or :class:`LazyFrames` on disk (index both as
    ``values[trajectory, times]``); masked points hold 0.
    static: (trajectories, S, H, W) float32 static conditions (S may be 0).
    valid: (trajectories, H, W) bool, False at invariant-NaN points, or None when every point is valid.
    coords: the file's coordinates over trajectory and spatial dims, loaded (values and attrs).
    latitude: (trajectories, H, W) degrees north when the file has a latitude coordinate, else None.
    """

    values: np.ndarray | LazyFrames
    static: np.ndarray
    channels: list[Channel]
    static_names: list[str]
    time: np.ndarray
    spatial_dims: tuple[str, str]
    spatial_coords: dict[str, np.ndarray]
    valid: np.ndarray | None = None
    extra_coords: dict[str, list] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    source: str = ""
    coords: dict[str, xr.Variable] = field(default_factory=dict)
    latitude: np.ndarray | None = None

    @property
    def num_trajectories(self) -> int:
        return self.values.shape[0]

    @property
    def num_frames(self) -> int:
        return self.values.shape[1]

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.values.shape[-2], self.values.shape[-1]

    @property
    def channel_names(self) -> list[str]:
        return [channel.name for channel in self.channels]

    def subsample_time(self, stride: int) -> "GriddedData":
        """Every ``stride``-th frame, as a view (no copy)."""
        if stride < 1:
            raise DataError(f"time_stride must be >= 1, got {stride}")
        if stride == 1:
            return self
        return replace(self, values=self.values[:, ::stride], time=self.time[::stride])


VIEWS = {"particle_mesh": "particle positions x, y", "flow_field": "velocity components u, v"}


def figure_view(attrs: dict, channel_names: list[str], source: str) -> tuple[str | None, list[str]]:
    """The system-aware figure of a data set and the two channels it draws: ``dyffusion_view`` names one of
    :data:`VIEWS`, ``dyffusion_view_channels`` its channels, comma-separated (e.g. ``q_x,q_y`` or ``u,v``).
    (None, []) when the data asks for none."""
    view = attrs.get("dyffusion_view")
    if view is None:
        return None, []
    if view not in VIEWS:
        raise DataError(f"{source}: attribute dyffusion_view is {view!r}, not one of {', '.join(VIEWS)}")
    channels = [name.strip() for name in str(attrs.get("dyffusion_view_channels", "")).split(",") if name.strip()]
    if len(channels) != 2 or not set(channels) <= set(channel_names):
        raise DataError(f"{source}: the {view} view needs dyffusion_view_channels naming two channels "
                        f"({VIEWS[view]}) among {channel_names}, got {channels}")
    return view, channels


def is_split_directory(path: Path) -> bool:
    """A directory of split files (``train.nc``, ``val.zarr``, ...), not a zarr store."""
    return path.is_dir() and not is_zarr(path)


def resolve_split(path: str | Path, split: str | None) -> Path:
    """A file stands for itself; a directory holds one file per split (``train.nc``, ``test.zarr``, ...)."""
    path = Path(path)
    if not is_split_directory(path):
        return path
    if split is None:
        raise DataError(f"{path} is a directory: name the split to read")
    for candidate in (path / f"{split}.nc", path / f"{split}.zarr"):
        if candidate.exists():
            return candidate
    present = sorted(p.stem for p in path.iterdir() if p.suffix in (".nc", ".zarr"))
    raise DataError(f"no split {split!r} in {path} (found: {', '.join(present) or 'no .nc or .zarr files'})")


def open_gridded(path: str | Path, split: str | None = None, stream: bool | None = None) -> GriddedData:
    """Read one split file of a directory, or a whole file, and check it; ``stream`` as in :func:`from_xarray`."""
    file = resolve_split(path, split)
    with open_dataset(file) as ds:
        return from_xarray(ds, str(file), path=file, stream=stream)


def from_xarray(ds: xr.Dataset, source: str, min_frames: int = 2, path: Path | None = None,
                selection: dict[str, np.ndarray] | None = None, stream: bool | None = None) -> GriddedData:
    """Check an opened Dataset against the contract and load it; ``source`` names it in errors.

    ``path``: the file ``ds`` was opened from, with ``selection`` the file's ``trajectory`` or ``time`` indices
    it holds; then ``stream`` True keeps the frames on disk (:class:`LazyFrames`), None does so when they would
    crowd the memory. A streamed split's mask comes from each trajectory's first frame and its other values
    are checked as they are read.
    """
    if "time" not in ds.dims:
        raise DataError(f"{source}: no 'time' dimension (dims are {list(ds.dims)})")
    dynamic = [name for name in ds.data_vars if "time" in ds[name].dims]
    static_vars = [name for name in ds.data_vars if "time" not in ds[name].dims]
    if not dynamic:
        raise DataError(f"{source}: no data variable has a 'time' dimension")
    spatial = tuple(ds[dynamic[0]].dims[-2:])
    if "time" in spatial or "trajectory" in spatial:
        raise DataError(f"{source}: variable {dynamic[0]!r} has no two spatial dims after 'time'")
    has_trajectories = "trajectory" in ds.dims
    num_trajectories = ds.sizes["trajectory"] if has_trajectories else 1
    channels, extra_coords = _channels(ds, dynamic, spatial, source)
    time = np.asarray(ds["time"].values)
    if time.size < min_frames:
        raise DataError(f"{source}: needs at least {min_frames} time steps, has {time.size}")

    grid = (len(channels), ds.sizes[spatial[0]], ds.sizes[spatial[1]])
    if path is not None and should_stream(num_trajectories * ds.sizes["time"] * int(np.prod(grid)) * 4, stream):
        selection = selection or {}
        first = read_values(ds.isel(time=[0]), dynamic, spatial, source)
        valid = _invariant_nan_mask(first, channels, source)
        values = LazyFrames(Path(path), tuple(channel.variable for channel in channels), spatial,
                            selection.get("trajectory", np.arange(num_trajectories)) if has_trajectories else None,
                            selection.get("time", np.arange(ds.sizes["time"])), grid, valid)
    else:
        values = read_values(ds, dynamic, spatial, source)
        valid = _invariant_nan_mask(values, channels, source)
        for trajectory in range(num_trajectories) if valid is not None else ():
            values[trajectory][..., ~valid[trajectory]] = 0  # in place: a copy would hold the data twice

    statics = []
    for name in static_vars:
        var = ds[name]
        if tuple(var.dims[-2:]) != spatial or set(var.dims) - {"trajectory", *spatial}:
            raise DataError(f"{source}: static variable {name!r} must have dims (trajectory, {', '.join(spatial)}) "
                            f"or ({', '.join(spatial)}), got {var.dims}")
        array = read_variable(var, source)
        array = np.broadcast_to(array, (num_trajectories, *array.shape[-2:])) if array.ndim == 2 else array
        if not np.isfinite(array).all():
            raise DataError(f"{source}: static variable {name!r} contains NaN or inf")
        statics.append(array)
    height, width = grid[1:]
    static = np.stack(statics, axis=1) if statics else np.zeros((num_trajectories, 0, height, width), np.float32)
    excluded = ds.attrs.get("dyffusion_invalid_mask")
    if excluded is not None:
        if excluded not in static_vars:
            raise DataError(f"{source}: attribute dyffusion_invalid_mask names {excluded!r}, which is not a static "
                            f"variable ({static_vars})")
        outside = static[:, static_vars.index(excluded)] == 0
        valid = outside if valid is None else valid & outside

    coords = {name: xr.Variable(coord.dims, np.asarray(coord.values), dict(coord.attrs))
              for name, coord in ds.coords.items()
              if coord.dims and set(coord.dims) <= {"trajectory", *spatial}}
    return GriddedData(
        values=values, static=np.ascontiguousarray(static), channels=channels, static_names=static_vars,
        time=time, spatial_dims=spatial, spatial_coords={d: np.asarray(ds[d].values) if d in ds.coords
                                                         else np.arange(ds.sizes[d]) for d in spatial},
        valid=valid, extra_coords=extra_coords, attrs=dict(ds.attrs), source=source, coords=coords,
        latitude=_latitude(coords, spatial, num_trajectories, values.shape[-2:], source),
    )


def _channels(ds: xr.Dataset, dynamic: list[str], spatial: tuple[str, str],
              source: str) -> tuple[list[Channel], dict[str, list]]:
    """The channels of the time-dependent variables (one per entry of an extra dim), and those dims' entries."""
    channels: list[Channel] = []
    extra_coords: dict[str, list] = {}
    for name in dynamic:
        var = ds[name]
        if tuple(var.dims[-2:]) != spatial:
            raise DataError(f"{source}: variable {name!r} has dims {var.dims}; its last two must be {spatial}")
        extra = extra_dims(var, spatial)
        if len(extra) > 1:
            raise DataError(f"{source}: variable {name!r} has more than one extra dimension ({extra})")
        units, long_name = str(var.attrs.get("units", "")), str(var.attrs.get("long_name", ""))
        if extra:
            entries = list(ds[extra[0]].values) if extra[0] in ds.coords else list(range(var.sizes[extra[0]]))
            extra_coords[extra[0]] = entries
            channels += [Channel(f"{name}_{entry}", name, extra[0], i, units, long_name) for i, entry in enumerate(entries)]
        else:
            channels.append(Channel(name, name, None, None, units, long_name))
    return channels, extra_coords


LATITUDE_UNITS = ("degrees_north", "degree_north", "degrees_n", "degree_n")


def _latitude(coords: dict[str, xr.Variable], spatial: tuple[str, str], trajectories: int,
              grid: tuple[int, int], source: str) -> np.ndarray | None:
    """(trajectories, H, W) latitudes from the coordinate that is one, or None; CF attributes win over names."""
    def rank(name: str, attrs: dict) -> int:
        if attrs.get("standard_name") == "latitude" or str(attrs.get("units", "")).lower() in LATITUDE_UNITS:
            return 2
        return int(name.lower() in ("lat", "latitude"))

    ranked = sorted(((rank(name, c.attrs), name) for name, c in coords.items() if set(c.dims) & set(spatial)),
                    reverse=True)
    if not ranked or ranked[0][0] == 0:
        return None
    name = ranked[0][1]
    target = xr.Variable(("trajectory", *spatial), np.zeros((trajectories, *grid), np.float32))
    latitude = np.asarray(coords[name].set_dims(target.dims, target.shape).values, dtype=np.float64)
    if not (np.isfinite(latitude).all() and (np.abs(latitude) <= 90).all()):
        raise DataError(f"{source}: latitude coordinate {name!r} has values outside [-90, 90] or NaN")
    return latitude


def _invariant_nan_mask(values: np.ndarray, channels: list[Channel], source: str) -> np.ndarray | None:
    """(trajectories, H, W) validity from NaNs constant in time; raises on any other non-finite value.

    Trajectory by trajectory, so the temporaries stay a trajectory's size.
    """
    masks = []
    for trajectory, frames in enumerate(values):  # frames (time, C, H, W)
        finite = np.isfinite(frames)
        if finite.all():
            masks.append(np.ones(frames.shape[-2:], bool))
            continue
        if np.isinf(frames).any():
            time, channel = np.argwhere(np.isinf(frames))[0][:2]
            raise DataError(f"{source}: variable {channels[channel].variable!r} is infinite at trajectory "
                            f"{trajectory}, time index {time}")
        missing = ~finite
        always_missing = missing.all(axis=0)  # (C, H, W)
        varying = missing & ~always_missing
        if varying.any():
            time, channel = np.argwhere(varying)[0][:2]
            raise DataError(f"{source}: variable {channels[channel].variable!r} has NaN at trajectory {trajectory}, "
                            f"time index {time} that is not NaN at all times (only fixed land/obstacle masks may "
                            "be NaN)")
        masks.append(~always_missing.any(axis=0))  # a point missing in any channel at all times is masked in all
    valid = np.stack(masks)
    return None if valid.all() else valid
