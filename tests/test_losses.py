"""The two training objectives against hand-written per-sample formulas of SPEC sections 2 and 4."""

import pytest
import torch
from torch import nn

from dyffusion.config import ForecasterConfig, SamplingConfig
from dyffusion.method.forecaster import Forecaster, forecaster_loss
from dyffusion.method.interpolator import Interpolator, interpolator_loss
from dyffusion.method.stages import ForecasterModule
from dyffusion.networks import NetworkConfig


class LinearInterpolator(nn.Module):
    """I(x0, x1, i) = (1 - w i / h) x0 + (w i / h) x1 with a learnable w (so gradients can be checked)."""

    def __init__(self, horizon):
        super().__init__()
        self.horizon, self.weight = horizon, nn.Parameter(torch.tensor(1.3))

    def forward(self, initial, end, time, static):
        w = (self.weight * time / self.horizon).reshape(-1, 1, 1, 1)
        return (1 - w) * initial + w * end


class ScaledForecaster(nn.Module):
    """F(x, i) = a x + b i (deterministic, differentiable)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.tensor(0.8)), nn.Parameter(torch.tensor(0.05))

    def forward(self, state, time, initial, progress, static):
        return self.a * state + self.b * time.reshape(-1, 1, 1, 1)


def batch(size=4, channels=2, side=3):
    torch.manual_seed(1)
    return {"initial": torch.randn(size, channels, side, side), "end": torch.randn(size, channels, side, side),
            "static": torch.zeros(size, 0, side, side), "valid": torch.ones(size, side, side, dtype=torch.bool)}


def test_forecaster_loss_matches_the_per_sample_formula():
    horizon, data = 5, batch()
    times = torch.tensor([0.0, 0.5, 1, 2, 3, 4])  # before_t1_only with one extra step: N = 6
    steps = torch.tensor([0, 2, 5, 4])
    interpolator, forecaster = LinearInterpolator(horizon), ScaledForecaster()
    loss, parts = forecaster_loss(forecaster, interpolator, data, times, (0.3, 0.7), steps)

    l1_terms, l2_terms = [], []
    for b, n in enumerate(steps.tolist()):
        x0, xh = data["initial"][b : b + 1], data["end"][b : b + 1]
        t = times[n : n + 1]
        state = x0 if n == 0 else interpolator(x0, xh, t, None)
        first = forecaster(state, t, x0, None, None)
        l1_terms.append((first - xh).abs())
        if n <= len(times) - 2:
            t_next = times[n + 1 : n + 2]
            second = forecaster(interpolator(x0, first, t_next, None), t_next, x0, None, None)
            l2_terms.append((second - xh).abs())
    expected_l1 = torch.cat(l1_terms).mean()
    expected_l2 = torch.cat(l2_terms).mean()  # the sample at the last step (n = 5) has no look-ahead
    torch.testing.assert_close(parts["l1"], expected_l1)
    torch.testing.assert_close(parts["lookahead"], expected_l2)
    torch.testing.assert_close(loss, 0.3 * expected_l1 + 0.7 * expected_l2)


def test_lookahead_gradient_flows_through_the_frozen_interpolator_only_into_the_forecaster():
    horizon, data = 4, batch()
    times = torch.tensor([0.0, 1, 2, 3])
    interpolator, forecaster = LinearInterpolator(horizon).requires_grad_(False), ScaledForecaster()
    loss, _ = forecaster_loss(forecaster, interpolator, data, times, (0.0, 1.0), torch.tensor([0, 1, 1, 2]))
    loss.backward()
    assert interpolator.weight.grad is None
    # d loss / d a by central differences: only correct if the look-ahead path carries the gradient of `first`.
    eps = 1e-3
    with torch.no_grad():
        values = []
        for delta in (eps, -eps):
            forecaster.a += delta
            values.append(forecaster_loss(forecaster, interpolator, data, times, (0.0, 1.0),
                                          torch.tensor([0, 1, 1, 2]))[0])
            forecaster.a -= delta
    numeric = (values[0] - values[1]) / (2 * eps)
    torch.testing.assert_close(forecaster.a.grad, numeric, rtol=1e-2, atol=1e-4)


def test_interpolator_loss_is_masked_mse():
    data = batch()
    data["time"] = torch.tensor([1.0, 2, 3, 1])
    data["target"] = torch.randn_like(data["initial"])
    data["valid"][:, 0, 0] = False
    interpolator = LinearInterpolator(4)
    prediction = interpolator(data["initial"], data["end"], data["time"], None)
    squared = (prediction - data["target"]) ** 2
    expected = squared.permute(0, 2, 3, 1)[data["valid"]].mean()
    torch.testing.assert_close(interpolator_loss(interpolator, data), expected)


def test_forecaster_module_keeps_the_interpolator_out_of_its_tree():
    network = NetworkConfig(width=8, kernel_sizes=(3,), dropout=0.2)
    interpolator = Interpolator(network, channels=2, static_channels=1)
    module = ForecasterModule(ForecasterConfig(network=NetworkConfig(width=8, kernel_sizes=(3,))), SamplingConfig(),
                              interpolator, channels=2, static_channels=1, horizon=4)
    assert all(not name.startswith("frozen") and "interpolator" not in name for name, _ in module.named_parameters())
    assert not any(key.startswith("frozen") for key in module.state_dict())
    module.train()  # what Lightning does at every epoch start
    assert not module.frozen_interpolator.training  # its (absent) normalisation stays in eval mode
    assert all(m.training for m in module.frozen_interpolator.modules() if isinstance(m, nn.Dropout))
    assert not any(p.requires_grad for p in module.frozen_interpolator.parameters())


def test_forecaster_conditioning_modes():
    """``data`` feeds x_t, ``none`` only the static channels, ``data+noise`` blends x_t with fresh noise by n/(N-1)."""
    torch.manual_seed(0)
    network = NetworkConfig(width=4, kernel_sizes=(3,))
    initial = torch.randn(2, 3, 4, 4)
    for mode, extra in (("data", 3), ("none", 0), ("data+noise", 3)):
        forecaster = Forecaster(network, channels=3, static_channels=1, conditioning=mode)
        assert forecaster.network.conv_in.in_channels == 3 + extra + 1
    blend = Forecaster(network, channels=3, static_channels=1, conditioning="data+noise")
    end, = blend.condition(initial, torch.ones(2))
    torch.testing.assert_close(end, initial)  # at the last step the condition is x_t itself
    start, = blend.condition(initial, torch.zeros(2))
    again, = blend.condition(initial, torch.zeros(2))
    assert (start - again).abs().max() > 0  # fresh noise each call
    assert abs(float(start.std()) - 1) < 0.3 and abs(float((start * initial).mean())) < 0.3  # pure noise at n = 0
    with pytest.raises(ValueError):
        Forecaster(network, channels=3, static_channels=1, conditioning="noise")
