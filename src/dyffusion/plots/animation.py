"""Rollout animations: one frame per lead time, truth beside the ensemble mean and spread (std).

Reads the forecast layout of :mod:`dyffusion.evaluation.forecast` (``dyffusion forecast`` files, or the Dataset
:func:`~dyffusion.evaluation.forecast.forecast_dataset` returns). Frames are drawn on a pyplot-free Figure and
written by matplotlib.animation's writers: Pillow for GIF, ffmpeg for MP4.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.animation import FFMpegWriter, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from dyffusion.config import MEMBER_DIMS
from dyffusion.data.contract import DataError
from dyffusion.errors import UserError
from dyffusion.io import atomic_path, check_writable_directory

__all__ = ["ANIMATION_SUFFIXES", "animate_forecast", "check_animation_path"]

ANIMATION_SUFFIXES = (".gif", ".mp4")
DPI = 100


def check_animation_path(path: str | Path) -> None:
    """Raise now, before any sampling, if :func:`animate_forecast` could not write ``path``."""
    path = Path(path)
    if path.suffix.lower() not in ANIMATION_SUFFIXES:
        raise UserError(f"{path}: an animation is written as .gif or .mp4, not as "
                         f"{path.suffix or 'a file without suffix'}")
    if path.suffix.lower() == ".mp4" and not FFMpegWriter.isAvailable():
        raise FileNotFoundError(errno.ENOENT, "writing MP4 needs ffmpeg, which is not installed (apt-get install "
                                              "ffmpeg), or write a .gif", str(path))
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory; give a file name (.gif or .mp4)", str(path))
    check_writable_directory(path.parent)


@dataclass
class _Row:
    """One channel of one initial condition: ensemble (M, L, H, W), truth (L, H, W) or None."""

    name: str
    units: str
    ensemble: np.ndarray
    truth: np.ndarray | None


def _member_dim(dataset: xr.Dataset) -> str:
    found = [dim for dim in MEMBER_DIMS if dim in dataset.dims]
    if not found or "lead_time" not in dataset.dims or "init_time" not in dataset.dims:
        raise DataError(f"not a forecast file: it needs dims ({' or '.join(MEMBER_DIMS)}), init_time and lead_time; "
                        f"it has {', '.join(map(str, dataset.dims)) or 'none'}")
    return found[0]


def _rows(dataset: xr.Dataset, member_dim: str) -> list[_Row]:
    """The channels of ``dataset`` (one initial condition), named like the data contract's (``q_x`` for the entry
    ``x`` of the extra dim of ``q``)."""
    rows = []
    for name, variable in dataset.data_vars.items():
        if member_dim not in variable.dims:
            continue  # truth_<name>, or a variable that is not forecast
        truth = dataset.get(f"truth_{name}")
        extra = [dim for dim in variable.dims if dim not in (member_dim, "lead_time")][:-2]
        entries = [(str(name), {})] if not extra else [
            (f"{name}_{entry}", {extra[0]: index}) for index, entry in enumerate(dataset[extra[0]].values)]
        for label, selection in entries:
            rows.append(_Row(label, str(variable.attrs.get("units", "")),
                             variable.isel(selection).transpose(member_dim, "lead_time", ...).values,
                             None if truth is None else truth.isel(selection).transpose("lead_time", ...).values))
    return rows


def _limits(*fields: np.ndarray, zero: bool = False) -> tuple[float, float]:
    """Colour limits over all lead times (NaN ignored), so that a colour means the same value in every frame."""
    values = np.concatenate([field[np.isfinite(field)] for field in fields if field is not None])
    if values.size == 0:
        return 0.0, 1.0
    low, high = 0.0 if zero else float(values.min()), float(values.max())
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def _time_text(value) -> str:
    """A time coordinate's value as people write it: a date, a duration or a number."""
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[s]").item())
    if isinstance(value, np.timedelta64):
        return str(value.astype("timedelta64[s]").item())
    return f"{float(value):g}"


