"""SST box files, the synthetic stand-in and the standardised split files, checked against independent truths.

Statistics are computed here from the written files with plain numpy (harmonic regression, lagged correlations);
the climatology that standardises val and test is recomputed here by grouping on month and day, and geography is
checked against known places (Costa Rica is land, the open Pacific is not).
"""

import numpy as np
import pytest
import xarray as xr

from dyffusion.data.contract import DataError, open_gridded
from dyffusion.data.sst import PAPER_BOXES, box_file_name, clip_splits, find_box_files, prepare_sst, to_celsius
from dyffusion.simulators.sst_synthetic import make_synthetic_sst, synthetic_box, write_synthetic_boxes

SPLITS = {"train": ("2015-01-01", "2016-12-31"), "val": ("2017-01-01", "2017-06-30"),
          "test": ("2017-07-01", "2017-12-31")}


def _days(start, end):
    return np.arange(np.datetime64(start), np.datetime64(end) + 1)


def _cell(ds, lat, lon):
    """Index (i, j) of the grid cell of a box file that contains the point (lat, lon)."""
    i = np.flatnonzero(np.abs(ds["lat"].values - lat) <= 0.125)
    j = np.flatnonzero(np.abs(ds["lon"].values - lon) <= 0.125)
    assert i.size and j.size, f"({lat}, {lon}) is outside the box"
    return i[0], j[0]


# ----------------------------------------------------------------------------------------------------------------
# Box files


@pytest.fixture(scope="module")
def paper_size_boxes(tmp_path_factory):
    """Full 60 x 60 boxes of a few weeks: the western corner and the two eastern ends of both rows."""
    out = tmp_path_factory.mktemp("boxes")
    write_synthetic_boxes(out, boxes=(84, 89, 108, 112), start="2019-12-20", end="2020-01-20", progress=False)
    return out


def test_box_file_layout(paper_size_boxes):
    files = find_box_files(paper_size_boxes)
    assert list(files) == [84, 89, 108, 112]
    assert [path.name for path in files.values()] == [f"sst.day.mean.box{box}.nc" for box in files]
    for box, path in files.items():
        with xr.open_dataset(path) as ds:
            sst = ds["sst"]
            assert sst.dims == ("time", "lat", "lon") and sst.dtype == np.float32
            assert sst.attrs["units"] == "degC" and sst.attrs["long_name"]
            np.testing.assert_array_equal(ds["time"].values, _days("2019-12-20", "2020-01-20").astype("datetime64[ns]"))
            for name, standard_name, units in (("lat", "latitude", "degrees_north"), ("lon", "longitude", "degrees_east")):
                coord = ds[name].values.astype(np.float64)
                assert coord.shape == (60,)
                np.testing.assert_allclose(np.diff(coord), 0.25)
                assert coord[0] % 0.25 == pytest.approx(0.125)  # cell centres of the OISST quarter-degree grid
                assert ds[name].attrs["standard_name"] == standard_name and ds[name].attrs["units"] == units
            assert -15 < ds["lat"].min() and ds["lat"].max() < 15  # the eastern tropical Pacific
            assert 180 < ds["lon"].min() and ds["lon"].max() < 290
            values = sst.values
            ocean = np.isfinite(values)
            assert (ocean == ocean[0]).all(), f"box {box}: NaN that is not constant in time"
            assert 15 < values[ocean].min() and values[ocean].max() < 33, f"box {box}: implausible SST in degC"
            assert ds.attrs["synthetic"] == 1 and "synthetic" in ds.attrs["title"]


def test_land_is_where_the_americas_are(paper_size_boxes):
    files = find_box_files(paper_size_boxes)
    with xr.open_dataset(files[89]) as east, xr.open_dataset(files[84]) as west:
        land = np.isnan(east["sst"].values[0])
        assert 0.1 < land.mean() < 0.8, "the eastern box should reach the coast of Central America"
        assert land[_cell(east, 9.9, 276.0)], "San Jose, Costa Rica is land"
        assert land[_cell(east, 3.0, 284.0)], "western Colombia is land"
        assert not land[_cell(east, 5.0, 272.0)], "the Pacific west of Costa Rica is sea"
        assert not land[_cell(east, 1.0, 275.0)], "the Pacific west of Ecuador is sea"
        assert np.isfinite(west["sst"].values).all(), "the central Pacific box has no land"


