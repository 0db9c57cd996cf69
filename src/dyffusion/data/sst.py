"""Sea-surface temperature (SPEC section 8): NOAA OISSTv2 boxes, a synthetic stand-in, and contract split files.

Box files. The paper cuts daily 1/4-degree OISSTv2 SST into 60 x 60 boxes (15 x 15 degrees) and uses 11 of them
in the eastern tropical Pacific. One file per box, ``sst.day.mean.box{ID}.nc``, variable ``sst`` in degrees
Celsius over ``(time, lat, lon)``, NaN on land, daily datetime ``time``, 1-D ``lat``/``lon`` cell centres.

Synthetic boxes. Without internet access the released files cannot be fetched, so :func:`synthetic_box` makes
files with the same layout. Stand-in placement (not the real OISST box map): box ``b`` covers longitudes
``15 (b mod 24 + 1)`` to ``+15`` degrees east and latitudes ``45 - 15 (b div 24)`` to ``+15`` degrees north, which puts
the paper's IDs 84-89 on 195-285E, 0-15N and 108-112 on 195-270E, 15S-0. A smooth coastline of the Americas
and a Galapagos-like island give land to the easternmost boxes only (89 about half, 88 and 112 a little). SST is

    climatological mean (meridional gradient, equatorial cold tongue, Peru upwelling)
    + seasonal cycle (0.6-1.7 degC, warmest in September north of ~4N and in March south of it)
    + ENSO-like mode (a damped ~3.7-year oscillator shared by all boxes of a seed, largest in the east)
    + anomalies: spatially correlated (Matern 3/2, 1-3 degrees), damped (AR(1), ~30 days at large scales,
      faster at small ones) and advected by a westward current of 0.5-1.1 pixels/day that varies with season.

The anomalies are evolved in Fourier space on a periodic domain twice the box size (a uniform shift is an exact
phase rotation; damping plus fresh noise with the target spectrum keeps the spectrum stationary) and the box is
cut from the middle, so nothing wraps around visibly before it has decayed.

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
import scipy.fft
import xarray as xr
from scipy.interpolate import PchipInterpolator
from scipy.ndimage import uniform_filter1d
from scipy.signal import lfilter
from tqdm.auto import tqdm

from dyffusion.data.contract import DataError
from dyffusion.data.generation import split_seed, write_netcdf
from dyffusion.errors import UserError

PAPER_BOXES = (84, 85, 86, 87, 88, 89, 108, 109, 110, 111, 112)
PAPER_DATE_SPLITS = {"train": ("1982-01-01", "2018-12-31"), "val": ("2019-01-01", "2019-12-31"),
                     "test": ("2020-01-01", "2020-12-31")}
BOX_SIZE = 60
CELL_DEGREES = 0.25
CLIMATOLOGY_WINDOW_DAYS = 31
BOX_FILE_PATTERN = re.compile(r"^sst\.day\.mean\.box(\d+)\.nc$")

# The synthetic model; a change of any of these must bump SYNTHETIC_VERSION so stale files are regenerated.
SYNTHETIC_VERSION = 1
BOXES_PER_ROW = 24
ANOMALY_LENGTH_PIXELS = (3.0, 5.0)  # Matern 3/2 length scales (meridional, zonal): zonally elongated, as in the tropics
ANOMALY_DAMPING_DAYS = 30.0  # e-folding time of the largest scales
ANOMALY_DIFFUSIVITY = 0.1  # pixels^2/day (~900 m^2/s): small scales decay faster than large ones
WESTWARD_SPEED = (0.8, 0.3)  # pixels/day: mean and seasonal amplitude, fastest in September (south equatorial current)
NORTHWARD_SPEED = 0.15  # pixels/day, seasonal amplitude of a meridional drift
ENSO_PERIOD_DAYS = 3.7 * 365.25
ENSO_DAMPING_DAYS = 365.0
ENSO_EPOCH = np.datetime64("1900-01-01")  # the index starts here, so every date range of a seed sees the same index
YEAR_DAYS = 365.25
SIMULATION_CHUNK_DAYS = 64  # days of noise drawn and transformed at once: fewer numpy calls, bounded memory

# West coast of the Americas (latitude, longitude east) and an island, in degrees; smooth and only roughly real.
COAST_POINTS = ((-30, 288.4), (-20, 289.8), (-15, 284.6), (-10, 281.6), (-6, 279.0), (-4.5, 278.8), (-2.5, 279.5),
                (0, 279.8), (2, 281.2), (5, 282.6), (7, 281.8), (8, 279.6), (9, 276.8), (11, 274.3), (13, 272.3),
                (14, 269.8), (16, 265.0), (17, 260.0), (20, 254.8), (23, 250.0), (30, 244.0))
ISLAND = (-0.55, 269.4, 0.55, 0.75)  # centre latitude, centre longitude, semi-axes (latitude, longitude)


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
# Synthetic boxes


def box_region(box_id: int) -> tuple[float, float]:
    """(southern latitude, western longitude) in degrees of the 15 x 15-degree region of a box (stand-in map)."""
    row, column = divmod(int(box_id), BOXES_PER_ROW)
    south = 45.0 - 15.0 * row
    if not -30.0 <= south <= 15.0:  # the synthetic climate is only made for the tropics
        raise UserError(f"box {box_id} is outside 30S-30N, the synthetic tropics (boxes 48-143)")
    return south, 15.0 * (column + 1)


def _box_grid(box_id: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes and longitudes ``(size,)`` float64: the middle ``size x size`` cells of the box."""
    south, west = box_region(box_id)
    offset = (BOX_SIZE - size) / 2 * CELL_DEGREES
    centres = (np.arange(size) + 0.5) * CELL_DEGREES + offset
    return south + centres, west + centres


