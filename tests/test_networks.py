"""Backbones: shapes on odd grids, time conditioning, learning, MC dropout, gradients, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dyffusion.config import load_config
from dyffusion.networks import (
    ConvNet,
    NetworkConfig,
    UNet,
    build_network,
    has_dropout,
    set_mc_dropout,
    sinusoidal_embedding,
)

NAMES = ("convnet", "unet")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and threads oversubscribed by other
    processes on a 2-core machine slow these tests down by an order of magnitude."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small(name: str, dropout: float = 0.0, **kw) -> nn.Module:
    """A narrow network (fast tests); same code paths as the defaults."""
    cfg = NetworkConfig(name=name, width=8, dropout=dropout, time_embedding_dim=16, **kw)
    return build_network(cfg, in_channels=3, out_channels=2)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("hw", [(10, 10), (60, 60), (221, 42), (13, 7)])
def test_output_shape(name, hw):
    net = small(name)
    y = net(torch.randn(2, 3, *hw), torch.tensor([0.0, 2.5]))
    assert y.shape == (2, 2, *hw)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("padding_mode", ["circular", "replicate"])
@pytest.mark.parametrize("name", NAMES)
def test_padding_modes_on_odd_grid(name, padding_mode):
    net = small(name, padding_mode=padding_mode)
    assert net(torch.randn(1, 3, 13, 7), torch.tensor([1.0])).shape == (1, 2, 13, 7)


@pytest.mark.parametrize("name", NAMES)
def test_default_networks(name):
    net = build_network(NetworkConfig(name=name), in_channels=9, out_channels=4)
    assert net(torch.randn(2, 9, 10, 10), torch.tensor([0.25, 150.0])).shape == (2, 4, 10, 10)


def test_scalar_time_is_broadcast_and_bad_shape_rejected():
    net = small("convnet").eval()
    x = torch.randn(3, 3, 10, 10)
    assert torch.equal(net(x, torch.tensor(0.5)), net(x, torch.full((3,), 0.5)))
    with pytest.raises(ValueError, match="time"):
        net(x, torch.zeros(2))


def test_sinusoidal_embedding():
    t = torch.tensor([0.0, 0.25, 1.0, 150.0])
    e = sinusoidal_embedding(t, 16)
    assert e.shape == (4, 16)
    assert torch.allclose(e[0], torch.cat([torch.zeros(8), torch.ones(8)]))  # sin(0), cos(0)
    assert (e[0] - e[1]).abs().max() > 0.2  # fractional steps are distinguishable
    assert sinusoidal_embedding(t, 7).shape == (4, 7)


@pytest.mark.parametrize("name", NAMES)
def test_time_changes_output(name):
    net = small(name).eval()
    x = torch.randn(2, 3, 10, 10)
    y0, y1, y2 = (net(x, torch.full((2,), t)) for t in (0.0, 0.25, 7.0))
    assert not torch.allclose(y0, y1)
    assert not torch.allclose(y0, y2)


def _target(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A time-only term plus a time-modulated function of the input (needs FiLM to interact)."""
    t = t[:, None, None, None]
    return torch.sin(t) + torch.cos(t) * x[:, :2]


