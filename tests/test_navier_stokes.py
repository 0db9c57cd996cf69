"""Physics of the Navier-Stokes solver and data set, against analytic facts and the Schäfer-Turek benchmark."""

import json

import numpy as np
import pytest
import xarray as xr

from dyffusion.data.contract import open_gridded
from dyffusion.simulators.flow_solver import Channel, FlowSolver, SolverSettings
from dyffusion.simulators.navier_stokes import random_obstacles, split_obstacles, write_navier_stokes_splits
from dyffusion.simulators.schafer_turek import REFERENCE, run_schafer_turek, shedding_frequency

HEIGHT, LENGTH = 0.41, 2.2


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """One full trajectory (65 frames to t = 5.2) at the data set's settings, as written to disk."""
    out = tmp_path_factory.mktemp("navier_stokes")
    paths = write_navier_stokes_splits(out, train=1, val=0, test=0, seed=3, workers=1, progress=False)
    with xr.open_dataset(paths["train"]) as ds:
        ds = ds.load()
    return ds, open_gridded(paths["train"])


def _inside_obstacles(ds) -> np.ndarray:
    y, x = ds.y.values[:, None], ds.x.values[None, :]
    inside = np.zeros((len(ds.y), len(ds.x)), bool)
    for cx, cy, r in json.loads(ds.attrs["obstacles"])[0]:
        inside |= (x - cx) ** 2 + (y - cy) ** 2 <= r**2
    return inside


def test_grid_and_contract(flow):
    ds, data = flow
    assert data.grid_shape == (42, 221) and data.channel_names == ["u", "v", "p"]
    assert data.static_names == ["obstacle_mask", "fixed_mask", "inflow"]
    np.testing.assert_allclose(ds.time.values, 0.08 * np.arange(1, 66), atol=1e-9)
    np.testing.assert_allclose(np.diff(ds.x.values), 0.01, atol=1e-9)
    assert np.isclose(ds.y.values[-1], HEIGHT) and np.isclose(ds.x.values[-1], LENGTH)
    assert np.isfinite(data.values).all()
    assert data.attrs["dyffusion_boundary_condition"] == "channel_flow"


def test_no_slip_walls_and_zero_inside_obstacles(flow):
    ds, _ = flow
    inside = _inside_obstacles(ds)
    assert inside.sum() > 100  # four obstacles of radius >= 0.05 cover many 0.01 grid points
    for name in ("u", "v"):
        field = ds[name].values[0]
        assert np.all(field[:, [0, -1], :] == 0), f"{name} on the walls"
    for name in ("u", "v", "p"):
        assert np.all(ds[name].values[0][:, inside] == 0), f"{name} inside obstacles"
    np.testing.assert_array_equal(ds.obstacle_mask.values[0] > 0.5, inside)
    np.testing.assert_array_equal(flow[1].valid[0], ~inside)  # obstacle interiors stay out of loss and metrics


def test_inflow_column_is_the_ramped_parabola(flow):
    ds, _ = flow
    y, t = ds.y.values, ds.time.values
    expected = 4 * y[None, :] * (HEIGHT - y[None, :]) / HEIGHT**2 * (1 - np.exp(-5 * t[:, None]))
    np.testing.assert_allclose(ds.u.values[0][:, :, 0], expected, atol=1e-6)
    assert np.all(ds.v.values[0][:, :, 0] == 0)


def test_mass_flux_is_the_same_through_every_column(flow):
    """Incompressible flow between impermeable walls: the flux through each cross-section is the inflow's."""
    ds, _ = flow
    u = ds.u.values[0]  # (time, y, x)
    flux = np.trapezoid(u, ds.y.values, axis=1)  # (time, x)
    inflow = 2 / 3 * HEIGHT * (1 - np.exp(-5 * ds.time.values))  # integral of the parabola
    np.testing.assert_allclose(flux[:, 0], inflow, rtol=1e-3)
    relative = np.abs(flux - inflow[:, None]) / inflow[:, None]
    assert np.median(relative) < 0.01 and relative.max() < 0.05


def test_small_divergence_in_the_fluid(flow):
    ds, _ = flow
    u, v = ds.u.values[0, -1], ds.v.values[0, -1]
    h = 0.01
    div = (u[1:-1, 2:] - u[1:-1, :-2]) / (2 * h) + (v[2:, 1:-1] - v[:-2, 1:-1]) / (2 * h)
    scale = np.abs((u[1:-1, 2:] - u[1:-1, :-2]) / (2 * h)) + np.abs((v[2:, 1:-1] - v[:-2, 1:-1]) / (2 * h))
    # Away from walls and obstacles (two points), the grid divergence is small next to its terms.
    near_solid = _inside_obstacles(ds) | np.pad(np.zeros((38, 221), bool), ((2, 2), (0, 0)), constant_values=True)
    for axis in (0, 1):
        for shift in (-2, -1, 1, 2):
            near_solid = near_solid | np.roll(near_solid, shift, axis)
    fluid = ~near_solid[1:-1, 1:-1]
    assert np.mean(np.abs(div[fluid])) < 0.05 * np.mean(scale[fluid])


def test_solver_projection_is_divergence_free_to_round_off():
    solver = FlowSolver(Channel(obstacles=((0.5, 0.2, 0.07),)), SolverSettings())
    solver.advance(0.1)
    assert solver.max_divergence() < 1e-9
    assert np.all(solver.u[1:-1][solver.solid[:-1] | solver.solid[1:]] == 0)


