"""Physics checks of the spring-mesh simulator, computed independently of its implementation.

The reference quantities here (spring list, energy, forces, dense Jacobian, dense linearly implicit Euler)
are written from the problem statement with plain particle-index loops, not with the simulator's grid
slicing, so that a mistake in one is not repeated in the other.
"""

import itertools
import math
import os

import numpy as np
import pytest
import xarray as xr
from scipy import linalg, stats

from dyffusion.simulators.spring_mesh import (
    GRID,
    STORED_STEP,
    SUBSTEPS,
    integrate_spring_mesh,
    simulate_spring_mesh,
    spring_mesh_dataset,
    write_spring_mesh_splits,
)

DAMPING = 0.1
N = GRID * GRID
REST = np.stack(np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="xy")).astype(np.float64)  # (2, y, x)
FREE = np.arange(N) < N - GRID  # particle index y * GRID + x; the top row y = GRID - 1 is fixed


def _springs():
    """All pairs (i, j) of particles at Chebyshev distance 1, with their rest lengths."""
    pairs = [
        (a, b)
        for a, b in itertools.combinations(range(N), 2)
        if max(abs(a % GRID - b % GRID), abs(a // GRID - b // GRID)) == 1
    ]
    i, j = np.array(pairs).T
    rest = np.hypot(i % GRID - j % GRID, i // GRID - j // GRID)
    return i, j, rest


SPRING_I, SPRING_J, SPRING_REST = _springs()


def _flat(a):
    """(..., 2, GRID, GRID) -> (..., N, 2) in particle order y * GRID + x."""
    return np.swapaxes(a.reshape(a.shape[:-3] + (2, N)), -1, -2).astype(np.float64)


def _energy(p, q):
    """Kinetic + spring energy of states ``(..., 2, GRID, GRID)``; returns ``(...)`` float64."""
    p, q = _flat(p), _flat(q)
    length = np.linalg.norm(q[..., SPRING_I, :] - q[..., SPRING_J, :], axis=-1)
    return 0.5 * (p**2).sum((-1, -2)) + 0.5 * ((length - SPRING_REST) ** 2).sum(-1)


def _forces_and_jacobian(q):
    """Spring forces ``(N, 2)`` and K = dF/dq ``(2N, 2N)`` (dof 2 * particle + component) at ``q`` ``(N, 2)``."""
    d = q[SPRING_I] - q[SPRING_J]  # from j to i
    length = np.linalg.norm(d, axis=-1)
    c = 1.0 - SPRING_REST / length
    force = np.zeros((N, 2))
    np.add.at(force, SPRING_I, -c[:, None] * d)
    np.add.at(force, SPRING_J, c[:, None] * d)
    outer = np.einsum("si,sj->sij", d, d) / length[:, None, None] ** 2
    block = c[:, None, None] * np.eye(2) + (SPRING_REST / length)[:, None, None] * outer  # d(-F_i)/dq_i
    diagonal = np.zeros((N, 2, 2))
    np.add.at(diagonal, SPRING_I, -block)
    np.add.at(diagonal, SPRING_J, -block)
    jac = np.zeros((N, N, 2, 2))
    jac[SPRING_I, SPRING_J] = jac[SPRING_J, SPRING_I] = block  # each pair appears once; blocks are symmetric
    jac[np.arange(N), np.arange(N)] = diagonal
    return force, jac.transpose(0, 2, 1, 3).reshape(2 * N, 2 * N)


def _dense_reference(q, v, substeps):
    """Linearly implicit Euler with dense solves on the free dofs; q, v ``(N, 2)`` float64."""
    dt = STORED_STEP / SUBSTEPS
    free = np.repeat(FREE, 2)
    q, v = q.copy(), v.copy()
    for _ in range(substeps):
        force, jac = _forces_and_jacobian(q)
        rhs = v.ravel() + dt * (force.ravel() - DAMPING * v.ravel())
        system = np.eye(free.sum()) - dt**2 * jac[np.ix_(free, free)]
        v_new = np.zeros(2 * N)
        v_new[free] = linalg.solve(system, rhs[free], assume_a="sym")
        v = v_new.reshape(N, 2)
        q = q + dt * v
    return q, v


@pytest.fixture(scope="module")
def sim():
    return simulate_spring_mesh(3, frames=65, seed=1, progress=False)


def test_reference_jacobian_matches_finite_differences():
    rng = np.random.default_rng(0)
    q = _flat(REST) + 0.3 * rng.standard_normal((N, 2))
    _, jac = _forces_and_jacobian(q)
    h = 1e-6
    for dof in rng.choice(2 * N, 12, replace=False):
        dq = np.zeros(2 * N)
        dq[dof] = h
        plus, _ = _forces_and_jacobian(q + dq.reshape(N, 2))
        minus, _ = _forces_and_jacobian(q - dq.reshape(N, 2))
        np.testing.assert_allclose((plus - minus).ravel() / (2 * h), jac[:, dof], atol=1e-7)
    assert len(SPRING_I) == 2 * 9 * 10 + 2 * 9 * 9


def test_shapes_and_types(sim):
    assert sim["p"].shape == sim["q"].shape == (3, 65, 2, GRID, GRID)
    assert sim["p"].dtype == sim["q"].dtype == sim["fixed_mask"].dtype == np.float32
    np.testing.assert_array_equal(sim["fixed_mask"], np.repeat([[0.0] * 9 + [1.0]], GRID, 0).T)
    np.testing.assert_allclose(sim["time"], np.arange(65) * STORED_STEP, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(sim["p"][:, 0], 0.0)  # starts at rest


def test_fixed_particles_never_move(sim):
    np.testing.assert_array_equal(sim["q"][:, :, :, -1], np.broadcast_to(REST[:, -1], sim["q"][:, :, :, -1].shape))
    np.testing.assert_array_equal(sim["p"][:, :, :, -1], 0.0)
    assert np.abs(sim["q"][:, -1, :, :-1] - sim["q"][:, 0, :, :-1]).max() > 1e-2  # the free ones do


def test_momentum_matches_position_change(sim):
    p, q = sim["p"].astype(np.float64), sim["q"].astype(np.float64)
    velocity = np.diff(q, axis=1) / STORED_STEP  # mean velocity over each stored step
    trapezoid = 0.5 * (p[:, 1:] + p[:, :-1])
    # Error budget: float32 positions (|q| <= ~10, half ulp 5e-7) differenced over 0.00781 -> <= 1.3e-4;
    # the trapezoid rule on the smooth velocity, Dt^2/12 |v''| with |v''| <~ 5 -> 2.5e-5; implicit Euler's
    # lag of half a substep, dt/2 |a| with |a| <~ 2 -> 6e-5. Using p[n] alone is off by Dt/2 |a| ~ 8e-3.
    assert np.abs(velocity - trapezoid).max() < 3e-4
    assert np.abs(velocity - p[:, :-1]).max() > 3e-3  # the check is sharp enough to see one frame of lag


def test_energy_never_grows_and_matches_damping(sim):
    energy = _energy(sim["p"], sim["q"])  # (traj, frames)
    # float32 positions perturb each spring length by ~1e-6, i.e. the energy by ~342 * 0.2 * 1e-6 < 1e-4
    assert np.diff(energy, axis=1).max() < 1e-4
    assert (energy[:, -1] < 0.99 * energy[:, 0]).all()  # ~3 % is lost in these 0.5 s
    # Energy balance: dE/dt = -0.1 |p|^2 (the scheme's own dissipation is O(dt) and adds < 1 %).
    damping_power = DAMPING * (sim["p"].astype(np.float64) ** 2).sum((2, 3, 4))
    dissipated = 0.5 * (damping_power[:, 1:] + damping_power[:, :-1]).sum(1) * STORED_STEP
    np.testing.assert_allclose(energy[:, 0] - energy[:, -1], dissipated, rtol=0.02)


@pytest.mark.parametrize("ood", [False, True])
def test_initial_displacement_distribution(ood):
    sim = simulate_spring_mesh(200, frames=1, seed=3, ood=ood, progress=False)
    offsets = sim["q"][:, 0].astype(np.float64) - REST  # (traj, 2, y, x)
    np.testing.assert_array_equal(offsets[:, :, -1], 0.0)
    dx, dy = offsets[:, 0, :-1].ravel(), offsets[:, 1, :-1].ravel()  # 18000 free particles
    r = np.hypot(dx, dy)
    r0, r1 = (0.35, 0.45) if ood else (0.0, 0.35)
    tol = 2e-6  # float32 rounding of positions up to 9
    assert r.min() >= r0 - tol and r.max() <= r1 + tol
    assert r.max() > r1 - 0.01 and r.min() < r0 + 0.01  # the whole range is used
    # Uniform over the area: (r^2 - r0^2) / (r1^2 - r0^2) is uniform on [0, 1]; and the angle too.
    assert stats.kstest((r**2 - r0**2) / (r1**2 - r0**2), "uniform").pvalue > 1e-3
    assert stats.kstest(np.arctan2(dy, dx) / (2 * np.pi) + 0.5, "uniform").pvalue > 1e-3
    if not ood:  # sharpness: r uniform in [0, 0.35] (the classic mistake) is rejected at this sample size
        assert stats.kstest(r / 0.35, "uniform").pvalue < 1e-6


def test_equilibrium_stays_at_rest():
    q, v = integrate_spring_mesh(REST[None], np.zeros((1, 2, GRID, GRID)), frames=4)
    np.testing.assert_allclose(q, np.broadcast_to(REST, q.shape), rtol=0, atol=1e-13)
    np.testing.assert_allclose(v, 0.0, atol=1e-13)


def test_matches_dense_linearly_implicit_euler():
    """Two stored steps from a random moving state agree with a direct 180 x 180 solve per sub-step."""
    rng = np.random.default_rng(7)
    q0 = REST + 0.3 * rng.uniform(-1, 1, (2, 2, GRID, GRID)) * (np.arange(GRID) < GRID - 1)[:, None]
    v0 = 0.5 * rng.standard_normal((2, 2, GRID, GRID)) * (np.arange(GRID) < GRID - 1)[:, None]
    q, v = integrate_spring_mesh(q0, v0, frames=3)
    for b in range(2):
        ref_q, ref_v = _flat(q0[b]), _flat(v0[b])
        for n in (1, 2):
            ref_q, ref_v = _dense_reference(ref_q, ref_v, SUBSTEPS)
            np.testing.assert_allclose(_flat(q[b, n]), ref_q, rtol=0, atol=1e-13)
            np.testing.assert_allclose(_flat(v[b, n]), ref_v, rtol=0, atol=1e-12)


def test_small_oscillation_is_a_damped_oscillator():
    """A tiny displacement along a normal mode (eigenvector of the rest Hessian) evolves as
    x(t) = exp(-g t / 2) (cos wt + g / (2 w) sin wt), w = sqrt(lambda - g^2 / 4), g = 0.1."""
    _, jac = _forces_and_jacobian(_flat(REST))
    free = np.repeat(FREE, 2)
    eigval, eigvec = np.linalg.eigh(-jac[np.ix_(free, free)])
    modes = [len(eigval) // 2, len(eigval) - 1]
    amplitude, frames = 1e-6, 65
    q0 = np.zeros((len(modes), 2 * N))
    q0[:, free] = amplitude * eigvec[:, modes].T
    q0 = REST + np.swapaxes(q0.reshape(-1, N, 2), -1, -2).reshape(-1, 2, GRID, GRID)
    q, _ = integrate_spring_mesh(q0, np.zeros_like(q0), frames=frames)
    x = np.einsum("mnd,md->mn", (_flat(q) - _flat(REST)).reshape(len(modes), frames, -1)[..., free],
                  eigvec[:, modes].T) / amplitude
    t = np.arange(frames) * STORED_STEP
    for m, lam in enumerate(eigval[modes]):
        w = math.sqrt(lam - DAMPING**2 / 4)
        exact = np.exp(-DAMPING * t / 2) * (np.cos(w * t) + DAMPING / (2 * w) * np.sin(w * t))
        # implicit Euler damps the mode by ~exp(-lambda dt t / 2): < 2e-4 here
        np.testing.assert_allclose(x[m], exact, rtol=0, atol=1e-3)
    assert eigval[modes[-1]] > 5  # a fast mode: several radians over the run, so phase errors would show


def test_written_splits(tmp_path):
    paths = write_spring_mesh_splits(tmp_path, train=2, val=1, test=1, ood_test=2, frames=3, seed=5, progress=False)
    assert set(paths) == {"train", "val", "test", "test_ood"}
    sizes = {"train": 2, "val": 1, "test": 1, "test_ood": 2}
    seeds = set()
    for split, path in paths.items():
        assert path == tmp_path / f"{split}.nc"
        with xr.open_dataset(path, engine="netcdf4") as ds:
            assert dict(ds.sizes) == {"trajectory": sizes[split], "time": 3, "component": 2, "y": GRID, "x": GRID}
            for name, long_name, units in (("p", "momentum", "kg m/s"), ("q", "position", "m")):
                assert ds[name].dims == ("trajectory", "time", "component", "y", "x")
                assert ds[name].dtype == np.float32
                assert ds[name].attrs["long_name"] == long_name and ds[name].attrs["units"] == units
            assert ds["fixed_mask"].dims == ("y", "x") and ds["fixed_mask"].dtype == np.float32
            assert ds["fixed_mask"].attrs["long_name"] == "fixed particle mask"
            np.testing.assert_array_equal(ds["fixed_mask"].values[-1], 1.0)
            assert ds["fixed_mask"].values[:-1].sum() == 0
            assert ds["time"].dtype == np.float64 and ds["time"].attrs["units"] == "s"
            np.testing.assert_allclose(ds["time"].values, np.arange(3) * STORED_STEP)
            assert list(ds["component"].values) == ["x", "y"]
            np.testing.assert_array_equal(ds["x"].values, np.arange(GRID))
            np.testing.assert_array_equal(ds["y"].values, np.arange(GRID))
            np.testing.assert_array_equal(ds["trajectory"].values, np.arange(sizes[split]))
            np.testing.assert_array_equal(ds["q"].values[:, 0, 0, 3, 4].round(), 4.0)  # q[.., 0, y, x] is near x
            np.testing.assert_array_equal(ds["q"].values[:, 0, 1, 3, 4].round(), 3.0)
            assert ds.attrs["title"] == "spring mesh (Otness et al. 2021)"
            assert ds.attrs["dyffusion_boundary_condition"] == "fixed_points"
            assert ds.attrs["dyffusion_boundary_mask"] == "fixed_mask"
            assert ds.attrs["displacement"] == ("annulus" if split == "test_ood" else "disc")
            seeds.add(int(ds.attrs["seed"]))
            # determinism: the recorded seed regenerates the file's data exactly
            again = spring_mesh_dataset(sizes[split], frames=3, seed=int(ds.attrs["seed"]),
                                        ood=split == "test_ood", progress=False)
            np.testing.assert_array_equal(again["q"].values, ds["q"].values)
            np.testing.assert_array_equal(again["p"].values, ds["p"].values)
    assert len(seeds) == 4
    with xr.open_dataset(paths["train"]) as train, xr.open_dataset(paths["test"]) as test:
        for start in train["q"].values[:, 0]:  # no test trajectory starts like a train one
            assert not np.allclose(start, test["q"].values[0, 0])
    assert sorted(os.listdir(tmp_path)) == sorted(f"{s}.nc" for s in sizes)  # no temporary files left

    # A rerun keeps complete files untouched and regenerates a broken one.
    mtimes = {s: p.stat().st_mtime_ns for s, p in paths.items()}
    paths["val"].write_bytes(b"not a netCDF file")
    broken = paths["val"].stat().st_mtime_ns
    assert write_spring_mesh_splits(tmp_path, train=2, val=1, test=1, ood_test=2, frames=3, seed=5,
                                    progress=False) == paths
    for split, path in paths.items():
        if split != "val":
            assert path.stat().st_mtime_ns == mtimes[split]
    assert paths["val"].stat().st_mtime_ns != broken
    with xr.open_dataset(paths["val"]) as ds:
        assert ds.sizes["trajectory"] == 1
    # ... and a file made with another seed is not taken for complete
    write_spring_mesh_splits(tmp_path, train=2, val=0, test=0, ood_test=0, frames=3, seed=9, progress=False)
    assert paths["train"].stat().st_mtime_ns != mtimes["train"]

    # Splits of count 0 are skipped; a different seed gives different data.
    other = write_spring_mesh_splits(tmp_path / "other", train=1, val=0, test=0, ood_test=0, frames=2, seed=6,
                                     progress=False)
    assert set(other) == {"train"} and sorted(os.listdir(tmp_path / "other")) == ["train.nc"]
    with xr.open_dataset(other["train"]) as a, xr.open_dataset(paths["train"]) as b:
        assert not np.array_equal(a["q"].values[0, 0], b["q"].values[0, 0])


def test_same_seed_same_data():
    a = simulate_spring_mesh(2, frames=3, seed=11, progress=False)
    b = simulate_spring_mesh(2, frames=3, seed=11, progress=False)
    c = simulate_spring_mesh(2, frames=3, seed=12, progress=False)
    np.testing.assert_array_equal(a["q"], b["q"])
    np.testing.assert_array_equal(a["p"], b["p"])
    assert not np.array_equal(a["q"], c["q"])
