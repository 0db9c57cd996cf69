"""The paper's "simple conv net" for the spring-mesh task: large kernels at full resolution.

No downsampling: on a 10x10 grid a 9x9 kernel already sees the whole mesh, so the receptive
field comes from the kernel sizes, not from resolution levels. The layer layout follows the
paper's network (the first kernel is the input convolution, a 1x1 output head), which is what
the authors' timings (``PEER_TIMINGS.md``) were measured on; the time enters by FiLM before every
convolution after the first.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from dyffusion.errors import ConfigError

from .dropout import Dropout
from .embedding import FiLM, TimeEmbedding, batch_time


class Conditioning(nn.Module):
    """dropout(FiLM(SiLU(h), emb)): what every convolution after the first sees. [B, C, H, W] -> same.

    No normalisation layer: the stack is shallow and the residual stream keeps it well conditioned
    without it; per-sample statistics over a 10x10 grid would be noisy and would partly remove the
    field's amplitude, which is physical information here; and it is the cheapest option on a CPU.
    MC dropout then has no train/eval-sensitive layer to interact with.
    """

    def __init__(self, channels: int, emb_dim: int, dropout: float):
        super().__init__()
        self.act = nn.SiLU()
        self.film = FiLM(emb_dim, channels)
        self.dropout = Dropout(dropout)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return self.dropout(self.film(self.act(h), emb))


def _conv(c_in: int, c_out: int, kernel_size: int, padding_mode: str) -> nn.Conv2d:
    if kernel_size % 2 == 0:
        raise ConfigError(f"kernel sizes must be odd for symmetric 'same' padding, got {kernel_size}")
    return nn.Conv2d(c_in, c_out, kernel_size, padding="same", padding_mode=padding_mode)


class ConvBlock(nn.Module):
    """Residual block: h + conv(Conditioning(h, emb)). [B, C, H, W] -> same."""

    def __init__(self, channels: int, kernel_size: int, emb_dim: int, dropout: float, padding_mode: str):
        super().__init__()
        self.condition = Conditioning(channels, emb_dim, dropout)
        self.conv = _conv(channels, channels, kernel_size, padding_mode)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.conv(self.condition(h, emb))


class ConvNet(nn.Module):
    """Time-conditioned conv net: x [B, C_in, H, W], time [B] -> [B, C_out, H, W]. Works on any H, W.

    An input conv with the first of ``kernel_sizes`` to ``width`` channels, one ``ConvBlock`` per
    further kernel size, then ``Conditioning`` and a 1x1 output conv to ``out_channels`` (so even a
    single kernel size gives a time-conditioned network). Dropout sits inside the residual branches; with
    ``head_dropout`` also in the ``Conditioning`` before the head, on the stream every output pixel reads.

    The output conv keeps PyTorch's default init (not zero): these networks regress states
    directly (not noise), inputs are normalised so the initial output stays O(1), and a zero
    output layer would make the time conditioning and the input gradients vanish at init, which
    hides wiring bugs and delays learning of all upstream layers by a step.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int = 64,
        kernel_sizes: Sequence[int] = (9, 7, 5, 3),
        dropout: float = 0.0,
        time_embedding_dim: int = 64,
        padding_mode: str = "zeros",
        head_dropout: bool = False,
    ):
        super().__init__()
        if not kernel_sizes:
            raise ConfigError("kernel_sizes must name at least one kernel size")
        emb_dim = 4 * time_embedding_dim
        self.time_embedding = TimeEmbedding(time_embedding_dim, emb_dim)
        self.conv_in = _conv(in_channels, width, kernel_sizes[0], padding_mode)
        self.blocks = nn.ModuleList(
            ConvBlock(width, k, emb_dim, dropout, padding_mode) for k in kernel_sizes[1:]
        )
        self.condition_out = Conditioning(width, emb_dim, dropout if head_dropout else 0.0)
        self.conv_out = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: Tensor, time: Tensor) -> Tensor:
        emb = self.time_embedding(batch_time(time, x)).to(x.dtype)
        h = self.conv_in(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.conv_out(self.condition_out(h, emb))
