"""Boundary conditions applied to every predicted frame before it is scored or fed back.

A data set names its condition in the global attribute ``dyffusion_boundary_condition`` (and the static
variable holding its mask in ``dyffusion_boundary_mask``; parameters in ``dyffusion_inflow_*``); user data
without one gets none.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from dyffusion.data.normalization import Normalizer
from dyffusion.errors import ConfigError, DataError

# (frames (B, [L,] C, H, W), initial (B, C, H, W), static (B, S, H, W), lead_times (L floats, data steps))
# -> frames. Frames and initial are normalised, static is raw.
BoundaryCondition = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Sequence[float]], torch.Tensor]


def no_boundary_condition(frames: torch.Tensor, initial: torch.Tensor, static: torch.Tensor,
                          lead_times: Sequence[float]) -> torch.Tensor:
    return frames


class FixedPoints:
    """Points where the static mask is 1 keep their initial-condition values (spring mesh: the fixed
    particles stay at their rest position with zero momentum)."""

    def __init__(self, mask_index: int):
        self.mask_index = mask_index

    def __call__(self, frames: torch.Tensor, initial: torch.Tensor, static: torch.Tensor,
                 lead_times: Sequence[float]) -> torch.Tensor:
        fixed = static[:, self.mask_index : self.mask_index + 1] > 0.5  # (B, 1, H, W)
        if frames.dim() == 5:
            fixed, initial = fixed[:, None], initial[:, None]
        return torch.where(fixed, initial, frames)


class ChannelFlow:
    """Navier-Stokes channel flow past obstacles with a ramped parabolic inlet.

    Shapes: frames (B, L, C, H, W) or (B, C, H, W) and initial (B, C, H, W), both normalised by
    ``normalizer``; static (B, S, H, W) raw; lead_times L floats (one for 4-D frames) in data steps.

    Physics: at time t the inlet velocity is ``u = inflow * (1 - exp(-k t))``, v = 0; u = v = 0 on the
    walls and in the obstacles, and every channel is 0 inside the obstacles; the pressure is free on the
    walls and the inlet. The initial's ramp factor r0 is fitted to its inlet u (least squares, clamped to
    [0, 1]), so a frame L steps later has ``r = 1 - (1 - r0) exp(-k L time_step)``. At ``fixed_mask``
    points u = inflow * r and v = 0; at ``obstacle_mask`` points all channels are 0; other values stay.
    """

    def __init__(self, normalizer: Normalizer, time_step: float, ramp_rate: float, u_index: int, v_index: int,
                 obstacle_index: int, fixed_index: int, inflow_index: int):
        self.normalizer, self.time_step, self.ramp_rate = normalizer, float(time_step), float(ramp_rate)
        self.u_index, self.v_index = u_index, v_index
        self.obstacle_index, self.fixed_index, self.inflow_index = obstacle_index, fixed_index, inflow_index

    def __call__(self, frames: torch.Tensor, initial: torch.Tensor, static: torch.Tensor,
                 lead_times: Sequence[float]) -> torch.Tensor:
        dtype = torch.promote_types(frames.dtype, torch.float32)
        static = static.to(frames.device, dtype)
        inflow = static[:, self.inflow_index]  # (B, H, W)
        initial_u = self.normalizer.denormalize(initial.to(frames.device, dtype))[:, self.u_index]
        inlet = inflow != 0
        r0 = (torch.where(inlet, initial_u * inflow, 0).sum((-2, -1))
              / (inflow**2).sum((-2, -1)).clamp_min(torch.finfo(dtype).tiny)).clamp(0, 1)  # (B,)
        times = torch.as_tensor(lead_times, dtype=dtype, device=frames.device).reshape(-1)
        ramp = 1 - (1 - r0[:, None]) * torch.exp(-self.ramp_rate * self.time_step * times)  # (B, L)
        if frames.dim() == 4:
            if times.numel() != 1:
                raise ValueError(f"4-D frames take one lead time, got {len(times)}")
            ramp = ramp[:, 0]
        else:
            inflow, static = inflow[:, None], static[:, None]  # add the L dim
        obstacle = static[..., self.obstacle_index : self.obstacle_index + 1, :, :] > 0.5  # (B, [1,] 1, H, W)
        fixed = static[..., self.fixed_index : self.fixed_index + 1, :, :] > 0.5
        target = torch.zeros(frames.shape, dtype=dtype, device=frames.device)
        target[..., self.u_index, :, :] = inflow * ramp[..., None, None]
        target = torch.where(obstacle, 0, target)
        channel = torch.zeros(frames.shape[-3], 1, 1, dtype=torch.bool, device=frames.device)
        channel[[self.u_index, self.v_index]] = True
        touched = (fixed & channel) | obstacle
        return torch.where(touched, self.normalizer.normalize(target).to(frames.dtype), frames)


def build_boundary_condition(name: str | None, static_names: list[str], mask_name: str | None, *,
                             channel_names: Sequence[str] = (), normalizer: Normalizer | None = None,
                             time_step: float = 1.0, parameters: dict | None = None) -> BoundaryCondition:
    """``channel_flow`` also needs the channel names, the normaliser, the time per data step and the
    parameter ``inflow_ramp_rate``."""
    if not name or name == "none":
        return no_boundary_condition
    if name == "fixed_points":
        if mask_name not in static_names:
            raise DataError(f"boundary condition 'fixed_points' needs the static mask {mask_name!r}; "
                             f"the data has {static_names}")
        return FixedPoints(static_names.index(mask_name))
    if name == "channel_flow":
        channel_names, parameters = list(channel_names), parameters or {}
        statics = ["obstacle_mask", mask_name or "fixed_mask", "inflow"]
        missing = ([c for c in ("u", "v") if c not in channel_names] + [s for s in statics if s not in static_names]
                   + [p for p in ["inflow_ramp_rate"] if p not in parameters])
        if missing or normalizer is None:
            raise DataError(f"boundary condition 'channel_flow' needs the channels u, v, the static variables "
                             f"{statics}, the parameter inflow_ramp_rate and a normalizer; missing "
                             f"{missing or ['normalizer']} (channels {channel_names}, static {static_names})")
        return ChannelFlow(normalizer, time_step, parameters["inflow_ramp_rate"], channel_names.index("u"),
                           channel_names.index("v"), *(static_names.index(s) for s in statics))
    raise ConfigError(f"unknown boundary condition {name!r} (known: none, fixed_points, channel_flow)")