def test_same_seed_same_files_and_resume(tmp_path):
    first = write_synthetic_boxes(tmp_path / "a", boxes=(85, 109), start="2019-01-01", end="2019-02-15", seed=3,
                                  size=24, progress=False)
    again = write_synthetic_boxes(tmp_path / "b", boxes=(85, 109), start="2019-01-01", end="2019-02-15", seed=3,
                                  size=24, progress=False)
    other = write_synthetic_boxes(tmp_path / "c", boxes=(85, 109), start="2019-01-01", end="2019-02-15", seed=4,
                                  size=24, progress=False)
    for a, b, c in zip(first, again, other):
        with xr.open_dataset(a) as da, xr.open_dataset(b) as db, xr.open_dataset(c) as dc:
            np.testing.assert_array_equal(da["sst"].values, db["sst"].values)
            assert np.abs(da["sst"].values - dc["sst"].values).mean() > 0.05
    with xr.open_dataset(first[0]) as d85, xr.open_dataset(first[1]) as d109:
        assert np.abs(d85["sst"].values - d109["sst"].values).mean() > 0.05  # boxes differ too

    reference = np.array(xr.open_dataset(first[0])["sst"].values)
    stamp = first[1].stat().st_mtime_ns
    first[0].write_bytes(first[0].read_bytes()[:1000])  # an interrupted write
    write_synthetic_boxes(tmp_path / "a", boxes=(85, 109), start="2019-01-01", end="2019-02-15", seed=3, size=24,
                          progress=False)
    assert first[1].stat().st_mtime_ns == stamp, "a complete file is kept"
    with xr.open_dataset(first[0]) as redone:
        np.testing.assert_array_equal(redone["sst"].values, reference)


def test_synthetic_box_is_deterministic_per_box_and_seed():
    a = synthetic_box(110, "2018-03-01", "2018-03-20", seed=1, size=16)
    b = synthetic_box(110, "2018-03-01", "2018-03-20", seed=1, size=16)
    xr.testing.assert_identical(a, b)
    with pytest.raises(ValueError, match="outside"):
        synthetic_box(5, "2018-03-01", "2018-03-20", size=16)  # 45N-60N: not the synthetic tropics


# ----------------------------------------------------------------------------------------------------------------
# Statistics of the synthetic field


@pytest.fixture(scope="module")
def three_years(tmp_path_factory):
    """A northern (86) and a southern (110) box without land, 48 x 48, 2016-2018: raw SST, dates, latitudes."""
    out = tmp_path_factory.mktemp("stats")
    paths = write_synthetic_boxes(out, boxes=(86, 110), start="2016-01-01", end="2018-12-31", size=48, progress=False)
    fields, latitudes = {}, {}
    for box, path in zip((86, 110), paths):
        with xr.open_dataset(path) as ds:
            fields[box] = ds["sst"].values.astype(np.float64)
            latitudes[box] = ds["lat"].values
            dates = ds["time"].values
    return fields, dates, latitudes


def _anomalies(values, dates):
    """Residual ``(T, H, W)`` of a per-pixel least-squares fit of mean, trend and annual + semiannual harmonics."""
    days = (dates - dates[0]) / np.timedelta64(1, "D")
    phase = 2 * np.pi * days / 365.25
    design = np.stack([np.ones_like(days), days / days[-1], np.cos(phase), np.sin(phase), np.cos(2 * phase),
                       np.sin(2 * phase)], axis=1)
    flat = values.reshape(len(days), -1)
    coefficients, *_ = np.linalg.lstsq(design, flat, rcond=None)
    return (flat - design @ coefficients).reshape(values.shape)


