"""The paper's Navier-Stokes data set (as in the paper's experiments): flow past four random obstacles, in the data contract.

Each trajectory starts from rest with a ramped parabolic inflow and is integrated by :mod:`flow_solver`
(at the resolution the Schäfer-Turek validation passes with); frames are sampled every 0.08 from t = 0.08
to 5.2 on the nodes of a 0.01 grid, 42 (y) x 221 (x) points from wall to wall and inlet to outlet.
Velocity is exactly the boundary value on the fixed points (walls, obstacles, inlet column) and every
channel is zero inside obstacles. Files hold ``u``, ``v``, ``p`` ``(trajectory, time, y, x)`` and the static
``obstacle_mask``, ``fixed_mask``, ``inflow`` ``(trajectory, y, x)``.

Generation runs trajectories in parallel processes and keeps each finished trajectory in
``OUT_DIR/.parts/<split>/``, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from dyffusion.data.generation import is_complete, split_seed, write_array, write_netcdf
from dyffusion.errors import DataError
from dyffusion.simulators.flow_solver import Channel, FlowSolver, SolverSettings

GRID_SPACING = 0.01
FRAME_STEP = 0.08
NUM_FRAMES = 65
NUM_OBSTACLES = 4
RADIUS_RANGE = (0.05, 0.1)
MIN_GAP = 0.05
RAMP_RATE = 5.0
CHANNELS = {"u": ("x velocity", "m/s"), "v": ("y velocity", "m/s"), "p": ("kinematic pressure p/rho", "m^2/s^2")}


def random_obstacles(rng: np.random.Generator, count: int = NUM_OBSTACLES, channel: Channel = Channel()
                     ) -> tuple[tuple[float, float, float], ...]:
    """``count`` circles ``(x, y, radius)``: radius uniform in RADIUS_RANGE, centre x in [0.25 + r, 1.95 - r],
    y in [0.05 + r, 0.36 - r], and at least MIN_GAP between any two circles (rejection sampling)."""
    obstacles: list[tuple[float, float, float]] = []
    while len(obstacles) < count:
        radius = rng.uniform(*RADIUS_RANGE)
        x = rng.uniform(0.25 + radius, channel.length - 0.25 - radius)
        y = rng.uniform(0.05 + radius, channel.height - 0.05 - radius)
        if all(np.hypot(x - ox, y - oy) >= radius + other + MIN_GAP for ox, oy, other in obstacles):
            obstacles.append((float(x), float(y), float(radius)))
    return tuple(obstacles)


def grid_coordinates(channel: Channel = Channel(), spacing: float = GRID_SPACING) -> tuple[np.ndarray, np.ndarray]:
    """Node coordinates ``(y (42,), x (221,))`` of the output grid, walls and both ends included."""
    return (np.arange(round(channel.height / spacing) + 1) * spacing,
            np.arange(round(channel.length / spacing) + 1) * spacing)


def static_fields(channel: Channel, spacing: float = GRID_SPACING) -> dict[str, np.ndarray]:
    """``obstacle_mask``, ``fixed_mask`` and ``inflow`` (fully ramped inlet u) on the output grid, (y, x) float32."""
    y, x = grid_coordinates(channel, spacing)
    obstacle = channel.inside_obstacle(x[None, :], y[:, None])
    fixed = obstacle.copy()
    fixed[[0, -1], :] = True
    fixed[:, 0] = True
    inflow = np.zeros_like(obstacle, dtype=np.float64)
    inflow[1:-1, 0] = channel.inflow_profile(y[1:-1])
    return {"obstacle_mask": obstacle.astype(np.float32), "fixed_mask": fixed.astype(np.float32),
            "inflow": inflow.astype(np.float32)}


def sample_fields(solver: FlowSolver, spacing: float = GRID_SPACING) -> np.ndarray:
    """The solver's ``u``, ``v``, ``p`` on the output-grid nodes: ``(3, y, x)`` float64, boundary values exact.

    Nodes sit on cell corners; each field is averaged from its two (velocity) or four (pressure) nearest
    staggered values, with ghost values standing for the walls (no slip), the inlet (v = 0, dp/dn = 0) and
    the outlet (p = 0, zero normal gradients); solid cells do not count for pressure.
    """
    ratio = round(spacing / solver.h)
    if not np.isclose(ratio * solver.h, spacing):
        raise ValueError(f"output spacing {spacing} is not a multiple of the cell size {solver.h}")
    channel = solver.channel
    u = np.pad(solver.u, ((0, 0), (1, 1)))
    u[:, 0], u[:, -1] = -u[:, 1], -u[:, -2]
    v = np.pad(solver.v, ((1, 1), (0, 0)))
    v[0], v[-1] = -v[1], v[-2]
    pressure = solver.pressure()  # NaN in solid cells
    p = np.pad(pressure, 1, mode="edge")
    p[-1, 1:-1] = -pressure[-1]
    p[:, 0], p[:, -1] = p[:, 1], p[:, -2]
    x_nodes = np.arange(0, solver.nx + 1, ratio)  # node index in cell-corner units
    y_nodes = np.arange(0, solver.ny + 1, ratio)
    u_nodes = 0.5 * (u[x_nodes][:, y_nodes] + u[x_nodes][:, y_nodes + 1])
    v_nodes = 0.5 * (v[x_nodes][:, y_nodes] + v[x_nodes + 1][:, y_nodes])
    corners = np.stack([p[x_nodes + a][:, y_nodes + b] for a in (0, 1) for b in (0, 1)])
    fluid = np.isfinite(corners)
    p_nodes = np.where(fluid, corners, 0.0).sum(0) / np.maximum(fluid.sum(0), 1)
    fields = np.stack([u_nodes, v_nodes, p_nodes]).transpose(0, 2, 1)  # (3, y, x)
    y, x = grid_coordinates(channel, spacing)
    fields[0, :, 0] = channel.inflow(y, solver.time)
    fields[1, :, 0] = 0.0
    fields[:2, [0, -1], :] = 0.0  # after the inlet: y = 0.41 on the grid is 41 * 0.01, not exactly the wall
    fields[:, channel.inside_obstacle(x[None, :], y[:, None])] = 0.0
    return fields


def simulate_trajectory(obstacles, settings: SolverSettings = SolverSettings(), num_frames: int = NUM_FRAMES,
                        frame_step: float = FRAME_STEP) -> np.ndarray:
    """One trajectory from rest: ``(num_frames, 3, y, x)`` float32 at t = frame_step, ..., num_frames * frame_step."""
    solver = FlowSolver(Channel(ramp_rate=RAMP_RATE, obstacles=tuple(obstacles)), settings)
    frames = []
    for _ in range(num_frames):
        solver.advance(frame_step)
        frames.append(sample_fields(solver))
    result = np.stack(frames).astype(np.float32)
    if not np.isfinite(result).all():
        raise FloatingPointError(f"the flow solver diverged for obstacles {obstacles}")
    return result


def split_obstacles(seed: int, split: str, count: int) -> list[tuple[tuple[float, float, float], ...]]:
    rng = np.random.default_rng(split_seed(seed, split))
    return [random_obstacles(rng) for _ in range(count)]


def navier_stokes_dataset(obstacles: list, fields: np.ndarray, settings: SolverSettings, seed: int,
                          frame_step: float = FRAME_STEP) -> xr.Dataset:
    """The data-contract Dataset of trajectories ``fields (trajectory, time, 3, y, x)`` with their obstacles."""
    channel = Channel(ramp_rate=RAMP_RATE)
    y, x = grid_coordinates(channel)
    statics = [static_fields(replace(channel, obstacles=tuple(o))) for o in obstacles]
    dims = ("trajectory", "time", "y", "x")
    data_vars = {name: (dims, fields[:, :, index], {"long_name": long_name, "units": units})
                 for index, (name, (long_name, units)) in enumerate(CHANNELS.items())}
    for name, description in (("obstacle_mask", "1 inside an obstacle"),
                              ("fixed_mask", "1 where velocity is prescribed: obstacles, walls, inlet column"),
                              ("inflow", "inlet velocity u once the ramp is complete (0 off the inlet)")):
        data_vars[name] = (("trajectory", "y", "x"), np.stack([s[name] for s in statics]), {"long_name": description})
    return xr.Dataset(
        data_vars,
        coords={"trajectory": np.arange(len(obstacles)),
                "time": ("time", (np.arange(fields.shape[1]) + 1) * frame_step, {"units": "s"}),
                "y": ("y", y, {"units": "m"}), "x": ("x", x, {"units": "m"})},
        attrs={
            "title": "2-D channel flow past four obstacles (as in the paper's experiments)",
            "viscosity": channel.viscosity, "max_inflow": channel.max_inflow,
            "solver": "finite-volume projection, MAC grid, SSP-RK3",
            "solver_cell_size": settings.cell_size, "solver_time_step": settings.time_step,
            "dyffusion_boundary_condition": "channel_flow",
            "dyffusion_boundary_mask": "fixed_mask",
            "dyffusion_inflow_ramp_rate": RAMP_RATE,
            "dyffusion_invalid_mask": "obstacle_mask",  # no fluid there: out of the loss and the metrics
            "dyffusion_view": "flow_field",  # report figures show the speed, obstacles masked
            "dyffusion_view_channels": "u,v",
            "obstacles": json.dumps([[list(circle) for circle in o] for o in obstacles]),  # per trajectory: x, y, r
            "seed": seed,
        },
    )


def _parts_dir(out_dir: Path, split: str, seed: int, settings: SolverSettings, num_frames: int) -> Path:
    """Where finished trajectories wait; named by everything they depend on, so stale ones are never mixed in."""
    return out_dir / ".parts" / f"{split}-seed{seed}-h{settings.cell_size}-dt{settings.time_step}-frames{num_frames}"


def _write_part(path: Path, obstacles, settings: SolverSettings, num_frames: int) -> Path:
    write_array(simulate_trajectory(obstacles, settings, num_frames), path)
    return path


def _is_complete(path: Path, count: int, frames: int, seed: int, settings: SolverSettings) -> bool:
    return is_complete(path, count, frames, seed=seed, solver_cell_size=settings.cell_size,
                       solver_time_step=settings.time_step)


def _read_part(path: Path) -> np.ndarray:
    """One finished trajectory of an interrupted generation; never unpickled, whoever put the file there."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:  # object arrays, a damaged header: not a part this generator wrote
        raise DataError(f"{path}: not a trajectory part of this generator ({error}); delete it to regenerate") from None


