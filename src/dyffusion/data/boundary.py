"""Boundary conditions applied to every predicted frame before it is scored or fed back.

A data set names its condition in the global attribute ``dyffusion_boundary_condition`` (and the static
variable holding its mask in ``dyffusion_boundary_mask``); user data without one gets none.
"""

from __future__ import annotations

from typing import Callable

import torch

# (frames (B, [L,] C, H, W), initial (B, C, H, W), static (B, S, H, W)) -> frames
BoundaryCondition = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def no_boundary_condition(frames: torch.Tensor, initial: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
    return frames


class FixedPoints:
    """Points where the static mask is 1 keep their initial-condition values (spring mesh: the fixed
    particles stay at their rest position with zero momentum)."""

    def __init__(self, mask_index: int):
        self.mask_index = mask_index

    def __call__(self, frames: torch.Tensor, initial: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        fixed = static[:, self.mask_index : self.mask_index + 1] > 0.5  # (B, 1, H, W)
        if frames.dim() == 5:
            fixed, initial = fixed[:, None], initial[:, None]
        return torch.where(fixed, initial, frames)


def build_boundary_condition(name: str | None, static_names: list[str], mask_name: str | None) -> BoundaryCondition:
    if not name or name == "none":
        return no_boundary_condition
    if name == "fixed_points":
        if mask_name not in static_names:
            raise ValueError(f"boundary condition 'fixed_points' needs the static mask {mask_name!r}; "
                             f"the data has {static_names}")
        return FixedPoints(static_names.index(mask_name))
    raise ValueError(f"unknown boundary condition {name!r} (known: none, fixed_points)")
