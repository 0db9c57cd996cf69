"""Time-conditioned backbones shared by the interpolator and the forecaster.

Every network maps ``x [B, C_in, H, W]`` and a real-valued ``time [B]`` to ``[B, C_out, H, W]``.
"""

from __future__ import annotations

import torch
from torch import nn

from dyffusion.errors import ConfigError

from .config import NetworkConfig
from .convnet import ConvNet
from .dropout import has_dropout, set_mc_dropout
from .embedding import TimeEmbedding, sinusoidal_embedding
from .unet import UNet

NETWORK_NAMES = ("convnet", "unet")


def build_network(config: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
    """Instantiate the backbone named by ``config.name`` with the config's hyper-parameters.

    Its convolution weights are channels-last (so the convolutions and activations run in NHWC) unless the
    input or output carries more than 4 x ``width`` channels. oneDNN computes NHWC faster on the CPU for
    state-sized networks (the spring-mesh interpolator's forward pass about 1.2-1.4x, a frame stack of 16 or
    32 frames 1.1-1.2x) and slower when the first or last convolution dominates (0.9x for 64 and 134 frames at
    width 64): ``python benchmarks/speed.py layout``. Outputs equal the default layout's up to float32 rounding;
    saved weights are contiguous either way.
    """
    network = _build(config, in_channels, out_channels)
    if max(in_channels, out_channels) <= 4 * config.width:
        network.to(memory_format=torch.channels_last)
    return network


def _build(config: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
    common = dict(
        width=config.width,
        dropout=config.dropout,
        time_embedding_dim=config.time_embedding_dim,
        padding_mode=config.padding_mode,
    )
    if config.name == "convnet":
        return ConvNet(in_channels, out_channels, kernel_sizes=tuple(config.kernel_sizes),
                       head_dropout=config.head_dropout, **common)
    if config.name == "unet":
        if config.head_dropout:
            raise ConfigError("network.head_dropout is for the convnet: the U-Net's dropout sits inside its residual "
                             "blocks at every level, none before its output head")
        return UNet(
            in_channels,
            out_channels,
            channel_multipliers=tuple(config.channel_multipliers),
            blocks_per_level=config.blocks_per_level,
            **common,
        )
    raise ConfigError(f"unknown network name {config.name!r}; valid names: {', '.join(NETWORK_NAMES)}")


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
