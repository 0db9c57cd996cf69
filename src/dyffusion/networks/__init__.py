"""Time-conditioned backbones shared by the interpolator and the forecaster.

Every network maps ``x [B, C_in, H, W]`` and a real-valued ``time [B]`` to ``[B, C_out, H, W]``.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import NetworkConfig
from .convnet import ConvNet
from .dropout import has_dropout, set_mc_dropout
from .embedding import TimeEmbedding, sinusoidal_embedding
from .unet import UNet

NETWORK_NAMES = ("convnet", "unet")


def build_network(config: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
    """Instantiate the backbone named by ``config.name`` with the config's hyper-parameters, its convolution
    weights in channels-last memory format.

    Channels-last weights make the convolutions (and so the activations) run in NHWC, which oneDNN computes
    faster on the CPU: 1.14x a spring-mesh forecast and 1.04-1.2x a training step (``benchmarks/RESULTS.md``),
    at outputs equal to the default layout's up to float32 rounding. Saved weights are contiguous either way.
    """
    return _build(config, in_channels, out_channels).to(memory_format=torch.channels_last)


def _build(config: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
    common = dict(
        width=config.width,
        dropout=config.dropout,
        time_embedding_dim=config.time_embedding_dim,
        padding_mode=config.padding_mode,
    )
    if config.name == "convnet":
        return ConvNet(in_channels, out_channels, kernel_sizes=tuple(config.kernel_sizes), **common)
    if config.name == "unet":
        return UNet(
            in_channels,
            out_channels,
            channel_multipliers=tuple(config.channel_multipliers),
            blocks_per_level=config.blocks_per_level,
            **common,
        )
    raise ValueError(f"unknown network name {config.name!r}; valid names: {', '.join(NETWORK_NAMES)}")


__all__ = [
    "NETWORK_NAMES",
    "ConvNet",
    "NetworkConfig",
    "TimeEmbedding",
    "UNet",
    "build_network",
    "has_dropout",
    "set_mc_dropout",
    "sinusoidal_embedding",
]