@pytest.mark.parametrize("name", NAMES)
def test_learns_time_dependent_target(name):
    torch.manual_seed(0)
    net = small(name)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(300):
        t, x = torch.rand(16) * 6.0, torch.randn(16, 3, 8, 8)
        loss = (net(x, t) - _target(x, t)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        t, x = torch.linspace(0, 6, 32), torch.randn(32, 3, 8, 8)
        err = (net(x, t) - _target(x, t)).square().mean()
    # Predicting zero scores E[sin^2] + E[cos^2 x^2] ~ 1; reached ~0.03-0.06 over seeds.
    assert err < 0.1, float(err)


def _two_passes(net: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    x, t = torch.randn(2, 3, 12, 12), torch.tensor([0.0, 1.0])
    with torch.no_grad():
        return net(x, t), net(x, t)


@pytest.mark.parametrize("name", NAMES)
def test_mc_dropout(name):
    net = small(name, dropout=0.3)
    assert has_dropout(net)
    assert set_mc_dropout(net, True) is net
    a, b = _two_passes(net)
    assert not torch.allclose(a, b)
    for m in net.modules():
        is_dropout = isinstance(m, nn.Dropout)
        assert m.training == is_dropout, type(m).__name__
    if name == "unet":  # normalisation layers keep eval behaviour
        assert any(isinstance(m, nn.GroupNorm) and not m.training for m in net.modules())
    set_mc_dropout(net, False)
    assert not any(m.training for m in net.modules())
    a, b = _two_passes(net)
    assert torch.equal(a, b)


def test_mc_dropout_keeps_batchnorm_in_eval():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    set_mc_dropout(net, True)
    assert not net[1].training and net[2].training
    x = torch.randn(2, 1, 5, 5)
    assert not torch.equal(net(x), net(x))


@pytest.mark.parametrize("name", NAMES)
def test_no_dropout_is_deterministic_even_when_enabled(name):
    net = small(name, dropout=0.0)
    assert not has_dropout(net)
    a, b = _two_passes(set_mc_dropout(net, True))
    assert torch.equal(a, b)


def test_unknown_name():
    with pytest.raises(ValueError, match="convnet, unet"):
        build_network(NetworkConfig(name="transformer"), 1, 1)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_inputs(name):
    """The forecaster's look-ahead loss backpropagates through the frozen interpolator's input."""
    net = small(name, dropout=0.1)
    net.requires_grad_(False)
    set_mc_dropout(net, True)
    x = torch.randn(2, 3, 13, 7, requires_grad=True)
    net(x, torch.tensor([0.5, 3.0])).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_seed_determinism(name):
    def run():
        torch.manual_seed(123)
        net = small(name, dropout=0.2)
        x = torch.randn(2, 3, 11, 9)
        return net.state_dict(), net(x, torch.tensor([0.0, 4.0]))

    (sd1, y1), (sd2, y2) = run(), run()
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert torch.equal(y1, y2)


def test_classes_exported():
    assert isinstance(small("convnet"), ConvNet) and isinstance(small("unet"), UNet)


@pytest.mark.parametrize("p", [0.15, 0.5])
def test_dropout_masks_have_the_bernoulli_law(p):
    """Each element is kept independently with probability 1 - p and scaled by 1/(1 - p): the kept fraction of
    10^6 ones lies within 5 binomial standard deviations of 1 - p, the survivors equal 1/(1 - p), the mean is
    kept, and two draws differ; in eval mode (and at p = 0) the input comes back unchanged."""
    from dyffusion.networks.dropout import Dropout

    torch.manual_seed(0)
    ones, n = torch.ones(1000, 1000), 1_000_000
    layer = Dropout(p).train()
    with torch.no_grad():  # the inference path (MC dropout); with autograd on it is PyTorch's own dropout
        first, second = layer(ones), layer(ones)
    kept = first != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * ((p * (1 - p) / n) ** 0.5)
    assert torch.allclose(first[kept], torch.full_like(first[kept], 1 / (1 - p)))
    assert not torch.equal(first, second)
    # neighbours are independent: the kept fraction among the right neighbours of kept elements is still 1 - p
    pairs = kept[:, :-1] & kept[:, 1:]
    assert abs(pairs.float().sum().item() / kept[:, :-1].sum().item() - (1 - p)) < 5 * ((p * (1 - p) / (n * (1 - p))) ** 0.5)
    values = torch.randn(1000, 1000)
    with torch.no_grad():
        dropped = layer.train()(values)
    survivors = dropped != 0
    assert torch.allclose(dropped[survivors], values[survivors] / (1 - p))
    # with autograd on (training): the same law, and the gradient is the mask scaled by 1/(1 - p)
    leaf = torch.ones(1000, 1000, requires_grad=True)
    trained = layer(leaf)
    trained.sum().backward()
    assert abs((trained != 0).float().mean().item() - (1 - p)) < 5 * ((p * (1 - p) / n) ** 0.5)
    assert torch.equal(leaf.grad, trained.detach())
    # bfloat16 activations (autocast): the same keep probability, and the survivors' scale rounded only once
    with torch.no_grad():
        half = layer(torch.ones(1000, 1000, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16
    assert abs((half != 0).float().mean().item() - (1 - p)) < 5 * ((p * (1 - p) / n) ** 0.5)
    assert torch.equal(half[half != 0], torch.full_like(half[half != 0], 1 / (1 - p)))
    assert layer.eval()(ones) is ones and Dropout(0.0).train()(ones) is ones
    with torch.no_grad():
        assert torch.equal(Dropout(1.0).train()(ones), torch.zeros_like(ones))


def test_convnet_has_the_papers_layer_layout():
    """The spring-mesh network's multiply-adds per grid point, counted by hand from the paper's layout (input
    conv 9x9 from 5 channels to 64, then 7x7, 5x5 and 3x3 convs 64 -> 64, a 1x1 head to 4 channels), match
    the convolution weights of ``ConvNet``."""
    net = ConvNet(5, 4, width=64, kernel_sizes=(9, 7, 5, 3))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [m.kernel_size[0] for m in convs] == [9, 7, 5, 3, 1]
    by_hand = 5 * 64 * 81 + 64 * 64 * (49 + 25 + 9) + 64 * 4
    assert sum(m.weight.numel() for m in convs) == by_hand


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_weights_compute_the_same_function(name):
    """``build_network`` stores the convolution weights channels-last (faster on the CPU) for state-sized
    inputs and outputs, and not when they carry more than 4 x width channels; the same weights in PyTorch's
    default layout give the same outputs up to float32 rounding, and the outputs keep their shape."""
    import copy

    torch.manual_seed(0)
    net = small(name)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    default_layout = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    assert not convs[0].weight.is_contiguous() and next(
        m for m in default_layout.modules() if isinstance(m, nn.Conv2d)).weight.is_contiguous()
    x, time = torch.randn(4, 3, 13, 7), torch.rand(4)
    with torch.no_grad():
        ours, reference = net(x, time), default_layout(x, time)
    assert ours.shape == reference.shape == (4, 2, 13, 7)
    assert torch.allclose(ours, reference, atol=1e-5 * reference.abs().max().item())
    wide_input = build_network(NetworkConfig(name=name, width=8, time_embedding_dim=16), 33, 2)
    assert all(m.weight.is_contiguous() for m in wide_input.modules() if isinstance(m, nn.Conv2d))


def _conv_reach(network: nn.Module, height: int, width: int) -> tuple[int, int]:
    """Cells to the left and right of an output cell in the middle row that its value depends on through the
    convolutions: the support of its input gradient with every GroupNorm made the identity (a norm's statistics
    tie every cell to every other, which carries no structure along the flow)."""
    network = network.double()
    network.time_embedding.float()  # its sinusoid is float32; the rest computes in float64
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.GroupNorm):
                setattr(module, name, nn.Identity())
    network.time_embedding.register_forward_hook(lambda module, inputs, output: output.double())
    x = torch.randn(1, network.conv_in.in_channels, height, width, dtype=torch.float64, requires_grad=True)
    centre = width // 2
    network(x, torch.zeros(1))[0, 0, height // 2, centre].backward()
    columns = (x.grad.abs().sum(dim=(0, 1, 2)) > 0).nonzero().flatten()
    return centre - int(columns.min()), int(columns.max()) - centre


def test_navier_stokes_unet_sees_one_horizon_of_advection():
    """Over one horizon (16 steps, 1.28 time units) the flow carries a structure 85-128 cells along the channel.
    Counted by hand (3x3 convolutions: a conv at scale s = 2^level reaches s cells; each ResBlock has two, each
    stride-2 step and each upsampling one), three levels reach 1 + 2(1+2+4) + (1+2) + 2*4 + 2(1+2+4) + (1+2) + 1
    = 44 cells and five levels 1 + 62 + 15 + 32 + 62 + 15 + 1 = 188, on a grid aligned with every stride-2 step;
    elsewhere the field shifts to one side by up to 1 + 2 + ... + 2^(levels-2) cells (3 and 15). The presets'
    U-Net has five levels: at least 130 cells both ways."""
    config = load_config("navier-stokes-cpu").interpolator.network
    assert len(config.channel_multipliers) == 5
    torch.manual_seed(0)
    left, right = _conv_reach(build_network(config, 3, 3), 42, 601)
    assert 188 - 15 <= min(left, right) and max(left, right) <= 188 + 15  # so at least 130 both ways
    three_levels = NetworkConfig(name="unet", width=8, channel_multipliers=(1, 2, 2), time_embedding_dim=16)
    left, right = _conv_reach(build_network(three_levels, 3, 3), 42, 601)
    assert 44 - 3 <= min(left, right) and max(left, right) <= 44 + 3


def test_convnet_dropout_inside_the_residual_branches_unless_the_head_is_asked_for():
    """The authors' spring-mesh network drops only inside residual branches; ``head_dropout`` adds the stream
    before the 1x1 head. The U-Net has no dropout there and refuses the option."""
    def active(head: bool) -> int:
        config = NetworkConfig(name="convnet", width=8, kernel_sizes=(9, 7, 5, 3), dropout=0.1, head_dropout=head)
        network = build_network(config, 5, 4)
        return sum(isinstance(m, nn.Dropout) and m.p > 0 for m in network.modules())

    assert (active(False), active(True)) == (3, 4)
    with pytest.raises(ValueError, match="head_dropout is for the convnet"):
        build_network(NetworkConfig(name="unet", width=8, head_dropout=True), 3, 3)