def test_unsteady_wake_by_the_end_of_the_run(flow):
    """Vortex shedding: behind the obstacles v oscillates about its mean, several sign changes in the last 2 s."""
    ds, _ = flow
    late = ds.v.values[0, -25:]  # t in [3.28, 5.2]
    obstacles = json.loads(ds.attrs["obstacles"])[0]
    downstream = ds.x.values > min(cx for cx, _, _ in obstacles)
    swing = late.std(0)[:, downstream]
    assert swing.max() > 0.05
    y_index, x_index = np.unravel_index(np.argmax(swing), swing.shape)
    signal = late[:, y_index, np.flatnonzero(downstream)[x_index]]
    signal = signal - signal.mean()
    assert np.count_nonzero(np.diff(np.sign(signal)) != 0) >= 4


def test_obstacles_follow_the_spec():
    rng = np.random.default_rng(0)
    for _ in range(50):
        circles = random_obstacles(rng)
        assert len(circles) == 4
        for i, (x, y, r) in enumerate(circles):
            assert 0.05 <= r <= 0.1 and 0.25 + r <= x <= 1.95 - r and 0.05 + r <= y <= 0.36 - r
            for x2, y2, r2 in circles[i + 1 :]:
                assert np.hypot(x - x2, y - y2) >= r + r2 + 0.05
    assert split_obstacles(0, "train", 3) != split_obstacles(0, "test", 3)
    assert split_obstacles(0, "train", 3) == split_obstacles(0, "train", 3)


def test_generation_resumes_from_finished_trajectories(tmp_path):
    frames = 2
    settings = SolverSettings()
    parts = tmp_path / ".parts" / f"train-seed1-h{settings.cell_size}-dt{settings.time_step}-frames{frames}"
    parts.mkdir(parents=True)
    marker = np.full((frames, 3, 42, 221), 7.0, np.float32)  # stands for a trajectory finished before a crash
    np.save(parts / "0000.npy", marker)
    path = write_navier_stokes_splits(tmp_path, train=2, val=0, test=0, seed=1, num_frames=frames, workers=1,
                                      progress=False)["train"]
    with xr.open_dataset(path) as ds:
        assert np.all(ds.u.values[0] == 7.0)  # reused, not recomputed
        assert np.abs(ds.u.values[1]).max() < 2  # computed
    assert not parts.exists()
    written = path.stat().st_mtime_ns
    write_navier_stokes_splits(tmp_path, train=2, val=0, test=0, seed=1, num_frames=frames, workers=1, progress=False)
    assert path.stat().st_mtime_ns == written  # a complete file is kept


def test_shedding_frequency_of_a_sine():
    times = np.linspace(0, 3, 3001)
    frequency, periods = shedding_frequency(times, 0.3 + np.sin(2 * np.pi * 3.3 * times + 0.4))
    assert abs(frequency - 3.3) < 1e-3 and periods >= 8


def test_schafer_turek_2d2_benchmark():
    """The published reference: Strouhal number within 5 % and maximum drag within 10 %."""
    result = run_schafer_turek(progress=False)
    strouhal, drag = np.mean(REFERENCE["strouhal"]), np.mean(REFERENCE["max_drag"])
    assert abs(result.strouhal - strouhal) <= 0.05 * strouhal
    assert abs(result.max_drag - drag) <= 0.10 * drag
    assert result.periods >= 8 and result.passed


def test_train_evaluate_and_forecast_obey_the_boundary_conditions(flow, tmp_path):
    """The preset trains end to end; every forecast frame has the ramped inlet, no-slip walls, empty obstacles."""
    from dyffusion.cli.main import main

    ds, _ = flow
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val", "test"):
        ds.to_netcdf(data / f"{split}.nc")
    tiny_unet = "{width: 8, channel_multipliers: [1, 2], blocks_per_level: 1}"
    run = tmp_path / "run"
    assert main(["fit", str(data), "--config", "navier-stokes-cpu", "--out", str(run), "--max-epochs", "1", "--quiet",
                 "--set", f"interpolator.network={tiny_unet}", "--set", f"forecaster.network={tiny_unet}",
                 "--set", "trainer.batches_per_epoch=2", "--set", "trainer.val_batches=1",
                 "--set", "interpolator.batch_size=4", "--set", "forecaster.batch_size=4",
                 "--set", "interpolator.val_members=2", "--set", "forecaster.val_members=2",
                 "--set", "sampling.choose_steps=false"]) == 0  # the choice has its own tests (test_choose_steps)
    assert main(["evaluate", str(run), "--members", "2", "--inits", "1", "--rollout", "64", "--out",
                 str(tmp_path / "eval"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["lead_times"] == list(range(1, 65)) and np.isfinite(metrics["crps"]).all()

    out = tmp_path / "forecast.nc"
    assert main(["forecast", str(run), "--data", str(data), "--members", "2", "--steps", "20", "--out", str(out),
                 "--quiet"]) == 0
    with xr.open_dataset(out) as forecast:
        u, v = forecast["u"].values[:, 0], forecast["v"].values[:, 0]  # (member, lead_time, y, x)
        lead = forecast["lead_step"].values
    y = ds.y.values[1:-1]
    time = ds.time.values[0] + 0.08 * lead  # the forecast starts from the first frame
    inlet = 4 * y * (HEIGHT - y) / HEIGHT**2 * (1 - np.exp(-5 * time[:, None]))
    np.testing.assert_allclose(u[:, :, 1:-1, 0], np.broadcast_to(inlet, u[:, :, 1:-1, 0].shape), atol=1e-5)
    assert np.all(v[:, :, :, 0] == 0) and np.all(u[:, :, [0, -1], :] == 0) and np.all(v[:, :, [0, -1], :] == 0)
    assert np.isnan(u[..., _inside_obstacles(ds)]).all()  # no fluid there: masked like land
    assert np.isfinite(u[..., ~_inside_obstacles(ds)]).all()
