"""A synthetic stand-in for the paper's OISSTv2 boxes (the paper's SST experiment), in the layout of the released files.

Without internet access the released files cannot be fetched, so :func:`synthetic_box` makes
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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.fft
import xarray as xr
from scipy.interpolate import PchipInterpolator
from scipy.signal import lfilter
from tqdm.auto import tqdm

from dyffusion.data.generation import split_seed, write_netcdf
from dyffusion.data.sst import BOX_SIZE, CELL_DEGREES, PAPER_BOXES, as_day, box_file_name, clip_splits, prepare_sst
from dyffusion.errors import UserError

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
    first, last = as_day(start), as_day(end)
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
            days = int((as_day(end) - as_day(start)).astype(int)) + 1
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
    start, end = str(as_day(start)), str(as_day(end))
    paths = [out_dir / box_file_name(box) for box in boxes]
    for box, path in zip(tqdm(boxes, desc="synthetic SST boxes", unit="box", disable=not progress), paths):
        if not _box_is_complete(path, int(box), start, end, seed, size):
            write_netcdf(synthetic_box(int(box), start, end, seed, size), path)
    return paths



def make_synthetic_sst(out_dir, boxes=PAPER_BOXES, start="2015-01-01", end="2020-12-31", seed: int = 0,
                       size: int = BOX_SIZE, splits: dict | None = None, progress: bool = True) -> dict[str, Path]:
    """Synthetic boxes in ``out_dir/boxes/``, then :func:`prepare_sst` into ``out_dir``; ``splits`` defaults to
    ``PAPER_DATE_SPLITS`` clipped to ``start``..``end`` (train = start..2018-12-31, val 2019, test 2020)."""
    out_dir = Path(out_dir)
    splits = clip_splits(start, end) if splits is None else splits
    write_synthetic_boxes(out_dir / "boxes", boxes, start, end, seed, size, progress)
    return prepare_sst(out_dir / "boxes", out_dir, splits, boxes, progress)