def write_navier_stokes_splits(out_dir, train: int = 100, val: int = 2, test: int = 5, seed: int = 0,
                               settings: SolverSettings = SolverSettings(), num_frames: int = NUM_FRAMES,
                               workers: int | None = None, progress: bool = True) -> dict[str, Path]:
    """Write ``out_dir/{train,val,test}.nc`` (splits of count 0 skipped); returns split -> path.

    Trajectories run in ``workers`` processes (default: the CPU count); each finished one is kept as
    ``out_dir/.parts/<split>-<settings>/<index>.npy`` until its split file is written, so a rerun after an
    interruption only computes what is missing. Complete split files are kept as they are.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {"train": train, "val": val, "test": test}
    paths, jobs = {}, []
    for split, count in counts.items():
        if count <= 0:
            continue
        paths[split] = out_dir / f"{split}.nc"
        if _is_complete(paths[split], count, num_frames, split_seed(seed, split), settings):
            continue
        parts = _parts_dir(out_dir, split, seed, settings, num_frames)
        parts.mkdir(parents=True, exist_ok=True)
        for index, obstacles in enumerate(split_obstacles(seed, split, count)):
            if not (parts / f"{index:04d}.npy").exists():
                jobs.append((parts / f"{index:04d}.npy", obstacles))
    if jobs:
        with ProcessPoolExecutor(max_workers=min(workers or os.cpu_count() or 1, len(jobs))) as pool:
            futures = [pool.submit(_write_part, path, obstacles, settings, num_frames) for path, obstacles in jobs]
            for future in tqdm(as_completed(futures), total=len(futures), desc="navier-stokes trajectories",
                               unit="traj", disable=not progress):
                future.result()
    for split, path in paths.items():
        split_rng_seed = split_seed(seed, split)
        if _is_complete(path, counts[split], num_frames, split_rng_seed, settings):
            continue
        parts = _parts_dir(out_dir, split, seed, settings, num_frames)
        obstacles = split_obstacles(seed, split, counts[split])
        fields = np.stack([_read_part(parts / f"{index:04d}.npy") for index in range(len(obstacles))])
        write_netcdf(navier_stokes_dataset(obstacles, fields, settings, split_rng_seed), path)
        shutil.rmtree(parts)
    return paths
