"""Bring-your-own data: lat/lon grids with land and datetimes, splits inside one file, area weighting and
forecast files that xarray-based verification reads (SPEC section 10, issue 5)."""

import json

import numpy as np
import pandas as pd
import pytest
import scoringrules as sr
import xarray as xr

from dyffusion.cli.main import main
from dyffusion.data.contract import DataError, from_xarray, open_gridded
from dyffusion.data.normalization import Normalizer
from dyffusion.data.spec import DataSpec
from dyffusion.data.splits import SplitConfig, open_split, split_indices
from dyffusion.evaluation.forecast import forecast_to_xarray
from tests.conftest import TINY_NETWORK

DAYS = 80
LAT = np.array([-40.0, -20.0, 0.0, 25.0, 50.0, 70.0])  # far from the equator, so cos(lat) weights matter
LON = np.arange(120.0, 130.0, 1.25)


def regional_file(path, days=DAYS):
    """One trajectory of two daily fields on a lat/lon grid with land, as a reanalysis file would hold them."""
    rng = np.random.default_rng(1)
    t = np.arange(days)[:, None, None]
    lat, lon = np.meshgrid(LAT, LON, indexing="ij")
    sst = 20 + 5 * np.cos(np.deg2rad(lat)) + np.sin(0.3 * lon - 0.2 * t) + 0.1 * rng.normal(size=(days, *lat.shape))
    ssh = 0.1 * np.cos(0.2 * lat + 0.1 * t) + 0.01 * rng.normal(size=(days, *lat.shape))
    land = (lat > 40) & (lon > 126)
    sst[:, land], ssh[:, land] = np.nan, np.nan
    ds = xr.Dataset(
        {"sst": (("time", "lat", "lon"), sst.astype(np.float32), {"units": "degC", "long_name": "sea surface temperature"}),
         "ssh": (("time", "lat", "lon"), ssh.astype(np.float32), {"units": "m"}),
         "depth": (("lat", "lon"), np.where(land, 0, 4000.0).astype(np.float32))},
        coords={"time": pd.date_range("2018-01-01", periods=days, freq="D"),
                "lat": ("lat", LAT, {"units": "degrees_north", "standard_name": "latitude"}),
                "lon": ("lon", LON, {"units": "degrees_east", "standard_name": "longitude"})},
    )
    ds.to_netcdf(path)
    return ds, land


@pytest.fixture(scope="module")
def regional_run(tmp_path_factory):
    """A tiny run fitted on one file split by time: the last 20 % of the days are the test block."""
    root = tmp_path_factory.mktemp("regional")
    ds, land = regional_file(root / "ocean.nc")
    code = main(["fit", str(root / "ocean.nc"), "--out", str(root / "run"), "--horizon", "3", "--max-epochs", "1",
                 "--split-by", "time", "--val-fraction", "0.2", "--test-fraction", "0.2", "--quiet",
                 "--set", "trainer.batches_per_epoch=2", "--set", "interpolator.batch_size=4",
                 "--set", "forecaster.batch_size=4", "--set", "interpolator.val_members=2",
                 "--set", "forecaster.val_members=2", *TINY_NETWORK])
    assert code == 0
    return root, ds, land


def test_time_blocks_are_contiguous_ordered_and_disjoint():
    time = np.arange(100.0)
    parts = split_indices(SplitConfig(by="time", val_fraction=0.15, test_fraction=0.1), time, 1)
    assert [parts[s].size for s in ("train", "val", "test")] == [75, 15, 10]
    assert parts["train"][-1] + 1 == parts["val"][0] and parts["val"][-1] + 1 == parts["test"][0] == 90
    by_trajectory = split_indices(SplitConfig(by="trajectory", val_fraction=0.2, test_fraction=0.2), time, 10)
    assert by_trajectory["test"].tolist() == [8, 9] and by_trajectory["train"].tolist() == list(range(6))


def test_date_ranges_include_whole_days_and_default_the_train_range():
    time = pd.date_range("2018-12-30T12:00", periods=400, freq="D").values  # stamps at noon
    parts = split_indices(SplitConfig(val_range="2019-01-01..2019-06-30", test_range="2019-07..2019-12"), time, 1)
    assert pd.Timestamp(time[parts["val"][0]]) == pd.Timestamp("2019-01-01T12:00")
    assert pd.Timestamp(time[parts["val"][-1]]) == pd.Timestamp("2019-06-30T12:00")  # the whole end day
    assert pd.Timestamp(time[parts["test"][-1]]) == pd.Timestamp("2019-12-31T12:00")  # the whole end month
    assert parts["train"].tolist() == [0, 1]  # everything before the first val or test time
    numeric = split_indices(SplitConfig(train_range="0..4.5", val_range="5..7"), np.arange(10) * 0.5, 1)
    assert numeric["train"].tolist() == list(range(10)) and numeric["val"].size == 0


