"""Sea-surface temperature (the paper's SST experiment): NOAA OISSTv2 box files and the contract split files made from them.

Box files. The paper cuts daily 1/4-degree OISSTv2 SST into 60 x 60 boxes (15 x 15 degrees) and uses 11 of them
in the eastern tropical Pacific. One file per box, ``sst.day.mean.box{ID}.nc``, variable ``sst`` in degrees
Celsius over ``(time, lat, lon)``, NaN on land, daily datetime ``time``, 1-D ``lat``/``lon`` cell centres.

Split files. :func:`prepare_sst` turns box files (released or synthetic) into ``train.nc``, ``val.nc``,
``test.nc`` of the data contract: ``sst`` ``(trajectory, time, lat, lon)``, one trajectory per box, standardised
per pixel with a daily climatology of the train dates, land NaN. Boxes have their own latitudes, so positions are
the non-index coordinates ``latitude(trajectory, lat)`` and ``longitude(trajectory, lon)``, with ``box(trajectory)``.
``climatology.nc`` holds the mean and standard deviation to turn anomalies back into degrees (:func:`to_celsius`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.ndimage import uniform_filter1d
from tqdm.auto import tqdm

from dyffusion.data.contract import DataError
from dyffusion.data.generation import write_netcdf

PAPER_BOXES = (84, 85, 86, 87, 88, 89, 108, 109, 110, 111, 112)
PAPER_DATE_SPLITS = {"train": ("1982-01-01", "2018-12-31"), "val": ("2019-01-01", "2019-12-31"),
                     "test": ("2020-01-01", "2020-12-31")}
BOX_SIZE = 60
CELL_DEGREES = 0.25
CLIMATOLOGY_WINDOW_DAYS = 31
BOX_FILE_PATTERN = re.compile(r"^sst\.day\.mean\.box(\d+)\.nc$")


def box_file_name(box_id: int) -> str:
    return f"sst.day.mean.box{int(box_id)}.nc"


def find_box_files(box_dir: str | Path, boxes=None) -> dict[int, Path]:
    """Box ID -> file for the ``sst.day.mean.box{ID}.nc`` files of ``box_dir`` (all, or those of ``boxes``), by ID."""
    box_dir = Path(box_dir)
    if not box_dir.is_dir():
        raise DataError(f"SST box directory {box_dir} does not exist")
    found = {int(match.group(1)): path for path in box_dir.iterdir() if (match := BOX_FILE_PATTERN.match(path.name))}
    if not found:
        raise DataError(f"no SST box files (sst.day.mean.box{{ID}}.nc) in {box_dir}")
    if boxes is None:
        return dict(sorted(found.items()))
    missing = sorted(set(int(box) for box in boxes) - set(found))
    if missing:
        raise DataError(f"{box_dir} has no file for boxes {missing} (found boxes {sorted(found)})")
    return {box: found[box] for box in sorted(set(int(box) for box in boxes))}


# ----------------------------------------------------------------------------------------------------------------
# Climatology and contract split files


def as_day(value) -> np.datetime64:
    try:
        return np.datetime64(value, "D")
    except (TypeError, ValueError):
        raise DataError(f"{value!r} is not a date like 2019-01-01") from None


def calendar_day(dates) -> np.ndarray:
    """0-based day of a leap year ``(T,)`` int of datetime64 ``dates``: 29 February is 59, 1 March is always 60.

    Days are aligned by calendar date, so a climatology of 366 days never mixes 1 March of leap years with
    28 February of others; 29 February gets its estimate mostly from its neighbours through the smoothing.
    """
    days = np.asarray(dates).astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    day_of_year = (days - years.astype("datetime64[D]")).astype(np.int64)
    year = years.astype(np.int64) + 1970
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    return day_of_year + (~leap & (day_of_year >= 59))


def _parse_splits(splits: dict) -> dict[str, tuple[np.datetime64, np.datetime64]]:
    ranges = {}
    for split, (start, end) in splits.items():
        first, last = as_day(start), as_day(end)
        if last < first:
            raise DataError(f"split {split!r}: end {last} is before start {first}")
        ranges[split] = (first, last)
    if "train" not in ranges:
        raise DataError(f"the splits need a 'train' range (its dates give the climatology), got {list(splits)}")
    return ranges


def _box_days(ds: xr.Dataset, path: Path) -> np.ndarray:
    """The days ``(T,)`` datetime64[D] of an opened box file, after checking its layout.

    Times are floored to days (the released files may stamp days at 12:00) and must increase day by day.
    """
    if "sst" not in ds.data_vars:
        raise DataError(f"{path}: no variable 'sst' (variables: {list(ds.data_vars)})")
    if set(ds["sst"].dims) != {"time", "lat", "lon"}:
        raise DataError(f"{path}: 'sst' must have dims (time, lat, lon), has {ds['sst'].dims}")
    missing_coords = [name for name in ("time", "lat", "lon") if name not in ds.coords]
    if missing_coords:
        raise DataError(f"{path}: no coordinate values for {missing_coords}")
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        raise DataError(f"{path}: time is not decoded as dates (dtype {ds['time'].dtype})")
    days = ds["time"].values.astype("datetime64[D]")
    if days.size > 1 and not (np.diff(days) > np.timedelta64(0, "D")).all():
        raise DataError(f"{path}: time is not strictly increasing by day")
    return days


def _date_block(days: np.ndarray, first: np.datetime64, last: np.datetime64, box_id: int, path: Path,
                split: str) -> slice:
    """The time indices of days ``first``..``last`` (inclusive) in ``days``; every one of them must be there."""
    wanted = int((last - first).astype(int)) + 1
    inside = np.flatnonzero((days >= first) & (days <= last))
    if inside.size == 0:
        covers = f"{days[0]}..{days[-1]}" if days.size else "no dates"
        raise DataError(f"split {split!r} asks for {first}..{last}, but box {box_id} ({path}) has no data then "
                        f"(it covers {covers})")
    if inside.size != wanted:
        present = set(days[inside].tolist())
        gap = next(day for day in np.arange(first, last + 1).tolist() if day not in present)
        raise DataError(f"box {box_id} ({path}) misses {wanted - inside.size} of the {wanted} days of split "
                        f"{split!r} {first}..{last} (first missing: {gap})")
    return slice(inside[0], inside[-1] + 1)  # daily and increasing: the range is one contiguous block


def _read_block(ds: xr.Dataset, block: slice) -> np.ndarray:
    """SST ``(T, H, W)`` float32 of the time indices ``block`` of an opened box file."""
    values = ds["sst"].transpose("time", "lat", "lon").isel(time=block).values
    return values.astype(np.float32, copy=False)


def _year_blocks(dates: np.ndarray) -> list[slice]:
    """Contiguous blocks of ``dates`` within one calendar year: their calendar days are distinct."""
    years = dates.astype("datetime64[Y]")
    edges = [0, *(np.flatnonzero(years[1:] != years[:-1]) + 1).tolist(), len(dates)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def daily_climatology(values: np.ndarray, dates: np.ndarray,
                      window: int = CLIMATOLOGY_WINDOW_DAYS) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean ``(366, H, W)`` per calendar day and std ``(H, W)`` of the anomalies, float32.

    ``values (T, H, W)`` at daily ``dates``. Sums and counts per calendar day are smoothed with a circular running
    window of ``window`` days before dividing (a few years give noisy single days; the division by the smoothed
    counts weights 29 February by its few samples). Land (NaN) stays NaN; pixels that never vary get NaN std.
    """
    slots = calendar_day(dates)
    sums = np.zeros((366, *values.shape[1:]))
    counts = np.zeros(366)
    for block in _year_blocks(dates):
        sums[slots[block]] += values[block]
        counts[slots[block]] += 1
    smoothed_counts = uniform_filter1d(counts, window, mode="wrap")
    if (smoothed_counts == 0).any():
        raise DataError(f"the train dates ({dates[0]}..{dates[-1]}) leave calendar days without data within "
                        f"{window // 2} days: give at least one full year")
    mean = uniform_filter1d(sums, window, axis=0, mode="wrap") / smoothed_counts[:, None, None]
    total, squares = np.zeros(values.shape[1:]), np.zeros(values.shape[1:])
    for block in _year_blocks(dates):
        anomaly = values[block] - mean[slots[block]]
        total += anomaly.sum(axis=0)
        squares += (anomaly * anomaly).sum(axis=0)
    variance = squares / len(dates) - (total / len(dates)) ** 2
    std = np.sqrt(np.maximum(variance, 0.0))
    return mean.astype(np.float32), np.where(std > 0, std, np.nan).astype(np.float32)


