"""Spring-mesh simulator (the benchmark of Otness et al. 2021) and its data-contract files.

A 10 x 10 mesh of unit-mass particles rests at integer positions (x = column, y = row); the top row
(y = 9) is fixed. Springs (stiffness 1) join every pair at Chebyshev distance 1, with rest length 1
(horizontal, vertical) or sqrt 2 (diagonal). Forces: springs ``-k (L - L0) / L * d`` plus damping ``-0.1 v``.
Each stored step of ``STORED_STEP`` is made of ``SUBSTEPS`` linearly implicit Euler steps

    (M - dt^2 K) v' = M v + dt F(q, v),    q' = q + dt v',    K = dF/dq at the current q, M = I,

solved for the free particles only. Arrays returned to users are ``(trajectory, time, component, y, x)``
with ``component`` = (x, y); inside, the state is kept batch-last, ``(component, y, x, batch)``, so that
slicing the grid gives contiguous blocks of trajectories and numpy works on many trajectories at once.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from dyffusion.data.generation import is_complete, split_seed, write_netcdf
from dyffusion.errors import UserError

STORED_STEP = 0.00781
SUBSTEPS = 128
GRID = 10
STIFFNESS = 1.0
DAMPING = 0.1
DISC_RADIUS = 0.35
ANNULUS_RADII = (0.35, 0.45)


def _spring_families() -> list[tuple[tuple, tuple, float]]:
    """Springs grouped by direction: (index of the particle ``this``, index of ``other``, rest length).

    Each index is a tuple of slices into a ``(component, y, x, batch)`` array; ``this`` sits at
    ``other + (dy, dx)`` for (dy, dx) in right, up, up-right and up-left: every Chebyshev-distance-1 pair once.
    """
    families = []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        this_x, other_x = (slice(dx, None), slice(0, GRID - dx)) if dx >= 0 else (slice(0, dx), slice(-dx, None))
        this = (slice(None), slice(dy, None), this_x)
        other = (slice(None), slice(0, GRID - dy), other_x)
        families.append((this, other, math.hypot(dy, dx)))
    return families


_SPRINGS = _spring_families()


def rest_positions() -> np.ndarray:
    """Rest positions ``(2, GRID, GRID)`` float64: ``[0, y, x] = x`` and ``[1, y, x] = y``."""
    y, x = np.meshgrid(np.arange(GRID, dtype=np.float64), np.arange(GRID, dtype=np.float64), indexing="ij")
    return np.stack([x, y])


def fixed_mask() -> np.ndarray:
    """``(GRID, GRID)`` float32, 1 on the fixed top row (y = GRID - 1)."""
    mask = np.zeros((GRID, GRID), np.float32)
    mask[-1] = 1.0
    return mask


def initial_offsets(rng: np.random.Generator, num_trajectories: int, ood: bool = False) -> np.ndarray:
    """Offsets ``(traj, 2, GRID, GRID)`` uniform over the area of a disc of radius 0.35 (or, ``ood``,
    of the annulus 0.35..0.45), zero on the fixed particles.

    Uniform over the area means the CDF of r is (r^2 - r0^2) / (r1^2 - r0^2), hence r = sqrt(uniform in
    [r0^2, r1^2]); r = uniform would crowd the centre.
    """
    r0, r1 = ANNULUS_RADII if ood else (0.0, DISC_RADIUS)
    shape = (num_trajectories, GRID, GRID)
    radius = np.sqrt(rng.uniform(r0**2, r1**2, size=shape))
    angle = rng.uniform(0.0, 2.0 * np.pi, size=shape)
    offsets = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return offsets * (1.0 - fixed_mask())


def _substep(q: np.ndarray, v: np.ndarray, free: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """One linearly implicit Euler step of ``q, v`` ``(2, GRID, GRID, batch)`` float64; ``free`` is 0 when fixed.

    With H = -K (the Hessian of the spring energy) the system is (I + dt^2 H) v' = b. Instead of a dense
    180 x 180 solve per trajectory we sum the Neumann series v' = sum_j (-dt^2 H)^j b: a Gershgorin bound
    gives ||dt^2 H|| <= ~1e-7 here, so the terms j <= 2 already reach float64 round-off -- the solution of
    a dense direct solve (to ~1e-14 in the tests), for two matrix-free products on the grid instead of an LU.
    """
    force = -DAMPING * v
    springs, worst_ratio = [], 1.0
    for this, other, rest in _SPRINGS:
        d = q[this] - q[other]  # (2, ny, nx, batch): from `other` to `this`
        length = np.sqrt(d[0] * d[0] + d[1] * d[1])
        ratio = rest / length
        c = STIFFNESS * (1.0 - ratio)
        f = c * d  # the force on `this` is -f, on `other` +f
        force[this] -= f
        force[other] += f
        # The spring's Hessian block is A = c I + k (L0/L) n n^T with n = d / L; eigenvalues c and k.
        springs.append((this, other, c, STIFFNESS * ratio, d / length))
        worst_ratio = max(worst_ratio, float(ratio.max()))

    def hessian_times(u: np.ndarray) -> np.ndarray:
        out = np.zeros_like(u)
        for this, other, c, s, n in springs:
            du = u[this] - u[other]
            a = c * du + (s * (n[0] * du[0] + n[1] * du[1])) * n
            out[this] += a
            out[other] -= a
        return out * free  # restrict H to the free particles

    # Block Gershgorin: each particle has <= 8 springs, each block's norm is k * max(|c|, 1), and |c| is
    # largest for the most compressed spring (c = 1 - L0/L). Two terms leave an error <= eps^3 (relative),
    # below float64 round-off while eps < 2e-6; a fixed count keeps each trajectory independent of its batch.
    eps = dt * dt * 16.0 * STIFFNESS * max(1.0, worst_ratio - 1.0)
    if eps**3 > 1e-17:
        raise FloatingPointError(f"spring mesh collapsed (dt^2 ||H|| up to {eps:.3g}); shorten the sub-step")
    term = (v + dt * force) * free
    v_new = term.copy()
    for _ in range(2):
        term = -dt * dt * hessian_times(term)
        v_new += term
    return q + dt * v_new, v_new


def integrate_spring_mesh(q0: np.ndarray, v0: np.ndarray, frames: int, progress: bool = False,
                          dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Integrate from ``q0, v0`` ``(traj, 2, GRID, GRID)``; returns q and v ``(traj, frames, 2, GRID, GRID)``.

    Frame n is the state at time ``n * STORED_STEP`` (frame 0 = the initial state). The simulation runs in
    float64; ``dtype`` is only the storage type. Fixed particles are those of ``fixed_mask()``: they keep
    their ``q0`` and get zero velocity.
    """
    if frames < 1:
        raise UserError(f"frames must be >= 1, got {frames}")
    free = (1.0 - fixed_mask().astype(np.float64))[None, :, :, None]
    q = np.ascontiguousarray(np.moveaxis(np.asarray(q0, np.float64), 0, -1))  # batch-last
    v = np.ascontiguousarray(np.moveaxis(np.asarray(v0, np.float64), 0, -1)) * free
    qs = np.empty((q.shape[-1], frames, 2, GRID, GRID), dtype)
    vs = np.empty_like(qs)
    qs[:, 0], vs[:, 0] = np.moveaxis(q, -1, 0), np.moveaxis(v, -1, 0)
    dt = STORED_STEP / SUBSTEPS
    for n in tqdm(range(1, frames), desc=f"spring mesh x{q.shape[-1]}", unit="step", disable=not progress):
        for _ in range(SUBSTEPS):
            q, v = _substep(q, v, free, dt)
        qs[:, n], vs[:, n] = np.moveaxis(q, -1, 0), np.moveaxis(v, -1, 0)
    return qs, vs


