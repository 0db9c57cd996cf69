"""2-D incompressible flow in a channel with circular obstacles: a finite-volume projection method.

The channel is ``[0, length] x [0, height]`` (the Schäfer-Turek geometry: 2.2 x 0.41), covered by square
cells of side ``h`` on a staggered (MAC) grid: ``u`` lives on the vertical faces, ``v`` on the horizontal
faces, the pressure in the cells. Cells whose centre lies inside an obstacle are solid; faces touching a
solid cell carry zero velocity (a staircase no-slip body).

    walls y = 0, height    no slip (ghost values mirror the first interior ones)
    inlet x = 0            u = U_max 4 y (height - y) / height^2 * (1 - exp(-ramp_rate t)), v = 0
    outlet x = length      zero normal stress, approximated by p = 0 and zero normal velocity gradients

Each step is a third-order strong-stability-preserving Runge-Kutta step whose stages are each projected on
divergence-free fields (central differences for advection and diffusion). The pressure Poisson matrix is
fixed for a geometry, so it is factorised once with a sparse LU; every projection is then two triangular
solves. Arrays are indexed ``[x, y]`` inside; :class:`FlowSolver` samples fields to other grids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sparse
from scipy.sparse.linalg import splu


@dataclass(frozen=True)
class Channel:
    """Geometry, fluid and inflow of a channel flow (defaults: the paper's Navier-Stokes data set)."""

    length: float = 2.2
    height: float = 0.41
    viscosity: float = 1e-3
    max_inflow: float = 1.0
    ramp_rate: float = 5.0  # inflow (1 - exp(-ramp_rate t)); 0 means the full inflow from t = 0
    obstacles: tuple[tuple[float, float, float], ...] = field(default_factory=tuple)  # (x, y, radius)

    def inflow_profile(self, y: np.ndarray) -> np.ndarray:
        """Inlet velocity u at heights ``y`` once the ramp is complete: the parabola of maximum ``max_inflow``."""
        return self.max_inflow * 4.0 * y * (self.height - y) / self.height**2

    def inflow(self, y: np.ndarray, time: float) -> np.ndarray:
        """Inlet velocity u at heights ``y`` and ``time``."""
        ramp = 1.0 - np.exp(-self.ramp_rate * time) if self.ramp_rate > 0 else 1.0
        return self.inflow_profile(y) * ramp

    def inside_obstacle(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean array of the broadcast shape of ``x`` and ``y``: the point lies in an obstacle (boundary included)."""
        inside = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(y)), dtype=bool)
        for centre_x, centre_y, radius in self.obstacles:
            inside |= (x - centre_x) ** 2 + (y - centre_y) ** 2 <= radius**2
        return inside


@dataclass(frozen=True)
class SolverSettings:
    """Resolution and time step; the data set uses those the Schäfer-Turek validation passes with."""

    cell_size: float = 0.005
    time_step: float = 0.002


class FlowSolver:
    """State ``u (nx + 1, ny)``, ``v (nx, ny + 1)`` and ``time``; :meth:`advance` integrates in time."""

    def __init__(self, channel: Channel, settings: SolverSettings = SolverSettings()):
        self.channel, self.settings = channel, settings
        h = settings.cell_size
        self.nx, self.ny = round(channel.length / h), round(channel.height / h)
        if not (np.isclose(self.nx * h, channel.length) and np.isclose(self.ny * h, channel.height)):
            raise ValueError(f"cell size {h} does not divide the channel {channel.length} x {channel.height}")
        self.h = h
        x_centres = (np.arange(self.nx) + 0.5) * h
        self.y_centres = (np.arange(self.ny) + 0.5) * h
        self.solid = channel.inside_obstacle(x_centres[:, None], self.y_centres[None, :])  # (nx, ny)
        fluid = ~self.solid
        # Faces whose velocity the momentum equation updates: between two fluid cells, or the outlet.
        self.open_u = np.zeros((self.nx + 1, self.ny), dtype=bool)
        self.open_u[1:-1] = fluid[:-1] & fluid[1:]
        self.open_u[-1] = fluid[-1]
        self.open_v = np.zeros((self.nx, self.ny + 1), dtype=bool)
        self.open_v[:, 1:-1] = fluid[:, :-1] & fluid[:, 1:]
        self._build_projection()
        self._build_mirrors()
        self.u = np.zeros((self.nx + 1, self.ny))
        self.v = np.zeros((self.nx, self.ny + 1))
        self.time = 0.0
        self.u[0] = channel.inflow(self.y_centres, 0.0)

    # ---- projection ---------------------------------------------------------------------------------

    def _build_projection(self) -> None:
        """Sparse divergence ``D`` (fluid cells x open faces) and the factorised Poisson matrix ``D W D^T``.

        ``D`` holds +1/h for a cell's east or north face and -1/h for its west or south face, so the
        pressure gradient on the open faces is ``-W D^T p``; W is 1, except 2 on the outlet faces, which
        see the Dirichlet pressure half a cell away. Solid, wall and inlet faces are closed: Neumann.
        """
        nx, ny, h = self.nx, self.ny, self.h
        cell_index = np.full((nx, ny), -1)
        fluid = ~self.solid
        cell_index[fluid] = np.arange(fluid.sum())
        rows, cols, values, weights = [], [], [], []
        face = 0
        u_faces = np.argwhere(self.open_u)  # (i, j): face between cells i - 1 and i
        v_faces = np.argwhere(self.open_v)
        for (i, j) in u_faces:
            if i < nx:
                rows.append(cell_index[i, j]), cols.append(face), values.append(-1.0 / h)
            if i > 0:
                rows.append(cell_index[i - 1, j]), cols.append(face), values.append(1.0 / h)
            weights.append(2.0 if i == nx else 1.0)
            face += 1
        for (i, j) in v_faces:
            rows.append(cell_index[i, j]), cols.append(face), values.append(-1.0 / h)
            rows.append(cell_index[i, j - 1]), cols.append(face), values.append(1.0 / h)
            weights.append(1.0)
            face += 1
        self.num_fluid_cells = int(fluid.sum())
        self.divergence = sparse.csr_matrix((values, (rows, cols)), shape=(self.num_fluid_cells, face))
        self.face_weights = np.asarray(weights)
        self.cell_index = cell_index
        self._u_count = len(u_faces)
        poisson = (self.divergence @ sparse.diags(self.face_weights) @ self.divergence.T).tocsc()
        self._poisson = splu(poisson, permc_spec="MMD_AT_PLUS_A")

    def _open_faces(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.concatenate([u[self.open_u], v[self.open_v]])

    def _inlet_divergence(self, inlet: np.ndarray) -> np.ndarray:
        """Divergence in the fluid cells of the prescribed inlet flux alone."""
        result = np.zeros(self.num_fluid_cells)
        first = self.cell_index[0]
        result[first[first >= 0]] = -inlet[first >= 0] / self.h
        return result

    def _pressure(self, u_rate: np.ndarray, v_rate: np.ndarray, inlet_rate: np.ndarray) -> np.ndarray:
        """Solve for p such that the rates minus grad p keep the flow divergence-free: returns p per fluid cell."""
        rhs = self.divergence @ self._open_faces(u_rate, v_rate) + self._inlet_divergence(inlet_rate)
        return self._poisson.solve(-rhs)

    def _subtract_gradient(self, u: np.ndarray, v: np.ndarray, pressure: np.ndarray) -> None:
        gradient = -(self.divergence.T @ pressure) * self.face_weights
        u[self.open_u] -= gradient[: self._u_count]
        v[self.open_v] -= gradient[self._u_count :]

    def _build_mirrors(self) -> None:
        """Faces inside a body next to an open face along the wall: their ghost value is minus that face's, so
        the wall sits half a cell from it (as at the channel walls) and not a whole cell."""
        solid = self.solid
        inside_u = np.zeros_like(self.open_u)
        inside_u[1:-1] = solid[:-1] & solid[1:]
        inside_v = np.zeros_like(self.open_v)
        inside_v[:, 1:-1] = solid[:, :-1] & solid[:, 1:]
        self._u_mirrors = self._mirror_pairs(inside_u, self.open_u, axis=1, ghost_shape=(self.nx + 3, self.ny + 2))
        self._v_mirrors = self._mirror_pairs(inside_v, self.open_v, axis=0, ghost_shape=(self.nx + 2, self.ny + 3))

    @staticmethod
    def _mirror_pairs(inside: np.ndarray, open_faces: np.ndarray, axis: int, ghost_shape) -> tuple[np.ndarray, np.ndarray]:
        """(flat index into the ghosted array, flat index into the face array) of each mirrored face."""
        targets, sources = [], []
        for shift in (1, -1):
            neighbour_open = np.zeros_like(open_faces)
            if shift == 1:
                neighbour_open[(slice(None),) * axis + (slice(None, -1),)] = open_faces[(slice(None),) * axis + (slice(1, None),)]
            else:
                neighbour_open[(slice(None),) * axis + (slice(1, None),)] = open_faces[(slice(None),) * axis + (slice(None, -1),)]
            chosen = inside & neighbour_open
            inside = inside & ~chosen  # a face between two open ones mirrors the first only
            index = np.argwhere(chosen)
            source = index.copy()
            source[:, axis] += shift
            targets.append(np.ravel_multi_index(tuple((index + 1).T), ghost_shape))
            sources.append(np.ravel_multi_index(tuple(source.T), open_faces.shape))
        return np.concatenate(targets), np.concatenate(sources)

    # ---- momentum -----------------------------------------------------------------------------------

    def _rates(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advection plus diffusion, ``(du/dt, dv/dt)`` on every face (before the pressure gradient)."""
        h, nu = self.h, self.channel.viscosity
        # u with ghosts: one column beyond the outlet (zero gradient), one row beyond each wall (no slip).
        ug = np.empty((self.nx + 3, self.ny + 2))
        ug[1:-1, 1:-1] = u
        ug[0, 1:-1] = u[0]  # never read for updates: the inlet face is prescribed
        ug[-1, 1:-1] = u[-1]
        ug[:, 0] = -ug[:, 1]
        ug[:, -1] = -ug[:, -2]
        ug.flat[self._u_mirrors[0]] = -u.flat[self._u_mirrors[1]]
        # v with ghosts: one column before the inlet (v = 0 there), one beyond the outlet (zero gradient).
        vg = np.empty((self.nx + 2, self.ny + 3))
        vg[1:-1, 1:-1] = v
        vg[0, 1:-1] = -v[0]
        vg[-1, 1:-1] = v[-1]
        vg[:, 0] = vg[:, 2]  # beyond the walls; v = 0 on them, so only the ghost's own faces read it
        vg[:, -1] = vg[:, -3]
        vg.flat[self._v_mirrors[0]] = -v.flat[self._v_mirrors[1]]

        # u-momentum on faces i = 0..nx, j = 0..ny-1 (ug[1:-1, 1:-1]).
        u_cell = 0.5 * (ug[:-1, 1:-1] + ug[1:, 1:-1])  # cell centres i - 1/2 .. nx + 1/2, shape (nx + 2, ny)
        d_uu_dx = (u_cell[1:] ** 2 - u_cell[:-1] ** 2) / h
        u_corner = 0.5 * (ug[1:-1, :-1] + ug[1:-1, 1:])  # (nx + 1, ny + 1) at y = j h
        v_corner = 0.5 * (vg[:-1, 1:-1] + vg[1:, 1:-1])  # (nx + 1, ny + 1)
        uv = u_corner * v_corner
        d_uv_dy = (uv[:, 1:] - uv[:, :-1]) / h
        lap_u = (ug[2:, 1:-1] + ug[:-2, 1:-1] + ug[1:-1, 2:] + ug[1:-1, :-2] - 4 * u) / h**2
        du = -d_uu_dx - d_uv_dy + nu * lap_u

        # v-momentum on faces i = 0..nx-1, j = 0..ny (vg[1:-1, 1:-1]).
        v_cell = 0.5 * (vg[1:-1, :-1] + vg[1:-1, 1:])  # (nx, ny + 2)
        d_vv_dy = (v_cell[:, 1:] ** 2 - v_cell[:, :-1] ** 2) / h
        d_uv_dx = (uv[1:] - uv[:-1]) / h  # (nx, ny + 1)
        lap_v = (vg[2:, 1:-1] + vg[:-2, 1:-1] + vg[1:-1, 2:] + vg[1:-1, :-2] - 4 * v) / h**2
        dv = -d_uv_dx - d_vv_dy + nu * lap_v
        return du, dv

    def _stage(self, u: np.ndarray, v: np.ndarray, dt: float, time: float) -> tuple[np.ndarray, np.ndarray]:
        """An Euler step of size ``dt`` from (u, v), projected, with the inlet at ``time``."""
        du, dv = self._rates(u, v)
        u_new = np.where(self.open_u, u + dt * du, 0.0)
        v_new = np.where(self.open_v, v + dt * dv, 0.0)
        u_new[0] = self.channel.inflow(self.y_centres, time)
        pressure = self._pressure(u_new, v_new, u_new[0])  # times dt: the step's pressure impulse
        self._subtract_gradient(u_new, v_new, pressure)
        return u_new, v_new

    def advance(self, duration: float) -> None:
        """Integrate ``duration`` (a whole number of time steps) with SSP-RK3 steps."""
        dt = self.settings.time_step
        steps = round(duration / dt)
        if not np.isclose(steps * dt, duration):
            raise ValueError(f"duration {duration} is not a whole number of time steps {dt}")
        for _ in range(steps):
            u0, v0, t = self.u, self.v, self.time
            u1, v1 = self._stage(u0, v0, dt, t + dt)
            u2, v2 = self._stage(u1, v1, dt, t + 0.5 * dt)
            u2, v2 = 0.75 * u0 + 0.25 * u2, 0.75 * v0 + 0.25 * v2
            u3, v3 = self._stage(u2, v2, dt, t + dt)
            self.u, self.v = u0 / 3 + 2 * u3 / 3, v0 / 3 + 2 * v3 / 3
            self.time = t + dt

    # ---- diagnostics --------------------------------------------------------------------------------

    def pressure(self) -> np.ndarray:
        """Pressure ``(nx, ny)`` of the current velocity (kinematic, p / rho), NaN in solid cells."""
        du, dv = self._rates(self.u, self.v)
        ramp_rate = self.channel.ramp_rate
        inlet_rate = (self.channel.inflow_profile(self.y_centres) * ramp_rate * np.exp(-ramp_rate * self.time)
                      if ramp_rate > 0 else np.zeros(self.ny))
        fluid_pressure = self._pressure(du, dv, inlet_rate)
        result = np.full((self.nx, self.ny), np.nan)
        result[~self.solid] = fluid_pressure
        return result

    def max_divergence(self) -> float:
        """Largest |div u| over the fluid cells (1/s)."""
        div = self.divergence @ self._open_faces(self.u, self.v) + self._inlet_divergence(self.u[0])
        return float(np.abs(div).max())

    def obstacle_force(self) -> tuple[float, float]:
        """Force (per unit depth and density) the fluid exerts on all obstacles: ``(drag, lift)``.

        Pressure and wall shear summed over the staircase faces between solid and fluid cells; the
        tangential velocity at a fluid cell centre is half a cell from the wall.
        """
        pressure = np.nan_to_num(self.pressure())
        u_cell = 0.5 * (self.u[:-1] + self.u[1:])
        v_cell = 0.5 * (self.v[:, :-1] + self.v[:, 1:])
        shear = 2.0 * self.channel.viscosity  # nu * velocity / (h / 2) * face length h
        solid, drag, lift = self.solid, 0.0, 0.0
        # Solid cell with a fluid neighbour east: the body's face points +x, so pressure pushes -x.
        east = solid[:-1] & ~solid[1:]
        west = ~solid[:-1] & solid[1:]
        drag += self.h * (pressure[:-1][west].sum() - pressure[1:][east].sum())
        lift += shear * (v_cell[1:][east].sum() + v_cell[:-1][west].sum())
        north = solid[:, :-1] & ~solid[:, 1:]
        south = ~solid[:, :-1] & solid[:, 1:]
        lift += self.h * (pressure[:, :-1][south].sum() - pressure[:, 1:][north].sum())
        drag += shear * (u_cell[:, 1:][north].sum() + u_cell[:, :-1][south].sum())
        return float(drag), float(lift)
