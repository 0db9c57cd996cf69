"""The data contract, windows, normalisation and boundary conditions on small files made here."""

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from dyffusion.data.boundary import build_boundary_condition
from dyffusion.data.contract import DataError, open_gridded, resolve_split
from dyffusion.data.normalization import Normalizer
from dyffusion.data.windows import WindowDataset


def contract_file(path, trajectories=2, frames=12, land=False, datetime=False, engine="netcdf4"):
    rng = np.random.default_rng(0)
    temperature = rng.normal(20, 3, (trajectories, frames, 5, 6)).astype(np.float32)
    wind = rng.normal(0, 1, (trajectories, frames, 2, 5, 6)).astype(np.float32)
    if land:
        temperature[:, :, 0, :2] = np.nan
    time = pd.date_range("2020-01-01", periods=frames, freq="D") if datetime else np.arange(frames) * 0.5
    ds = xr.Dataset(
        {"sst": (("trajectory", "time", "lat", "lon"), temperature, {"units": "degC"}),
         "wind": (("trajectory", "time", "level", "lat", "lon"), wind),
         "depth": (("lat", "lon"), rng.random((5, 6)).astype(np.float32))},
        coords={"time": time, "lat": np.linspace(-5, 5, 5), "lon": np.linspace(100, 110, 6), "level": [850, 500]},
    )
    if engine == "zarr":
        ds.to_zarr(path)
    else:
        ds.to_netcdf(path)
    return ds


def test_contract_channels_static_and_coordinates(tmp_path):
    ds = contract_file(tmp_path / "train.nc", datetime=True)
    data = open_gridded(tmp_path, "train")
    assert data.values.shape == (2, 12, 3, 5, 6)
    assert data.channel_names == ["sst", "wind_850", "wind_500"]
    assert data.static_names == ["depth"] and data.static.shape == (2, 1, 5, 6)
    assert data.spatial_dims == ("lat", "lon")
    np.testing.assert_array_equal(data.values[:, :, 2], ds["wind"].values[:, :, 1])
    assert np.issubdtype(data.time.dtype, np.datetime64)
    assert data.valid is None


def test_zarr_and_single_trajectory(tmp_path):
    ds = contract_file(tmp_path / "one.zarr", engine="zarr")
    data = open_gridded(tmp_path / "one.zarr")
    assert data.num_trajectories == 2
    single = ds.isel(trajectory=0)
    single.to_netcdf(tmp_path / "single.nc")
    assert open_gridded(tmp_path / "single.nc").values.shape == (1, 12, 3, 5, 6)


def test_invariant_nan_becomes_a_mask(tmp_path):
    contract_file(tmp_path / "land.nc", land=True)
    data = open_gridded(tmp_path / "land.nc")
    assert data.valid.shape == (2, 5, 6)
    assert not data.valid[:, 0, :2].any() and data.valid[:, 1:].all()
    assert np.isfinite(data.values).all()
    assert (data.values[:, :, :, 0, :2] == 0).all()  # every channel is masked there


@pytest.mark.parametrize("bad,message", [(np.nan, "NaN at trajectory 1, time index 3"), (np.inf, "infinite at trajectory 1, time index 3")])
def test_time_varying_nan_or_inf_is_an_error_naming_where(tmp_path, bad, message):
    ds = contract_file(tmp_path / "x.nc")
    ds["wind"][1, 3, 0, 2, 2] = bad
    ds.to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(DataError, match="'wind'.*" + message.replace("(", r"\(")):
        open_gridded(tmp_path / "bad.nc")