def simulate_spring_mesh(num_trajectories: int, frames: int = 805, seed: int = 0, ood: bool = False,
                         progress: bool = True) -> dict[str, np.ndarray]:
    """Simulate trajectories that start at rest from random displacements (disc, or annulus if ``ood``).

    Returns ``{"p": (traj, frames, 2, GRID, GRID) float32, "q": same, "fixed_mask": (GRID, GRID) float32,
    "time": (frames,) float64}``; momentum p = m v with m = 1.
    """
    rng = np.random.default_rng(seed)
    q0 = rest_positions() + initial_offsets(rng, num_trajectories, ood)
    q, v = integrate_spring_mesh(q0, np.zeros_like(q0), frames, progress, dtype=np.float32)
    return {"p": v, "q": q, "fixed_mask": fixed_mask(), "time": np.arange(frames) * STORED_STEP}


def spring_mesh_dataset(num_trajectories: int, frames: int = 805, seed: int = 0, ood: bool = False,
                        progress: bool = True) -> xr.Dataset:
    """The data-contract Dataset: ``p`` and ``q`` ``(trajectory, time, component, y, x)``, static ``fixed_mask``."""
    sim = simulate_spring_mesh(num_trajectories, frames, seed, ood, progress)
    dims = ("trajectory", "time", "component", "y", "x")
    return xr.Dataset(
        data_vars={
            "p": (dims, sim["p"], {"long_name": "momentum", "units": "kg m/s"}),
            "q": (dims, sim["q"], {"long_name": "position", "units": "m"}),
            "fixed_mask": (("y", "x"), sim["fixed_mask"], {"long_name": "fixed particle mask"}),
        },
        coords={
            "trajectory": np.arange(num_trajectories),
            "time": ("time", sim["time"], {"units": "s"}),
            "component": ["x", "y"],
            "y": np.arange(GRID),
            "x": np.arange(GRID),
        },
        attrs={
            "title": "spring mesh (Otness et al. 2021)",
            "dyffusion_boundary_condition": "fixed_points",
            "dyffusion_boundary_mask": "fixed_mask",
            "dyffusion_view": "particle_mesh",  # report figures draw the mesh from the positions
            "dyffusion_view_channels": "q_x,q_y",
            "displacement": "annulus" if ood else "disc",
            "seed": seed,
        },
    )


def write_spring_mesh_splits(out_dir, train: int = 100, val: int = 3, test: int = 15, ood_test: int = 15,
                             frames: int = 805, seed: int = 0, progress: bool = True) -> dict[str, Path]:
    """Write ``out_dir/{train,val,test,test_ood}.nc`` (splits of count 0 are skipped); returns split -> path.

    Files are written to a temporary file in ``out_dir`` and moved in place with ``os.replace``, and a
    complete existing file (right trajectories, frames and seed) is kept, so an interrupted generation
    resumes where it stopped.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"train": train, "val": val, "test": test, "test_ood": ood_test}
    paths = {}
    for split, count in counts.items():
        if count <= 0:
            continue
        path = paths[split] = out_dir / f"{split}.nc"
        split_rng_seed = split_seed(seed, split)
        if is_complete(path, count, frames, seed=split_rng_seed):
            continue
        write_netcdf(spring_mesh_dataset(count, frames, split_rng_seed, ood=split == "test_ood", progress=progress), path)
    return paths