def animate_forecast(dataset: xr.Dataset, path: str | Path, init: int = 0, channel: str | None = None,
                     fps: float = 4, progress: bool = False) -> Path:
    """Write ``path`` (.gif, or .mp4 with ffmpeg): one frame per lead time of the initial condition ``init``.

    dataset: a forecast, variables (member, init_time, lead_time, [extra], sp1, sp2) and ``truth_<name>``
    (init_time, lead_time, [extra], sp1, sp2) where the truth is known. One row per channel (or only ``channel``),
    columns truth (when known), ensemble mean and ensemble std; each row's colour limits are fixed over the
    whole animation. Returns ``path``.
    """
    path = Path(path)
    check_animation_path(path)
    member_dim = _member_dim(dataset)
    if not 0 <= init < dataset.sizes["init_time"]:
        raise DataError(f"initial condition {init} outside 0..{dataset.sizes['init_time'] - 1}")
    one = dataset.isel(init_time=init)
    rows = _rows(one, member_dim)
    if channel is not None:
        names = [row.name for row in rows]
        if channel not in names:
            raise DataError(f"no channel {channel!r} in the forecast; it has {', '.join(names)}")
        rows = [rows[names.index(channel)]]
    with_truth = any(row.truth is not None for row in rows)
    columns = (["truth"] if with_truth else []) + ["ensemble mean", "ensemble std"]
    members = one.sizes[member_dim]

    figure = Figure(figsize=(3.0 * len(columns) + 0.6, 2.7 * len(rows) + 0.7), layout="constrained")
    FigureCanvasAgg(figure)
    axes = np.atleast_2d(figure.subplots(len(rows), len(columns), squeeze=False))
    value_colours = matplotlib.colormaps["viridis"].with_extremes(bad="0.7")  # masked points grey
    spread_colours = matplotlib.colormaps["magma"].with_extremes(bad="0.7")
    # Per row, the images of a frame and the (L, H, W) fields they show.
    images: list[tuple[object, np.ndarray]] = []
    for row, ax_row in zip(rows, axes):
        mean, std = row.ensemble.mean(axis=0), row.ensemble.std(axis=0)
        fields = {"truth": row.truth if row.truth is not None else np.full_like(mean, np.nan),
                  "ensemble mean": mean, "ensemble std": std}
        value_limits, spread_limits = _limits(row.truth, mean), _limits(std, zero=True)
        for ax, column in zip(ax_row, columns):
            spread = column == "ensemble std"
            low, high = spread_limits if spread else value_limits
            image = ax.imshow(np.ma.masked_invalid(fields[column][0]), origin="lower", interpolation="nearest",
                              cmap=spread_colours if spread else value_colours, vmin=low, vmax=high)
            images.append((image, fields[column]))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{row.name}: {column}", fontsize=9)
            if column != "ensemble mean" or not with_truth:  # truth and mean share one colour bar
                figure.colorbar(image, ax=ax_row[:2] if column == "truth" else ax, shrink=0.85, label=row.units)
    title = figure.suptitle("")
    method = f"{one.attrs['method']}, " if "method" in one.attrs else ""
    heading = f"{method}{members} members from initial time {_time_text(one['init_time'].values)}"
    lead_times = one["lead_time"].values
    lead_steps = one["lead_step"].values if "lead_step" in one.coords else None

    writer = FFMpegWriter(fps=fps) if path.suffix.lower() == ".mp4" else PillowWriter(fps=fps)
    with atomic_path(path, suffix=f".tmp{path.suffix}") as temporary, writer.saving(figure, temporary, DPI):
        for lead in tqdm(range(len(lead_times)), desc="animating", unit="frame", disable=not progress):
            for image, field in images:
                image.set_data(np.ma.masked_invalid(field[lead]))
            step = f" (step {lead_steps[lead]:g})" if lead_steps is not None else ""
            title.set_text(f"{heading}\nlead time {_time_text(lead_times[lead])}{step}")
            writer.grab_frame()
    return path