@pytest.mark.parametrize("rule,message", [
    (SplitConfig(train_range="2018-01-01..2018-02-10", val_range="2018-02-01..2018-02-20"), "overlap"),
    (SplitConfig(by="time", val_fraction=0.001), "empty"),
    (SplitConfig(val_range="2018-01-01"), "START..END"),
    (SplitConfig(val_range="1..5"), "dates like"),
    (SplitConfig(by="trajectory"), "single trajectory"),
    (SplitConfig(test_range="2030-01-01..2030-12-31"), "test split is empty"),
])
def test_bad_split_rules_are_clear_errors(tmp_path, rule, message):
    regional_file(tmp_path / "ocean.nc")
    split = "test" if "test" in message else "val"
    with pytest.raises(DataError, match=message):
        open_split(tmp_path / "ocean.nc", split, rule)


def test_a_single_file_without_a_split_rule_cannot_be_trained_on(tmp_path):
    regional_file(tmp_path / "ocean.nc")
    with pytest.raises(DataError, match="give --split-by"):
        open_split(tmp_path / "ocean.nc", "train", SplitConfig())
    with pytest.raises(ValueError, match="nothing to train"):
        SplitConfig(by="time", val_fraction=0.5, test_fraction=0.5)


def test_lat_lon_file_with_land_fits_evaluates_and_forecasts(regional_run, tmp_path):
    root, ds, land = regional_run
    config = (root / "run" / "config.yaml").read_text()
    assert "by: time" in config  # the split travels with the run
    out = tmp_path / "eval"
    assert main(["evaluate", str(root / "run"), "--members", "3", "--rollout", "4", "--out", str(out),
                 "--save-forecasts", "--member-dim", "number", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["area_weighting"] == "cos(latitude)"
    test_days = ds.time.values[-16:]  # 20 % of 80 days, the last block
    with xr.open_dataset(out / "forecasts.nc") as saved:
        assert saved["sst"].dims == ("number", "init_time", "lead_time", "lat", "lon")
        assert set(saved.init_time.values) <= set(test_days[:-4])  # starts whose 4 lead days are in the block
        assert saved.sizes["init_time"] == metrics["initial_conditions"] == 12  # every start of the block
        np.testing.assert_array_equal(saved.valid_time.values, saved.init_time.values[:, None] + saved.lead_time.values)
        # An independent score: scoringrules' CRPS of the saved members, cos(latitude)-weighted over sea points.
        forecast = np.stack([saved["sst"].values, saved["ssh"].values], axis=-3)  # (M, N, L, C, H, W)
        truth = np.stack([saved["truth_sst"].values, saved["truth_ssh"].values], axis=-3)
    pointwise = sr.crps_ensemble(truth, forecast, m_axis=0, estimator="nrg")
    weights = np.broadcast_to(np.where(land, 0, np.cos(np.deg2rad(LAT))[:, None]), pointwise.shape)
    expected = np.nansum(pointwise * weights, axis=(0, 2, 3, 4)) / weights.sum(axis=(0, 2, 3, 4))
    np.testing.assert_allclose(metrics["crps"], expected, rtol=1e-5)
    unweighted = np.nansum(pointwise * (weights > 0), axis=(0, 2, 3, 4)) / (weights > 0).sum(axis=(0, 2, 3, 4))
    assert np.abs(np.array(metrics["crps"]) / unweighted - 1).max() > 1e-3  # the weighting changes the score


def test_the_stored_split_scores_exactly_the_held_out_block(regional_run, tmp_path):
    root, ds, _ = regional_run
    ds.isel(time=slice(-16, None)).to_netcdf(tmp_path / "held_out.nc")  # the test block, cut by hand
    for name, extra in (("stored", []), ("by-hand", ["--data", str(tmp_path / "held_out.nc"), "--split", "all"])):
        assert main(["evaluate", str(root / "run"), "--members", "2", "--rollout", "3", "--seed", "5",
                     "--out", str(tmp_path / name), "--quiet", *extra]) == 0
    stored, by_hand = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("stored", "by-hand"))
    assert stored["crps"] == by_hand["crps"] and stored["mse"] == by_hand["mse"]
    assert "2018-03-06" in stored["data"]  # the source names the block it scored


def test_forecast_file_round_trips_with_the_data_coordinates(regional_run, tmp_path):
    root, ds, land = regional_run
    out = tmp_path / "forecast.zarr"
    assert main(["forecast", str(root / "run"), "--init-times", "2018-03-10,2018-03-18", "--steps", "5",
                 "--members", "2", "--member-dim", "realization", "--out", str(out), "--quiet"]) == 0
    forecast = xr.open_zarr(out)
    assert forecast["sst"].dims == ("realization", "init_time", "lead_time", "lat", "lon")
    np.testing.assert_array_equal(forecast["lat"].values, LAT)
    np.testing.assert_array_equal(forecast["lon"].values, LON)
    assert forecast["lat"].attrs["units"] == "degrees_north" and forecast["sst"].attrs["units"] == "degC"
    assert list(forecast.init_time.values) == list(pd.to_datetime(["2018-03-10", "2018-03-18"]).values)
    assert list(forecast.lead_time.values) == list(pd.to_timedelta(np.arange(1, 6), unit="D").values)
    sst = forecast["sst"].values
    assert np.isnan(sst[..., land]).all() and np.isfinite(sst[..., ~land]).all()
    # The truth is the data at valid_time; the last start runs past the held-out block's end (NaN there).
    truth = forecast["truth_sst"].sel(init_time="2018-03-10").values
    expected = ds["sst"].sel(time=forecast["valid_time"].sel(init_time="2018-03-10").values).values
    np.testing.assert_array_equal(truth[:, ~land], expected[:, ~land])
    late = forecast["truth_sst"].sel(init_time="2018-03-18").values  # valid up to 03-23; the block ends 03-21
    assert np.isfinite(late[:3, ~land]).all() and np.isnan(late[3:]).all()


def test_forecast_inits_spread_over_the_held_out_block(regional_run, tmp_path):
    root, ds, _ = regional_run
    out = tmp_path / "spread.nc"
    assert main(["forecast", str(root / "run"), "--inits", "3", "--members", "2", "--out", str(out), "--quiet"]) == 0
    with xr.open_dataset(out) as forecast:
        starts = forecast.init_time.values
    block = ds.time.values[-16:]
    assert list(starts) == [block[0], block[6], block[12]]  # evenly over the starts whose h = 3 days are known


def test_per_trajectory_latitudes_weight_and_travel_into_forecasts():
    lat = np.array([[0.0, 10.0, 20.0], [40.0, 50.0, 60.0]])  # two boxes at different latitudes
    ds = xr.Dataset({"sst": (("trajectory", "time", "lat", "lon"), np.zeros((2, 5, 3, 4), np.float32))},
                    coords={"time": np.arange(5.0), "box": ("trajectory", [84, 108]),
                            "latitude": (("trajectory", "lat"), lat, {"standard_name": "latitude"})})
    data = from_xarray(ds, "boxes")
    np.testing.assert_array_equal(data.latitude[1, :, 2], lat[1])
    spec = DataSpec.from_data(data, Normalizer.fit(data.values, None), 1)
    ensemble = np.zeros((2, 2, 1, 1, 3, 4), np.float32)
    out = forecast_to_xarray(ensemble, [1], spec, data, [(1, 0), (0, 2)])
    np.testing.assert_array_equal(out["latitude"].values, lat[[1, 0]])
    assert out["latitude"].dims == ("init_time", "lat") and out["box"].values.tolist() == [108, 84]
    ds = ds.assign_coords(latitude=ds.latitude + 100)
    with pytest.raises(DataError, match="outside"):
        from_xarray(ds, "bad latitudes")


def test_latitude_is_found_by_cf_attributes_or_name_and_only_then(tmp_path):
    ds, _ = regional_file(tmp_path / "ocean.nc")
    np.testing.assert_array_equal(open_gridded(tmp_path / "ocean.nc").latitude[0, :, 0], LAT)
    renamed = ds.rename({"lat": "y", "lon": "x"})  # the CF units still say latitude
    assert from_xarray(renamed, "renamed").latitude is not None
    bare = renamed.drop_vars(["y", "x"])
    assert from_xarray(bare, "bare").latitude is None
