"""The forecaster ``F(x_{t+i_n}, i_n, cond) -> x_{t+h}`` (stage 2) and its objective, as plain PyTorch (no training
loop)."""

from __future__ import annotations

import torch
from torch import nn

from dyffusion.errors import ConfigError
from dyffusion.metrics.masked import masked_mean
from dyffusion.networks import NetworkConfig, build_network

CONDITIONING_MODES = ("data", "none", "data+noise")


class Forecaster(nn.Module):
    """forward(state (B, C, H, W), time (B,), initial (B, C, H, W), progress (B,), static (B, S, H, W)) -> (B, C, H, W)

    ``progress`` is n / (N - 1), the position of the diffusion step; only ``data+noise`` uses it, to blend
    the initial condition with fresh Gaussian noise: ``progress * x_t + (1 - progress) * eps``.
    """

    def __init__(self, network: NetworkConfig, channels: int, static_channels: int, conditioning: str = "data"):
        super().__init__()
        if conditioning not in CONDITIONING_MODES:
            raise ConfigError(f"unknown conditioning {conditioning!r}; choose one of {CONDITIONING_MODES}")
        self.conditioning = conditioning
        condition_channels = 0 if conditioning == "none" else channels
        self.network = build_network(network, channels + condition_channels + static_channels, channels)

    def condition(self, initial: torch.Tensor, progress: torch.Tensor) -> list[torch.Tensor]:
        if self.conditioning == "none":
            return []
        if self.conditioning == "data":
            return [initial]
        weight = progress.to(initial.dtype).reshape(-1, 1, 1, 1)
        return [weight * initial + (1 - weight) * torch.randn_like(initial)]

    def forward(self, state: torch.Tensor, time: torch.Tensor, initial: torch.Tensor, progress: torch.Tensor,
                static: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([state, *self.condition(initial, progress), static], dim=1)
        return self.network(inputs, time)


def forecaster_loss(forecaster, interpolator, batch: dict[str, torch.Tensor], times: torch.Tensor,
                    loss_weights: tuple[float, float] = (0.5, 0.5),
                    steps: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one batch; ``times`` (N,) are the schedule's ``i_n``; ``steps`` (B,) default to uniform draws.

    The interpolator is frozen: no gradient reaches its weights, but the look-ahead term backpropagates
    through it into the first forecast. Returns (loss, {"l1": ..., "lookahead": ...}).
    """
    initial, end, static, valid = batch["initial"], batch["end"], batch["static"], batch["valid"]
    num_steps = times.numel()
    times = times.to(initial.device)
    if steps is None:
        steps = torch.randint(0, num_steps, (initial.shape[0],), device=initial.device)
    time = times[steps]

    state = initial.clone()
    moving = steps > 0  # at n = 0 the state is x_t itself
    if moving.any():
        with torch.no_grad():
            # .to: under bfloat16 autocast (trainer.precision bf16-mixed) the interpolator returns bfloat16
            state[moving] = interpolator(initial[moving], end[moving], time[moving], static[moving]).to(state.dtype)
    forecast = forecaster(state, time, initial, steps / (num_steps - 1), static)
    l1 = masked_mean((forecast - end).abs(), valid)

    ahead = steps <= num_steps - 2
    lookahead = torch.zeros((), device=initial.device)
    if ahead.any():
        next_steps = steps[ahead] + 1
        next_time = times[next_steps]
        next_state = interpolator(initial[ahead], forecast[ahead], next_time, static[ahead])
        second = forecaster(next_state, next_time, initial[ahead], next_steps / (num_steps - 1), static[ahead])
        lookahead = masked_mean((second - end[ahead]).abs(), valid[ahead])
    loss = loss_weights[0] * l1 + loss_weights[1] * lookahead
    return loss, {"l1": l1.detach(), "lookahead": lookahead.detach()}