def _position_coords(dim: str, lats: list[np.ndarray], lons: list[np.ndarray]) -> dict:
    return {
        "latitude": ((dim, "lat"), np.stack(lats), {"standard_name": "latitude", "units": "degrees_north"}),
        "longitude": ((dim, "lon"), np.stack(lons), {"standard_name": "longitude", "units": "degrees_east"}),
    }


def prepare_sst(box_dir, out_dir, splits: dict = PAPER_DATE_SPLITS, boxes=None, progress: bool = True) -> dict[str, Path]:
    """Box files -> ``out_dir/{train,val,test}.nc`` (one per entry of ``splits``) and ``out_dir/climatology.nc``.

    ``splits`` maps a split to an inclusive (start, end) date range; the climatology comes from the train range
    only and standardises every split. Each split file holds ``sst`` ``(trajectory, time, lat, lon)`` float32,
    one trajectory per box (sorted by ID). Boxes are read one at a time; one split is held in memory while it is
    written (the paper's train split: 11 x 13514 x 60 x 60 float32, 2.1 GB). Returns name -> path, the splits
    and ``"climatology"``.
    """
    ranges = _parse_splits(splits)
    files = find_box_files(box_dir, boxes)
    train_first, train_last = ranges["train"]
    train_dates = np.arange(train_first, train_last + 1)
    # First every box: its layout, all date ranges (so nothing is written for data that cannot be complete)
    # and its climatology; one box in memory at a time.
    blocks, means, stds, lats, lons, grid = {}, [], [], [], [], None
    for box, path in tqdm(files.items(), desc="SST climatology", unit="box", disable=not progress):
        with xr.open_dataset(path) as ds:
            days = _box_days(ds, path)
            blocks[box] = {split: _date_block(days, first, last, box, path, split)
                           for split, (first, last) in ranges.items()}
            values = _read_block(ds, blocks[box]["train"])
            lats.append(ds["lat"].values)
            lons.append(ds["lon"].values)
        if grid is None:
            grid = (box, values.shape[1:])
        elif values.shape[1:] != grid[1]:
            raise DataError(f"box {box} has a {values.shape[1]} x {values.shape[2]} grid, box {grid[0]} has "
                            f"{grid[1][0]} x {grid[1][1]}: all boxes must share one grid size")
        missing = np.isnan(values)
        if (missing.any(axis=0) & ~missing.all(axis=0)).any():
            raise DataError(f"box {box} ({path}) has NaN in the train dates at points that are not NaN at all "
                            "times (only land may be NaN)")
        mean, std = daily_climatology(values, train_dates)
        means.append(mean)
        stds.append(std)
        del values, missing  # before the next box is read, not after

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    box_ids = np.array(list(files), dtype=np.int64)
    source = {"source": f"{Path(box_dir).resolve()}", "climatology_dates": f"{train_first}..{train_last}",
              "climatology_window_days": CLIMATOLOGY_WINDOW_DAYS}
    paths = {}
    for split, (first, last) in ranges.items():
        dates = np.arange(first, last + 1)
        slots = calendar_day(dates)
        anomalies = np.empty((len(files), len(dates), *grid[1]), np.float32)
        for index, (box, path) in enumerate(tqdm(files.items(), desc=f"SST {split}", unit="box",
                                                 disable=not progress)):
            with xr.open_dataset(path) as ds:
                values = _read_block(ds, blocks[box][split])
            anomalies[index] = (values - means[index][slots]) / stds[index]
            if (np.isnan(anomalies[index]) != np.isnan(stds[index])).any():
                raise DataError(f"box {box} ({path}) has NaN in split {split!r} ({first}..{last}) outside the "
                                "land of its train dates")
        dataset = xr.Dataset(
            data_vars={"sst": (("trajectory", "time", "lat", "lon"), anomalies,
                               {"units": "1", "long_name": "standardised SST anomaly: (SST - daily climatology) / "
                                                           "standard deviation, both per pixel from the train dates"})},
            coords={"time": dates.astype("datetime64[ns]"), "box": ("trajectory", box_ids),
                    **_position_coords("trajectory", lats, lons)},
            attrs={"title": f"NOAA OISSTv2-style SST boxes, {split} split", "split": split,
                   "date_range": f"{first}..{last}", **source},
        )
        paths[split] = out_dir / f"{split}.nc"
        write_netcdf(dataset, paths[split])
        del anomalies, dataset

    climatology = xr.Dataset(
        data_vars={
            "mean": (("box", "dayofyear", "lat", "lon"), np.stack(means),
                     {"units": "degC", "long_name": "SST daily climatology (smoothed)"}),
            "std": (("box", "lat", "lon"), np.stack(stds),
                    {"units": "degC", "long_name": "standard deviation of SST anomalies"}),
        },
        coords={"box": box_ids,
                "dayofyear": ("dayofyear", np.arange(1, 367),
                              {"long_name": "day of a leap year; 60 is 29 February, other years skip it"}),
                **_position_coords("box", lats, lons)},
        attrs={"title": "per-pixel SST climatology of the train dates; sst = anomaly * std + mean[day]", **source},
    )
    paths["climatology"] = out_dir / "climatology.nc"
    write_netcdf(climatology, paths["climatology"])
    return paths


