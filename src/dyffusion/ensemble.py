"""What every method's sampling shares: members, bounded batches, boundary conditions, rollouts, cost count."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import nn

from dyffusion.data.boundary import BoundaryCondition, no_boundary_condition
from dyffusion.errors import UserError
from dyffusion.metrics import crps_ensemble
from dyffusion.metrics.masked import masked_mean

PRECISIONS = ("float32", "bfloat16")  # of the networks while sampling


class EnsemblePipeline:
    """Base of the samplers of all methods, in normalised space.

    Subclasses implement :meth:`sample_chunk` (one horizon for a flat batch) and :meth:`prepare` (switch
    the networks' dropout as the method needs). ``max_batch`` bounds the samples per network call, so
    memory does not grow with the ensemble size. ``network_evaluations`` counts network calls per
    forecast sample (one initial condition x one member x one horizon) of the last ``forecast``.
    ``precision``: ``bfloat16`` runs the networks under bfloat16 autocast (their outputs, and so the sampler's
    state, stay float32); on CPUs with bfloat16 instructions a forecast is about 1.3x faster at a CRPS within
    the spread of seeds (``benchmarks/RESULTS.md``), elsewhere it may be slower.
    """

    sampler = "direct"

    def __init__(self, horizon: int, boundary_condition: BoundaryCondition = no_boundary_condition,
                 max_batch: int = 1024, precision: str = "float32"):
        if precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.horizon, self.boundary_condition, self.max_batch = horizon, boundary_condition, max_batch
        self.precision = precision
        self.network_evaluations = 0.0

    @property
    def modules(self) -> list[nn.Module]:
        raise NotImplementedError

    @property
    def sampling_steps(self) -> int:
        """Network passes of the core loop per horizon (reported next to the measured cost)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Put the networks in the inference mode of the method (e.g. MC dropout on)."""
        raise NotImplementedError

    def sample_chunk(self, initial: torch.Tensor, static: torch.Tensor,
                     output_times: Sequence[float] | None) -> tuple[list[float], torch.Tensor]:
        """One horizon for a flat batch: (B, C, H, W) -> (lead_times, (B, L, C, H, W))."""
        raise NotImplementedError

    def _counted(self, function, samples_per_forecast: int):
        """Wrap a network call so that its cost per forecast sample is added up (and it runs in ``precision``)."""

        def call(*args):
            self.network_evaluations += args[0].shape[0] / samples_per_forecast
            if self.precision == "float32":
                return function(*args)
            with torch.autocast(args[0].device.type, dtype=torch.bfloat16):
                return function(*args).float()

        return call

    @torch.inference_mode()
    def forecast(self, initial: torch.Tensor, static: torch.Tensor, members: int,
                 output_times: Sequence[float] | None = None) -> tuple[list[float], torch.Tensor]:
        """Ensemble over one horizon: initial (B, C, H, W), static (B, S, H, W) -> (lead_times, (M, B, L, C, H, W))."""
        if members < 1:
            raise UserError(f"members must be >= 1, got {members}")
        self.prepare()
        batch = initial.shape[0]
        device = next(self.modules[0].parameters()).device  # inputs follow the model; outputs come back
        flat_initial = initial.to(device).repeat(members, 1, 1, 1)  # member-major: row m * B + b
        flat_static = static.to(device).repeat(members, 1, 1, 1)
        lead_times, outputs = None, []
        self.network_evaluations = 0.0
        for start in range(0, flat_initial.shape[0], max(1, self.max_batch)):
            chunk_initial = flat_initial[start : start + self.max_batch]
            chunk_static = flat_static[start : start + self.max_batch]
            lead_times, frames = self.sample_chunk(chunk_initial, chunk_static, output_times)
            outputs.append(self.boundary_condition(frames, chunk_initial, chunk_static, lead_times).to(initial.device))
        # Each chunk counted its calls per own sample; average them over the chunks.
        self.network_evaluations /= len(outputs)
        frames = torch.cat(outputs)
        return lead_times, frames.reshape(members, batch, *frames.shape[1:])

    def rollout(self, initial: torch.Tensor, static: torch.Tensor, members: int,
                num_lead_times: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Autoregressive ensemble rollout to ``num_lead_times`` data steps, one horizon at a time.

        Yields (lead_times, frames (M, B, L, C, H, W)) per chunk; each member's forecast at t + h becomes
        its own next initial condition (after the boundary condition).
        """
        batch = initial.shape[0]
        states = initial.repeat(members, 1, 1, 1)
        flat_static = static.repeat(members, 1, 1, 1)
        done = 0
        while done < num_lead_times:
            lead_times, frames = self.forecast(states, flat_static, 1)
            count = min(self.horizon, num_lead_times - done)
            frames = frames[0, :, :count]  # (M * B, L, C, H, W)
            yield ([done + int(t) for t in lead_times[:count]],
                   frames.reshape(members, batch, *frames.shape[1:]))
            states = frames[:, -1]
            done += count


def ensemble_crps(pipeline: EnsemblePipeline, batch: dict, members: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation CRPS and ensemble-mean MSE over lead times 1..h of a window batch (normalised units)."""
    _, ensemble = pipeline.forecast(batch["initial"], batch["static"], members)
    truth = batch["window"][:, 1:].flatten(0, 1)  # (B * h, C, H, W)
    flat = ensemble.flatten(1, 2)
    valid = batch["valid"][:, None].expand(-1, ensemble.shape[2], -1, -1).flatten(0, 1)
    return (masked_mean(crps_ensemble(flat, truth), valid),
            masked_mean((flat.mean(0) - truth) ** 2, valid))