def _coast_longitude(lat: np.ndarray) -> np.ndarray:
    """Longitude east of which there is land (the Americas), per latitude ``(...)`` in degrees."""
    points = np.array(COAST_POINTS)
    # Pchip does not overshoot between the points, so the coast never bulges past them.
    return PchipInterpolator(points[:, 0], points[:, 1])(np.clip(lat, points[0, 0], points[-1, 0]))


def land_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool, True on land, for cell centres ``lat (H,)`` and ``lon (W,)`` in degrees."""
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    island_lat, island_lon, half_lat, half_lon = ISLAND
    island = ((lat2 - island_lat) / half_lat) ** 2 + ((lon2 - island_lon) / half_lon) ** 2 < 1.0
    return (lon2 > _coast_longitude(lat2)) | island


def _climate_maps(lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
    """Static ``(H, W)`` maps of the synthetic climate: mean (degC), seasonal amplitude (degC) and peak day,
    ENSO pattern (degC per unit index) and anomaly amplitude (degC)."""
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    east = np.clip((lon2 - 190.0) / 80.0, 0.0, 1.0)  # 0 in the central Pacific, 1 at 270E
    cold_tongue = np.exp(-(((lat2 + 0.5) / 3.0) ** 2))  # equatorial upwelling, centred just south of the equator
    south_east = np.clip((lon2 - 200.0) / 80.0, 0.0, 1.0) * np.clip(-lat2 / 15.0, 0.0, 1.0)
    # Upwelling along Peru: colder within a few degrees of the coast, south of the equator.
    coast_distance = np.maximum(_coast_longitude(lat2) - lon2, 0.0)
    upwelling = 2.5 * np.exp(-coast_distance / 2.5) * 0.5 * (1.0 - np.tanh((lat2 + 1.0) / 2.0))
    mean = 28.0 - 0.012 * (lat2 - 6.0) ** 2 - 4.5 * east * cold_tongue - 2.5 * south_east - upwelling
    # Warmest in September north of ~4N (ITCZ side), in March on the equator and south of it.
    seasonal_amplitude = 0.6 + 0.07 * np.abs(lat2) + 1.0 * east * np.exp(-(((lat2 + 0.5) / 4.0) ** 2))
    seasonal_peak_day = 162.0 + 88.0 * np.tanh((lat2 - 4.0) / 3.0)
    enso_pattern = 1.2 * np.exp(-(((lat2 + 0.5) / 6.0) ** 2)) * (0.35 + 0.65 * east)
    anomaly_amplitude = 0.35 + 0.35 * east * np.exp(-(((lat2 + 0.5) / 5.0) ** 2))
    return {"mean": mean, "seasonal_amplitude": seasonal_amplitude, "seasonal_peak_day": seasonal_peak_day,
            "enso_pattern": enso_pattern, "anomaly_amplitude": anomaly_amplitude}


def _day_of_year(dates: np.ndarray) -> np.ndarray:
    """0-based day of the year ``(T,)`` float64 of datetime64[D] dates."""
    return (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.float64)


def enso_index(seed: int, dates: np.ndarray) -> np.ndarray:
    """Unit-variance ENSO-like index ``(T,)`` at datetime64[D] ``dates``: a noise-driven damped oscillator.

    An AR(2) with poles ``r exp(+-i w)`` (damping r = exp(-1/365), period 2 pi / w = 3.7 years) driven by daily
    white noise, run from ``ENSO_EPOCH`` so that it does not depend on the requested dates; same for every box.
    """
    if dates.min() < ENSO_EPOCH:
        raise UserError(f"synthetic SST starts at {ENSO_EPOCH}, asked for {dates.min()}")
    days = int((dates.max() - ENSO_EPOCH).astype(int)) + 1
    radius, frequency = np.exp(-1.0 / ENSO_DAMPING_DAYS), 2.0 * np.pi / ENSO_PERIOD_DAYS
    a1, a2 = 2.0 * radius * np.cos(frequency), -radius * radius
    forcing = np.random.default_rng(split_seed(seed, "sst-enso")).standard_normal(days)
    index = lfilter([1.0], [1.0, -a1, -a2], forcing)
    stationary_variance = (1.0 - a2) / ((1.0 + a2) * ((1.0 - a2) ** 2 - a1**2))
    return index[(dates - ENSO_EPOCH).astype(int)] / np.sqrt(stationary_variance)


def advected_anomalies(rng: np.random.Generator, dates: np.ndarray, size: int) -> np.ndarray:
    """Unit-variance anomalies ``(T, size, size)`` float32 (axis 1 northward, axis 2 eastward) at daily ``dates``.

    On a periodic ``2 size`` domain each Fourier mode k obeys ``A(t+1) = g A(t) + sqrt(S (1 - phi^2)) W(t)`` with
    ``g = phi exp(-i k.U(t))``: the shift by the current ``U(t)`` (pixels/day) is exact, ``phi(k) = exp(-1/tau -
    kappa |k|^2)`` damps, white noise ``W`` refills, and the spectrum S (Matern 3/2) stays stationary from the first
    day on (the initial state is drawn from it). The middle ``size x size`` is returned.
    """
    n = 2 * size
    ky = 2.0 * np.pi * scipy.fft.fftfreq(n)[:, None]
    kx = 2.0 * np.pi * scipy.fft.fftfreq(n)[None, :]
    length_y, length_x = ANOMALY_LENGTH_PIXELS
    spectrum = (1.0 + (ky * length_y) ** 2 + (kx * length_x) ** 2) ** -2.5
    # Nyquist modes cannot be shifted by a fraction of a pixel in a real field: leave them out (they hold ~1e-7).
    spectrum[n // 2, :] = spectrum[:, n // 2] = 0.0
    spectrum /= spectrum.mean()  # with norm="ortho" the pixel variance is the mean of the full spectrum
    kx = 2.0 * np.pi * scipy.fft.rfftfreq(n)[None, :]  # from here on the rfft half; the spectrum is even in kx
    spectrum = spectrum[:, : n // 2 + 1]
    persistence = np.exp(-1.0 / ANOMALY_DAMPING_DAYS - ANOMALY_DIFFUSIVITY * (kx**2 + ky**2))
    refill = np.sqrt(spectrum * (1.0 - persistence**2)).astype(np.complex64)

    season = 2.0 * np.pi * _day_of_year(dates) / YEAR_DAYS
    eastward = -(WESTWARD_SPEED[0] + WESTWARD_SPEED[1] * np.cos(season - 2.0 * np.pi * 250.0 / YEAR_DAYS))
    northward = NORTHWARD_SPEED * np.sin(season - 2.0 * np.pi * 160.0 / YEAR_DAYS)

    def white_modes(count: int) -> np.ndarray:
        noise = rng.standard_normal((count, n, n), dtype=np.float32)
        return scipy.fft.rfft2(noise, norm="ortho")

    state = (np.sqrt(spectrum) * white_modes(1)[0]).astype(np.complex64)
    start = (n - size) // 2
    out = np.empty((len(dates), size, size), np.float32)
    for first in range(0, len(dates), SIMULATION_CHUNK_DAYS):
        count = min(SIMULATION_CHUNK_DAYS, len(dates) - first)
        noise = white_modes(count)
        modes = np.empty_like(noise)
        for day in range(count):
            if first + day > 0:  # day 0 is the stationary initial state
                step = persistence * np.exp(-1j * (kx * eastward[first + day] + ky * northward[first + day]))
                state = (step * state + refill * noise[day]).astype(np.complex64)
            modes[day] = state
        fields = scipy.fft.irfft2(modes, s=(n, n), norm="ortho")
        out[first:first + count] = fields[:, start:start + size, start:start + size]
    return out


def _daily_dates(start, end) -> np.ndarray:
    first, last = _as_day(start), _as_day(end)
    if last < first:
        raise UserError(f"end {last} is before start {first}")
    return np.arange(first, last + 1, dtype="datetime64[D]")


def synthetic_box(box_id: int, start, end, seed: int = 0, size: int = BOX_SIZE) -> xr.Dataset:
    """A synthetic OISST-like box file: ``sst`` ``(time, lat, lon)`` float32 degC, daily ``start``..``end``
    (inclusive), NaN on land; deterministic for (seed, box_id, start, end, size). See the module docstring."""
    if not 1 <= size <= BOX_SIZE:
        raise UserError(f"size must be in 1..{BOX_SIZE}, got {size}")
    dates = _daily_dates(start, end)
    lat, lon = _box_grid(box_id, size)
    maps = _climate_maps(lat, lon)
    season = 2.0 * np.pi * _day_of_year(dates)[:, None, None] / YEAR_DAYS
    seasonal = maps["seasonal_amplitude"] * np.cos(season - 2.0 * np.pi * maps["seasonal_peak_day"] / YEAR_DAYS)
    # ENSO events peak around December, as the real ones are locked to the seasonal cycle.
    enso_season = 1.0 + 0.3 * np.cos(season - 2.0 * np.pi * 340.0 / YEAR_DAYS)
    enso = enso_index(seed, dates)[:, None, None] * enso_season * maps["enso_pattern"]
    anomalies = advected_anomalies(np.random.default_rng(split_seed(seed, f"sst-box{box_id}")), dates, size)
    sst = (maps["mean"] + seasonal + enso + maps["anomaly_amplitude"] * anomalies).astype(np.float32)
    sst[:, land_mask(lat, lon)] = np.nan
    return xr.Dataset(
        data_vars={"sst": (("time", "lat", "lon"), sst,
                           {"units": "degC", "long_name": "daily mean sea surface temperature (synthetic)"})},
        coords={
            "time": dates.astype("datetime64[ns]"),
            "lat": ("lat", lat.astype(np.float32), {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon.astype(np.float32), {"standard_name": "longitude", "units": "degrees_east"}),
        },
        attrs={
            "title": f"synthetic stand-in for NOAA OISSTv2 daily SST, box {box_id}",
            "source": "dyffusion.data.sst.synthetic_box: climatology + seasonal cycle + ENSO-like mode + "
                      "advected AR(1) anomalies; not observations",
            "synthetic": 1, "synthetic_version": SYNTHETIC_VERSION, "box_id": int(box_id), "seed": int(seed),
            "size": int(size), "time_coverage_start": str(dates[0]), "time_coverage_end": str(dates[-1]),
        },
    )


def _box_is_complete(path: Path, box_id: int, start: str, end: str, seed: int, size: int) -> bool:
    """True if ``path`` is a readable synthetic box file made from exactly these settings."""
    expected = {"synthetic_version": SYNTHETIC_VERSION, "box_id": box_id, "seed": seed, "size": size,
                "time_coverage_start": start, "time_coverage_end": end}
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            days = int((_as_day(end) - _as_day(start)).astype(int)) + 1
            return (ds["sst"].shape == (days, size, size)
                    and all(ds.attrs.get(key) == value for key, value in expected.items()))
    except Exception:  # missing, truncated or not netCDF: regenerate
        return False


def write_synthetic_boxes(out_dir, boxes=PAPER_BOXES, start="2015-01-01", end="2020-12-31", seed: int = 0,
                          size: int = BOX_SIZE, progress: bool = True) -> list[Path]:
    """Write ``out_dir/sst.day.mean.box{ID}.nc`` per box; complete files made from the same settings are kept,
    so an interrupted run resumes. Returns the paths in the order of ``boxes``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start, end = str(_as_day(start)), str(_as_day(end))
    paths = [out_dir / box_file_name(box) for box in boxes]
    for box, path in zip(tqdm(boxes, desc="synthetic SST boxes", unit="box", disable=not progress), paths):
        if not _box_is_complete(path, int(box), start, end, seed, size):
            write_netcdf(synthetic_box(int(box), start, end, seed, size), path)
    return paths


