"""The Python API mirrors the CLI."""

import numpy as np
import torch
import xarray as xr

import dyffusion
from dyffusion.cli.main import main


def test_python_forecast_from_tensor_and_xarray_match_the_cli(tiny_run, spring_data, tmp_path):
    assert main(["forecast", str(tiny_run), "--data", str(spring_data), "--members", "2", "--steps", "5",
                 "--seed", "3", "--out", str(tmp_path / "cli.nc"), "--quiet"]) == 0
    cli = xr.open_dataset(tmp_path / "cli.nc")
    run = dyffusion.load_run(tiny_run)
    test = xr.open_dataset(spring_data / "test.nc")
    from_xarray = dyffusion.forecast(run, test.isel(trajectory=0, time=slice(0, 1)), members=2, steps=5, seed=3)
    np.testing.assert_array_equal(from_xarray["q"].values, cli["q"].values)
    initial = torch.from_numpy(np.concatenate([test["p"].values[0, 0], test["q"].values[0, 0]]))
    from_tensor = dyffusion.forecast(run, initial, members=2, steps=5, seed=3)
    np.testing.assert_allclose(from_tensor["p"].values, cli["p"].values, rtol=1e-6, atol=1e-6)
    assert from_tensor["q"].dims == ("member", "init_time", "lead_time", "component", "y", "x")


def test_python_fit_with_a_config_object(spring_data, tmp_path):
    config = dyffusion.load_config(None, [dyffusion.nested("data.horizon", 4), dyffusion.nested("data.time_stride", 2),
                                          dyffusion.nested("trainer.max_epochs", 1),
                                          dyffusion.nested("trainer.batches_per_epoch", 2)])
    config.interpolator.network.width = config.forecaster.network.width = 8
    config.interpolator.network.kernel_sizes = config.forecaster.network.kernel_sizes = (3,)
    config.interpolator.val_members = config.forecaster.val_members = 2
    run = dyffusion.fit(spring_data, tmp_path / "run", config, quiet=True)
    assert run.horizon == 4 and (tmp_path / "run" / "forecaster.safetensors").exists()


def test_xarray_input_starts_from_its_last_frame_whatever_the_time_stride(tiny_run, spring_data):
    run = dyffusion.load_run(tiny_run)  # trained on every 2nd frame
    test = xr.open_dataset(spring_data / "test.nc").isel(trajectory=0)
    several = dyffusion.forecast(run, test.isel(time=slice(0, 4)), members=2, steps=3, seed=1)
    last = dyffusion.forecast(run, test.isel(time=[3]), members=2, steps=3, seed=1)
    np.testing.assert_array_equal(several["q"].values, last["q"].values)
