"""What a trained model knows of its data, stored in its run as ``data.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from dyffusion.data.boundary import BoundaryCondition, build_boundary_condition
from dyffusion.data.contract import Channel, GriddedData, figure_view
from dyffusion.data.normalization import Normalizer
from dyffusion.errors import RunError


@dataclass
class DataSpec:
    """What a trained model knows of its data (stored as ``data.json``)."""

    channels: list[Channel]
    static_names: list[str]
    spatial_dims: tuple[str, str]
    grid_shape: tuple[int, int]
    time_stride: int
    time_step: float  # of the strided data, in the units of the time coordinate (seconds for datetimes)
    normalizer: Normalizer
    boundary_condition: str | None = None
    boundary_mask: str | None = None
    masked: bool = False  # the data has invariant-NaN points; their mask is an extra static channel
    boundary_parameters: dict = field(default_factory=dict)  # from the data attrs dyffusion_inflow_* (no prefix)
    view: str | None = None  # the system-aware figure (data attribute dyffusion_view) and its two channels
    view_channels: list[str] = field(default_factory=list)

    @classmethod
    def from_data(cls, data: GriddedData, normalizer: Normalizer, time_stride: int) -> "DataSpec":
        """``data`` is already subsampled by ``time_stride``."""
        steps = np.diff(data.time[:2])
        step = steps[0] / np.timedelta64(1, "s") if np.issubdtype(data.time.dtype, np.datetime64) else float(steps[0])
        return cls(data.channels, data.static_names, data.spatial_dims, data.grid_shape, time_stride,
                   float(step), normalizer, data.attrs.get("dyffusion_boundary_condition"),
                   data.attrs.get("dyffusion_boundary_mask"), data.valid is not None,
                   {key.removeprefix("dyffusion_"): _plain(value) for key, value in data.attrs.items()
                    if key.startswith("dyffusion_inflow_")},
                   *figure_view(data.attrs, data.channel_names, data.source))

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def network_static_channels(self) -> int:
        return len(self.static_names) + int(self.masked)

    def check(self, data: GriddedData) -> None:
        """Raise RunError unless ``data`` has the channels, static variables and grid the model was trained on."""
        problems = []
        if data.channel_names != [c.name for c in self.channels]:
            problems.append(f"channels {data.channel_names} instead of {[c.name for c in self.channels]}")
        if data.static_names != self.static_names:
            problems.append(f"static variables {data.static_names} instead of {self.static_names}")
        if tuple(data.grid_shape) != tuple(self.grid_shape):
            problems.append(f"grid {tuple(data.grid_shape)} instead of {tuple(self.grid_shape)}")
        if problems:
            raise RunError(f"{data.source} does not fit this run: " + "; ".join(problems))

    def network_static(self, data: GriddedData) -> np.ndarray:
        """(trajectories, S', H, W): the static conditions plus the validity mask when the data is masked."""
        if not self.masked:
            return data.static
        valid = data.valid if data.valid is not None else np.ones((data.num_trajectories, *data.grid_shape), bool)
        return np.concatenate([data.static, valid[:, None].astype(np.float32)], axis=1)

    def boundary(self) -> BoundaryCondition:
        return build_boundary_condition(self.boundary_condition, self.static_names, self.boundary_mask,
                                        channel_names=[c.name for c in self.channels], normalizer=self.normalizer,
                                        time_step=self.time_step, parameters=self.boundary_parameters)

    def to_dict(self) -> dict:
        return {
            "channels": [asdict(c) for c in self.channels], "static_names": self.static_names,
            "spatial_dims": list(self.spatial_dims), "grid_shape": list(self.grid_shape),
            "time_stride": self.time_stride, "time_step": self.time_step, "normalizer": self.normalizer.to_dict(),
            "boundary_condition": self.boundary_condition, "boundary_mask": self.boundary_mask, "masked": self.masked,
            "boundary_parameters": self.boundary_parameters, "view": self.view, "view_channels": self.view_channels,
        }

    @classmethod
    def from_dict(cls, values: dict) -> "DataSpec":
        return cls([Channel(**c) for c in values["channels"]], list(values["static_names"]),
                   tuple(values["spatial_dims"]), tuple(values["grid_shape"]), int(values["time_stride"]),
                   float(values["time_step"]), Normalizer.from_dict(values["normalizer"]),
                   values.get("boundary_condition"), values.get("boundary_mask"), bool(values.get("masked", False)),
                   dict(values.get("boundary_parameters") or {}), values.get("view"),
                   list(values.get("view_channels") or []))


def _plain(value):
    """A netCDF attribute value as a JSON-friendly float (or string)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