# ----------------------------------------------------------------------------------------------------------------
# Climatology and contract split files


def _as_day(value) -> np.datetime64:
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
        first, last = _as_day(start), _as_day(end)
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
    first, last = _as_day(start), _as_day(end)
    clipped = {}
    for split, (split_start, split_end) in _parse_splits(splits).items():
        lo, hi = max(split_start, first), min(split_end, last)
        if hi < lo:
            raise DataError(f"the dates {first}..{last} leave no day for split {split!r} ({split_start}..{split_end})")
        clipped[split] = (str(lo), str(hi))
    return clipped


def make_synthetic_sst(out_dir, boxes=PAPER_BOXES, start="2015-01-01", end="2020-12-31", seed: int = 0,
                       size: int = BOX_SIZE, splits: dict | None = None, progress: bool = True) -> dict[str, Path]:
    """Synthetic boxes in ``out_dir/boxes/``, then :func:`prepare_sst` into ``out_dir``; ``splits`` defaults to
    ``PAPER_DATE_SPLITS`` clipped to ``start``..``end`` (train = start..2018-12-31, val 2019, test 2020)."""
    out_dir = Path(out_dir)
    splits = clip_splits(start, end) if splits is None else splits
    write_synthetic_boxes(out_dir / "boxes", boxes, start, end, seed, size, progress)
    return prepare_sst(out_dir / "boxes", out_dir, splits, boxes, progress)