def test_missing_or_unreadable_files_and_splits(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_gridded(tmp_path / "nothing.nc")
    (tmp_path / "junk.nc").write_text("not a netcdf file")
    with pytest.raises(DataError, match="cannot open"):
        open_gridded(tmp_path / "junk.nc")
    contract_file(tmp_path / "train.nc")
    with pytest.raises(DataError, match="no split 'val'"):
        resolve_split(tmp_path, "val")
    xr.Dataset({"a": (("y", "x"), np.zeros((2, 2)))}).to_netcdf(tmp_path / "notime.nc")
    with pytest.raises(DataError, match="no 'time' dimension"):
        open_gridded(tmp_path / "notime.nc")


def test_windows_read_only_their_frames_normalised():
    values = np.arange(2 * 10 * 1 * 2 * 2, dtype=np.float32).reshape(2, 10, 1, 2, 2)
    normalizer = Normalizer(np.full((1, 1, 1), 1.0), np.full((1, 1, 1), 2.0))
    windows = WindowDataset(values, normalizer, np.zeros((2, 0, 2, 2), np.float32), horizon=4, stride=2,
                            target_range=(1, 3))
    assert len(windows) == 2 * 3  # starts 0, 2, 4 (start + h <= 9)
    torch.manual_seed(0)
    item = windows[4]  # trajectory 1, start 2
    np.testing.assert_array_equal(item["initial"], (values[1, 2] - 1) / 2)
    np.testing.assert_array_equal(item["end"], (values[1, 6] - 1) / 2)
    offset = int(item["time"])
    assert 1 <= offset <= 3
    np.testing.assert_array_equal(item["target"], (values[1, 2 + offset] - 1) / 2)
    assert "window" not in item
    window = WindowDataset(values, normalizer, np.zeros((2, 0, 2, 2), np.float32), horizon=4, stride=2,
                           with_window=True)[4]["window"]
    np.testing.assert_array_equal(window, (values[1, 2:7] - 1) / 2)
    with pytest.raises(ValueError, match="too short for horizon"):
        WindowDataset(values, normalizer, np.zeros((2, 0, 2, 2), np.float32), horizon=10)


def test_normalizer_standardises_valid_points_per_channel():
    rng = np.random.default_rng(0)
    values = np.stack([rng.normal(5, 2, (3, 50, 4, 4)), rng.normal(-1, 0.1, (3, 50, 4, 4))], axis=2).astype(np.float32)
    valid = np.ones((3, 4, 4), bool)
    valid[:, 0, 0] = False
    values[:, :, :, 0, 0] = 1e6  # masked points must not leak into the statistics
    normalizer = Normalizer.fit(values, valid)
    normalised = normalizer.normalize_array(values)
    inside = normalised.transpose(0, 1, 3, 4, 2)[np.broadcast_to(valid[:, None], (3, 50, 4, 4))]
    np.testing.assert_allclose(inside.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(inside.std(0), 1, atol=1e-4)
    restored = Normalizer.from_dict(normalizer.to_dict()).denormalize(torch.from_numpy(normalised))
    np.testing.assert_allclose(restored.numpy()[..., 1:, :], values[..., 1:, :], rtol=1e-5, atol=1e-5)


def test_fixed_points_boundary_condition_keeps_initial_values():
    static = torch.zeros(2, 1, 3, 3)
    static[:, 0, 2] = 1  # top row fixed
    condition = build_boundary_condition("fixed_points", ["fixed_mask"], "fixed_mask")
    initial, frames = torch.randn(2, 4, 3, 3), torch.randn(2, 5, 4, 3, 3)
    fixed = condition(frames, initial, static, [1.0, 2.0, 3.0, 4.0, 5.0])
    torch.testing.assert_close(fixed[:, :, :, 2], initial[:, None, :, 2].expand(-1, 5, -1, -1))
    torch.testing.assert_close(fixed[:, :, :, :2], frames[:, :, :, :2])
    with pytest.raises(ValueError):
        build_boundary_condition("fixed_points", ["other"], "fixed_mask")


def test_per_point_normalizer_removes_the_mean_field():
    rng = np.random.default_rng(1)
    field = np.arange(12, dtype=np.float32).reshape(1, 1, 1, 3, 4) * 10  # a fixed spatial pattern
    values = field + rng.normal(0, 0.5, (2, 40, 1, 3, 4)).astype(np.float32)
    values[:, :, :, 0, 0] = 7.0  # a point that never changes (a fixed particle)
    normalizer = Normalizer.fit(values, per_point=True)
    assert normalizer.mean.shape == (1, 3, 4)
    normalised = normalizer.normalize_array(values)
    np.testing.assert_allclose(normalised.mean(axis=(0, 1)), 0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(axis=(0, 1))[0, 1:, 1:], 1, atol=1e-4)
    assert normalizer.std[0, 0, 0] == 1 and normalised[0, 0, 0, 0, 0] == 0


def test_written_files_are_whole_or_absent_and_readable_by_others(tmp_path):
    import os

    from dyffusion.io import atomic_path, write_json

    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.json") as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash while writing")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # nothing half-written, no temporary
    finally:
        os.umask(previous)
