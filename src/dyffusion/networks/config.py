"""Typed configuration of the time-conditioned backbones (one source of truth for their defaults)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class NetworkConfig:
    """Backbone settings shared by the interpolator and the forecaster.

    name: ``"convnet"`` (the paper's spring-mesh conv net) or ``"unet"``.
    width: channels of the hidden layers (convnet) or of the first U-Net level.
    kernel_sizes: convnet only, the input convolution's kernel, then one residual block per further kernel size.
    channel_multipliers: U-Net only, width multiplier per resolution level.
    blocks_per_level: U-Net only, residual blocks per level on the way down and up.
    dropout: rate of every dropout layer (the MC-dropout rate at inference).
    head_dropout: convnet only: dropout also on the whole residual stream right before the 1x1 output head. Off,
    dropout sits inside the residual branches only, as in the authors' spring-mesh network; on, every output
    pixel also sees the stream's own mask, which adds spread to each interpolator call (``benchmarks/RESULTS.md``,
    the stochasticity sweep, compares both on the validation split).
    time_embedding_dim: size of the sinusoidal embedding of the (real-valued) time input.
    padding_mode: convolution padding, ``"zeros"``, ``"circular"`` or ``"replicate"``.
    """

    name: str = "convnet"
    width: int = 64
    kernel_sizes: tuple[int, ...] = (9, 7, 5, 3)
    channel_multipliers: tuple[int, ...] = (1, 2, 2)
    blocks_per_level: int = 1
    dropout: float = 0.0
    head_dropout: bool = False
    time_embedding_dim: int = 64
    padding_mode: str = "zeros"
