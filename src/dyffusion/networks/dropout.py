"""Monte-Carlo dropout switch: the interpolator's only source of stochasticity at inference.

The backbones use elementwise dropout (not ``Dropout2d``): on small grids (10x10 spring
mesh) with a few dozen channels, dropping whole feature maps perturbs the output coarsely and
uniformly in space, whereas elementwise masks give spatially varying ensemble spread, which is
what the DYffusion interpolator is effectively trained and sampled with.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Dropout(nn.Dropout):
    """Elementwise dropout whose masks come from ``torch.rand`` compared in place, instead of ``bernoulli_``.

    The same distribution (each element kept with probability 1 - p, kept ones scaled by 1/(1 - p)). On the
    CPU, MC dropout's masks were about a quarter of a spring-mesh forecast's time (a mask for every member at
    every step); the float mask made in place on the uniform draw needs no boolean tensor and no ``torch.where``
    and is faster than ``bernoulli_`` at inference and than PyTorch's fused dropout in training
    (``benchmarks/speed.py`` flops and training, variants ``nn.Dropout``). Masks depend on the global seed as
    ``nn.Dropout``'s do.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return super().forward(x)
        # Drawn and compared in float32, so that p is exact for bfloat16 activations too; 1 kept, 0 dropped.
        mask = torch.rand_like(x, dtype=torch.float32).ge_(self.p).to(x.dtype)
        scale = 1 / (1 - self.p)  # a Python scalar: multiplied in float32 even for bfloat16 activations
        if torch.is_grad_enabled():
            return (x * mask).mul_(scale)  # backward multiplies by the saved mask, then the scale
        return mask.mul_(x).mul_(scale)


# Public dropout classes (all share the private base ``_DropoutNd``, which we avoid relying on).
_DROPOUT_TYPES = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def set_mc_dropout(module: nn.Module, enabled: bool) -> nn.Module:
    """Put ``module`` in eval mode, then (if ``enabled``) only its dropout layers in train mode.

    Normalisation layers therefore keep their eval behaviour while each forward pass draws fresh
    dropout masks. Returns ``module`` (modified in place) for chaining.
    """
    module.eval()
    if enabled:
        for m in module.modules():
            if isinstance(m, _DROPOUT_TYPES):
                m.train()
    return module


def has_dropout(module: nn.Module) -> bool:
    """True if ``module`` contains a dropout layer with a non-zero rate (MC dropout is stochastic)."""
    return any(isinstance(m, _DROPOUT_TYPES) and m.p > 0 for m in module.modules())