def _correlation(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_anomalies_have_memory(three_years):
    fields, dates, latitudes = three_years
    anomaly = _anomalies(fields[86], dates)
    lag = {k: np.mean([_correlation(anomaly[k:, i, j], anomaly[:-k, i, j]) for i in range(0, 48, 6)
                       for j in range(0, 48, 6)]) for k in (1, 5, 30)}
    assert 0.7 < lag[1] < 0.995, f"lag-1-day autocorrelation {lag[1]:.3f}"
    assert lag[1] > lag[5] > lag[30], f"memory should fade: {lag}"
    assert abs(lag[30]) < 0.3


def test_anomalies_are_spatially_correlated(three_years):
    fields, dates, latitudes = three_years
    anomaly = _anomalies(fields[86], dates)
    for axis, name in ((1, "meridional"), (2, "zonal")):
        near = _correlation(np.take(anomaly, range(1, 48), axis), np.take(anomaly, range(0, 47), axis))
        far = _correlation(np.take(anomaly, range(10, 48), axis), np.take(anomaly, range(0, 38), axis))
        assert near > 0.8 and near > far + 0.3, f"{name}: correlation {near:.2f} at 1 pixel, {far:.2f} at 10"


def test_seasonal_cycle_opposite_across_the_equator(three_years):
    fields, dates, latitudes = three_years
    months = dates.astype("datetime64[M]").astype(int) % 12
    years = dates.astype("datetime64[Y]").astype(int)
    cycles = {}
    for box, values in fields.items():
        off_equator = np.abs(latitudes[box]) > 6  # the equatorial band has its own cold-tongue cycle
        box_mean = values[:, off_equator].mean(axis=(1, 2))
        monthly = np.array([[box_mean[(years == year) & (months == month)].mean() for month in range(12)]
                            for year in np.unique(years)])  # (year, month)
        cycle = monthly.mean(axis=0)
        noise = monthly.std(axis=0).mean()
        assert cycle.max() - cycle.min() > 1.0, f"box {box}: seasonal range {np.ptp(cycle):.2f} degC"
        assert cycle.max() - cycle.min() > 4 * noise, f"box {box}: seasonal cycle hidden in year-to-year noise"
        cycles[box] = cycle
    assert 7 <= np.argmax(cycles[86]) <= 10, "north of the equator SST peaks in boreal late summer"
    assert 1 <= np.argmax(cycles[110]) <= 4, "south of the equator SST peaks in austral late summer"
    assert _correlation(cycles[86], cycles[110]) < -0.5


def test_anomalies_move_west(three_years):
    fields, dates, latitudes = three_years
    anomaly = _anomalies(fields[86], dates)
    anomaly -= anomaly.mean(axis=(1, 2), keepdims=True)  # large-scale modes do not move
    today, margin = anomaly[1:], 6
    shifts = np.arange(-4, 5)
    # Field moving west: today's value at column j is yesterday's at column j + shift, shift > 0.
    scores = np.array([_correlation(today[:, :, margin:-margin], anomaly[:-1, :, margin + s:48 - margin + s])
                       for s in shifts])
    best = int(np.argmax(scores))
    assert shifts[best] > 0, f"cross-correlation peaks at shift {shifts[best]} (scores {np.round(scores, 3)})"
    left, centre, right = scores[best - 1:best + 2]
    peak = shifts[best] + 0.5 * (left - right) / (left - 2 * centre + right)  # parabola through the top three
    assert 0.3 < peak < 2.0, f"westward speed {peak:.2f} pixels/day"


# ----------------------------------------------------------------------------------------------------------------
# Split files


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Boxes 84 (open sea) and 89 (coast), 24 x 24, 2015-2017; box 89 stamped at 12:00 with extra variables, as
    released files may be. Returns the box directory, the output directory and the paths written."""
    root = tmp_path_factory.mktemp("prepared")
    boxes = root / "boxes"
    boxes.mkdir()
    synthetic_box(84, "2015-01-01", "2017-12-31", seed=0, size=24).to_netcdf(boxes / box_file_name(84))
    released_style = synthetic_box(89, "2015-01-01", "2017-12-31", seed=0, size=24)
    released_style = released_style.assign_coords(time=released_style["time"] + np.timedelta64(12, "h"))
    released_style["sst_error"] = released_style["sst"] * 0 + 0.3
    released_style = released_style.assign_coords(depth=1.0)
    released_style.to_netcdf(boxes / box_file_name(89))
    paths = prepare_sst(boxes, root / "out", SPLITS, progress=False)
    return boxes, root / "out", paths


def _raw(boxes, box, start, end):
    with xr.open_dataset(boxes / box_file_name(box)) as ds:
        days = ds["time"].values.astype("datetime64[D]")
        return ds["sst"].values[(days >= np.datetime64(start)) & (days <= np.datetime64(end))].astype(np.float64)


def _reference_standardisation(raw_train, train_dates, raw_other, other_dates, half_window=15):
    """The climatology recomputed independently: mean per (month, day) over train years, smoothed circularly
    over +-15 calendar days weighted by sample counts; std of train anomalies; returns standardised arrays."""
    calendar = _days("2016-01-01", "2016-12-31")  # a leap year lists every (month, day)
    key = {str(day)[5:]: index for index, day in enumerate(calendar)}

    def slots(dates):
        return np.array([key[str(day)[5:10]] for day in dates.astype("datetime64[D]")])

    train_slots = slots(train_dates)
    sums = np.zeros((366, *raw_train.shape[1:]))
    counts = np.zeros(366)
    for slot, field in zip(train_slots, raw_train):
        sums[slot] += field
        counts[slot] += 1
    smooth_sums = sum(np.roll(sums, shift, axis=0) for shift in range(-half_window, half_window + 1))
    smooth_counts = sum(np.roll(counts, shift) for shift in range(-half_window, half_window + 1))
    mean = smooth_sums / smooth_counts[:, None, None]
    train_anomaly = raw_train - mean[train_slots]
    std = train_anomaly.std(axis=0)
    return train_anomaly / std, (raw_other - mean[slots(other_dates)]) / std


def test_splits_hold_the_requested_dates(prepared):
    _, out, paths = prepared
    assert set(paths) == {"train", "val", "test", "climatology"}
    for split, (start, end) in SPLITS.items():
        assert paths[split] == out / f"{split}.nc"
        with xr.open_dataset(paths[split]) as ds:
            assert ds["sst"].dims == ("trajectory", "time", "lat", "lon")
            assert ds.sizes["trajectory"] == 2 and list(ds["box"].values) == [84, 89]
            np.testing.assert_array_equal(ds["time"].values, _days(start, end).astype("datetime64[ns]"))
            assert "lat" not in ds.coords and "lon" not in ds.coords
            assert ds["latitude"].dims == ("trajectory", "lat") and ds["longitude"].dims == ("trajectory", "lon")
            assert ds["latitude"].attrs == {"standard_name": "latitude", "units": "degrees_north"}
            assert ds["longitude"].attrs == {"standard_name": "longitude", "units": "degrees_east"}
            assert ds["sst"].attrs["units"] == "1"


def test_standardisation_uses_the_train_climatology(prepared):
    boxes, out, paths = prepared
    train_dates = _days(*SPLITS["train"])
    with xr.open_dataset(paths["train"]) as train_file:
        train = train_file["sst"].values
        np.testing.assert_allclose(train_file["latitude"].values[1],
                                   xr.open_dataset(boxes / box_file_name(89))["lat"].values)
    for index, box in enumerate((84, 89)):
        raw_train = _raw(boxes, box, *SPLITS["train"])
        ocean = np.isfinite(raw_train[0])
        mean, std = train[index][:, ocean].mean(axis=0), train[index][:, ocean].std(axis=0)
        assert np.abs(mean).max() < 0.05 and np.abs(std - 1).max() < 0.02
        for split in ("val", "test"):
            expected_train, expected = _reference_standardisation(
                raw_train, train_dates, _raw(boxes, box, *SPLITS[split]), _days(*SPLITS[split]))
            with xr.open_dataset(paths[split]) as ds:
                np.testing.assert_allclose(ds["sst"].values[index], expected, atol=2e-4)
                # Not refit on the split itself: its own mean is not forced to zero.
                assert np.abs(ds["sst"].values[index][:, ocean].mean(axis=0)).max() > 0.1
        np.testing.assert_allclose(train[index], expected_train, atol=2e-4)


def test_land_stays_masked_and_loads_with_the_contract(prepared):
    boxes, out, paths = prepared
    land = np.isnan(_raw(boxes, 89, "2015-01-01", "2015-01-01")[0])
    assert land.any() and not land.all()
    for split in SPLITS:
        with xr.open_dataset(paths[split]) as ds:
            values = ds["sst"].values
            assert (np.isnan(values[1]) == land).all() and np.isfinite(values[0]).all()
    data = open_gridded(out, "train")
    assert data.spatial_dims == ("lat", "lon") and data.channel_names == ["sst"]
    assert data.values.shape == (2, 731, 1, 24, 24)
    assert data.valid is not None and data.valid[0].all() and (data.valid[1] == ~land).all()
    assert data.latitude is not None and data.latitude.shape == (2, 24, 24)


def test_climatology_turns_anomalies_back_into_degrees(prepared):
    boxes, _, paths = prepared
    with xr.open_dataset(paths["test"]) as split, xr.open_dataset(paths["climatology"]) as climatology:
        assert climatology["mean"].dims == ("box", "dayofyear", "lat", "lon") and climatology.sizes["dayofyear"] == 366
        celsius = to_celsius(split["sst"], climatology)
    for index, box in enumerate((84, 89)):
        np.testing.assert_allclose(celsius.values[index], _raw(boxes, box, *SPLITS["test"]), atol=1e-3)


def test_make_synthetic_sst_clips_the_paper_dates(tmp_path):
    paths = make_synthetic_sst(tmp_path, boxes=(84, 108), start="2018-01-01", end="2020-12-31", size=12,
                               progress=False)
    assert sorted(p.name for p in (tmp_path / "boxes").iterdir()) == ["sst.day.mean.box108.nc", "sst.day.mean.box84.nc"]
    expected = {"train": ("2018-01-01", "2018-12-31"), "val": ("2019-01-01", "2019-12-31"),
                "test": ("2020-01-01", "2020-12-31")}
    for split, (start, end) in expected.items():
        with xr.open_dataset(paths[split]) as ds:
            assert str(ds["time"].values[0])[:10] == start and str(ds["time"].values[-1])[:10] == end
    assert PAPER_BOXES == (84, 85, 86, 87, 88, 89, 108, 109, 110, 111, 112)
    with pytest.raises(DataError, match="no day for split 'test'"):
        clip_splits("2015-01-01", "2019-12-31")


# ----------------------------------------------------------------------------------------------------------------
# Errors


def test_missing_box_directory_or_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_sst(tmp_path / "nowhere", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a box")
    with pytest.raises(DataError, match=r"no SST box files \(sst\.day\.mean\.box\{ID\}\.nc\)"):
        prepare_sst(tmp_path / "empty", tmp_path / "out", progress=False)


def test_bad_ranges_and_boxes(prepared, tmp_path):
    boxes, _, _ = prepared
    outside = {**SPLITS, "test": ("2021-01-01", "2021-12-31")}
    with pytest.raises(DataError, match=r"split 'test' asks for 2021-01-01..2021-12-31.*covers 2015-01-01..2017-12-31"):
        prepare_sst(boxes, tmp_path / "out", outside, progress=False)
    with pytest.raises(DataError, match=r"misses 365 of the 730 days"):
        prepare_sst(boxes, tmp_path / "out", {**SPLITS, "val": ("2017-01-01", "2018-12-31")}, progress=False)
    with pytest.raises(DataError, match=r"no file for boxes \[85\]"):
        prepare_sst(boxes, tmp_path / "out", SPLITS, boxes=(84, 85), progress=False)
    with pytest.raises(DataError, match="'train' range"):
        prepare_sst(boxes, tmp_path / "out", {"val": SPLITS["val"]}, progress=False)


def test_gaps_and_mismatched_grids(prepared, tmp_path):
    boxes, _, _ = prepared
    with xr.open_dataset(boxes / box_file_name(84)) as ds:
        whole = ds.load()
    gappy = tmp_path / "gappy"
    gappy.mkdir()
    whole.drop_isel(time=[400]).to_netcdf(gappy / box_file_name(84))  # 2016-02-05
    with pytest.raises(DataError, match=r"box 84 .* misses 1 of the 731 days of split 'train'.*first missing: 2016-02-05"):
        prepare_sst(gappy, tmp_path / "out", SPLITS, progress=False)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    whole.to_netcdf(mixed / box_file_name(84))
    synthetic_box(85, "2015-01-01", "2017-12-31", size=12).to_netcdf(mixed / box_file_name(85))
    with pytest.raises(DataError, match="one grid size"):
        prepare_sst(mixed, tmp_path / "out", SPLITS, progress=False)


def test_sst_preset_trains_evaluates_and_forecasts_on_synthetic_sst(tmp_path):
    """The command-line path of the paper's SST setting, on two small synthetic boxes (one with land)."""
    import json

    from dyffusion.cli.main import main

    data, run = tmp_path / "sst", tmp_path / "run"
    assert main(["data", "sst-synthetic", str(data), "--boxes", "88,89", "--start", "2018-01-01", "--size", "24",
                 "--quiet"]) == 0
    tiny_unet = "{width: 8, channel_multipliers: [1, 2], blocks_per_level: 1}"
    assert main(["fit", str(data), "--config", "sst-cpu", "--out", str(run), "--max-epochs", "1", "--quiet",
                 "--set", f"interpolator.network={tiny_unet}", "--set", f"forecaster.network={tiny_unet}",
                 "--set", "trainer.batches_per_epoch=2", "--set", "trainer.val_batches=1",
                 "--set", "interpolator.batch_size=4", "--set", "forecaster.batch_size=4",
                 "--set", "interpolator.val_members=2", "--set", "forecaster.val_members=2",
                 # all 32 steps kept, so the call count below follows from the preset alone
                 "--set", "sampling.choose_steps=false"]) == 0
    config = (run / "config.yaml").read_text()
    assert "extra_steps: 25" in config and "conditioning: data+noise" in config and "horizon: 7" in config
    assert main(["evaluate", str(run), "--members", "2", "--inits", "2", "--rollout", "14", "--out",
                 str(tmp_path / "eval"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["area_weighting"] == "cos(latitude)" and np.isfinite(metrics["crps"]).all()
    # 32 diffusion steps per horizon (h = 7 plus k = 25) with the cold sampler: N + 1 + 2(N - 2) + (h - 1) calls.
    assert metrics["network_evaluations"] == 2 * (32 + 1 + 2 * 30 + 6)
    out = tmp_path / "forecast.nc"
    assert main(["forecast", str(run), "--init-times", "2020-03-01", "--trajectory", "1", "--steps", "7",
                 "--members", "2", "--out", str(out), "--quiet"]) == 0
    with xr.open_dataset(out) as forecast, xr.open_dataset(data / "test.nc") as test:
        assert forecast["box"].values.tolist() == [89]
        np.testing.assert_array_equal(forecast["latitude"].values[0], test["latitude"].values[1])
        land = np.isnan(test["sst"].values[1, 0])
        assert land.any() and np.isnan(forecast["sst"].values[..., land]).all()
        assert np.isfinite(forecast["sst"].values[..., ~land]).all()


def test_sst_command_prepares_released_style_boxes_with_the_paper_splits_by_default(tmp_path, capsys):
    from dyffusion.cli.main import main

    write_synthetic_boxes(tmp_path / "boxes", boxes=(84,), start="2019-01-01", end="2020-12-31", size=12,
                          progress=False)
    # The paper's default train range (1982-2018) is not in these boxes: one clear line, exit 2.
    assert main(["data", "sst", str(tmp_path / "boxes"), str(tmp_path / "default"), "--quiet"]) == 2
    assert "1982-01-01..2018-12-31" in capsys.readouterr().err
    assert main(["data", "sst", str(tmp_path / "boxes"), str(tmp_path / "out"), "--train-range",
                 "2019-01-01..2019-12-31", "--val-range", "2020-01-01..2020-06-30", "--test-range",
                 "2020-07-01..2020-12-31", "--quiet"]) == 0
    with xr.open_dataset(tmp_path / "out" / "test.nc") as test:
        assert str(test.time.values[0])[:10] == "2020-07-01" and test.sizes["time"] == 184
