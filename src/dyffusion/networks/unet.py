"""A compact time-conditioned U-Net for larger grids (e.g. 60x60 Navier-Stokes, 221x42 sea surface)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dyffusion.errors import ConfigError

from .dropout import Dropout
from .embedding import FiLM, TimeEmbedding, batch_time


def _num_groups(channels: int, max_groups: int = 32) -> int:
    """Largest group count <= max_groups dividing ``channels`` with >= 2 channels per group."""
    for g in range(min(max_groups, channels // 2), 0, -1):
        if channels % g == 0:
            return g
    return 1


class ResBlock(nn.Module):
    """Residual block [B, C_in, H, W] -> [B, C_out, H, W]:
    GroupNorm, SiLU, conv, GroupNorm, FiLM, SiLU, dropout, conv; plus a 1x1 skip if C changes.

    FiLM sits right after the second GroupNorm (scale-shift norm): the normalised features are
    then modulated by the time, so the conditioning cannot be washed out by the normalisation.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, padding_mode: str):
        super().__init__()
        self.norm1 = nn.GroupNorm(_num_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode=padding_mode)
        self.norm2 = nn.GroupNorm(_num_groups(c_out), c_out)
        self.film = FiLM(emb_dim, c_out)
        self.act = nn.SiLU()
        self.dropout = Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode=padding_mode)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = self.conv2(self.dropout(self.act(self.film(self.norm2(h), emb))))
        return self.skip(x) + h


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv (no checkerboard artefacts of transposed convs)."""

    def __init__(self, channels: int, padding_mode: str):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, padding_mode=padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Time-conditioned U-Net: x [B, C_in, H, W], time [B] -> [B, C_out, H, W], any H, W.

    Level i has ``width * channel_multipliers[i]`` channels and ``blocks_per_level`` ``ResBlock``s
    on the way down and on the way up; levels are joined by a strided 3x3 conv (learned
    downsampling, a quarter of the cost of a full-resolution conv) and by ``Upsample``; the output
    of each down level is concatenated to the input of the matching up level. One ``ResBlock``
    sits at the bottom. Inputs are padded to a multiple of ``2 ** (levels - 1)`` and cropped back:
    circular padding for a periodic domain, replicate otherwise (no artificial jump at the border).
    As for ``ConvNet``, the output conv keeps the default (non-zero) init.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int = 64,
        channel_multipliers: Sequence[int] = (1, 2, 2),
        blocks_per_level: int = 1,
        dropout: float = 0.0,
        time_embedding_dim: int = 64,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        if not channel_multipliers or blocks_per_level < 1:
            raise ConfigError("UNet needs at least one level and one block per level")
        emb_dim = 4 * time_embedding_dim
        chans = [width * m for m in channel_multipliers]
        self.factor = 2 ** (len(chans) - 1)
        self.pad_mode = "circular" if padding_mode == "circular" else "replicate"
        self.time_embedding = TimeEmbedding(time_embedding_dim, emb_dim)
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1, padding_mode=padding_mode)

        def blocks(c_in: int, c_out: int) -> nn.ModuleList:
            return nn.ModuleList(
                ResBlock(c_in if i == 0 else c_out, c_out, emb_dim, dropout, padding_mode)
                for i in range(blocks_per_level)
            )

        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = width
        for i, ch in enumerate(chans):
            self.down.append(blocks(c, ch))
            c = ch
            if i < len(chans) - 1:
                self.downsample.append(
                    nn.Conv2d(c, c, 3, stride=2, padding=1, padding_mode=padding_mode)
                )
        self.mid = ResBlock(c, c, emb_dim, dropout, padding_mode)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, ch in reversed(list(enumerate(chans))):
            self.up.append(blocks(c + ch, ch))  # + ch: the concatenated skip of level i
            c = ch
            if i > 0:
                self.upsample.append(Upsample(c, padding_mode))
        self.norm_out = nn.GroupNorm(_num_groups(c), c)
        self.act_out = nn.SiLU()
        self.conv_out = nn.Conv2d(c, out_channels, 3, padding=1, padding_mode=padding_mode)

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        emb = self.time_embedding(batch_time(time, x)).to(x.dtype)
        H, W = x.shape[-2:]
        ph, pw = -H % self.factor, -W % self.factor
        if ph or pw:  # no copy at all when the grid already fits
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=self.pad_mode)

        h = self.conv_in(x)
        skips = []
        for i, level in enumerate(self.down):
            for block in level:
                h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for i, level in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in level:
                h = block(h, emb)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        out = self.conv_out(self.act_out(self.norm_out(h)))
        if ph or pw:
            out = out[..., ph // 2 : ph // 2 + H, pw // 2 : pw // 2 + W]
        return out