def to_celsius(anomaly: xr.DataArray, climatology: xr.Dataset) -> xr.DataArray:
    """Standardised anomalies ``(trajectory, time, lat, lon)`` with ``box`` and datetime ``time`` -> SST in degC."""
    boxes = climatology.sel(box=anomaly["box"].values)
    slots = calendar_day(anomaly["time"].values)
    mean = boxes["mean"].values[:, slots]  # (trajectory, time, lat, lon)
    std = boxes["std"].values[:, None]
    values = anomaly.transpose("trajectory", "time", "lat", "lon").values * std + mean
    return xr.DataArray(values.astype(np.float32), dims=("trajectory", "time", "lat", "lon"), coords=anomaly.coords,
                        attrs={"units": "degC", "long_name": "sea surface temperature"})


def clip_splits(start, end, splits: dict = PAPER_DATE_SPLITS) -> dict[str, tuple[str, str]]:
    """``splits`` clipped to the dates ``start``..``end``; a split left without dates is an error."""
    first, last = as_day(start), as_day(end)
    clipped = {}
    for split, (split_start, split_end) in _parse_splits(splits).items():
        lo, hi = max(split_start, first), min(split_end, last)
        if hi < lo:
            raise DataError(f"the dates {first}..{last} leave no day for split {split!r} ({split_start}..{split_end})")
        clipped[split] = (str(lo), str(hi))
    return clipped
