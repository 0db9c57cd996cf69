"""Ensembles and rollouts from real (small, untrained) networks: shapes, chunking, costs, boundaries."""

import pytest
import torch

from dyffusion.data.boundary import FixedPoints
from dyffusion.method.forecaster import Forecaster
from dyffusion.method.interpolator import Interpolator
from dyffusion.method.pipeline import DYffusionPipeline
from dyffusion.method.schedule import StepSchedule
from dyffusion.networks import NetworkConfig


def models(dropout):
    torch.manual_seed(0)
    # One kernel size: no residual block, so the dropout is the one before the head.
    network = NetworkConfig(width=8, kernel_sizes=(3,), dropout=dropout, head_dropout=dropout > 0)
    return Interpolator(network, channels=2, static_channels=1), Forecaster(network, channels=2, static_channels=1)


def inputs(batch=3):
    torch.manual_seed(1)
    static = torch.zeros(batch, 1, 5, 4)
    static[:, 0, -1] = 1
    return torch.randn(batch, 2, 5, 4), static


def test_member_chunks_do_not_change_a_deterministic_forecast():
    interpolator, forecaster = models(dropout=0.0)
    initial, static = inputs()
    results = []
    for max_batch in (2, 5, 1000):
        pipeline = DYffusionPipeline(interpolator, forecaster, StepSchedule(5, extra_steps=2), max_batch=max_batch)
        lead_times, frames = pipeline.forecast(initial, static, members=4)
        results.append(frames)
    assert lead_times == [1, 2, 3, 4, 5] and results[0].shape == (4, 3, 5, 2, 5, 4)
    for frames in results[1:]:
        torch.testing.assert_close(frames, results[0])
    torch.testing.assert_close(results[0][0], results[0][3])  # no dropout: identical members


def test_mc_dropout_gives_distinct_members_and_the_counted_cost():
    interpolator, forecaster = models(dropout=0.3)
    initial, static = inputs()
    schedule = StepSchedule(6)  # N = 6 steps
    pipeline = DYffusionPipeline(interpolator, forecaster, schedule, refine=True)
    _, frames = pipeline.forecast(initial, static, members=3)
    assert (frames[0] - frames[1]).abs().max() > 0
    # Cold sampling: N forecaster calls, one interpolation at s = 0, two per step for s = 1..N-2,
    # then h - 1 refinements.
    n = schedule.num_steps
    assert pipeline.network_evaluations == n + 1 + 2 * (n - 2) + (schedule.horizon - 1)
    naive = DYffusionPipeline(interpolator, forecaster, schedule, sampler="naive", steps="all", refine=False)
    naive.forecast(initial, static, members=1)
    assert naive.network_evaluations == n + (n - 1)


def test_rollout_chains_members_and_keeps_boundaries():
    interpolator, forecaster = models(dropout=0.2)
    initial, static = inputs(batch=2)
    pipeline = DYffusionPipeline(interpolator, forecaster, StepSchedule(4), boundary_condition=FixedPoints(0))
    chunks = list(pipeline.rollout(initial, static, members=3, num_lead_times=10))
    assert [times for times, _ in chunks] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    frames = torch.cat([chunk for _, chunk in chunks], dim=2)
    assert frames.shape == (3, 2, 10, 2, 5, 4)
    expected = initial[None, :, None, :, -1].expand(3, -1, 10, -1, -1)
    torch.testing.assert_close(frames[..., -1, :], expected)


def test_members_must_be_positive():
    interpolator, forecaster = models(dropout=0.0)
    initial, static = inputs()
    with pytest.raises(ValueError, match="members"):
        DYffusionPipeline(interpolator, forecaster, StepSchedule(3)).forecast(initial, static, members=0)


def test_bfloat16_precision_runs_the_convolutions_in_bfloat16_and_keeps_a_float32_state():
    """With ``precision="bfloat16"`` every convolution computes in bfloat16 (seen by a hook), the forecast comes
    back float32 and within bfloat16's rounding (8 significant bits, relative 2^-8 per operation, a few dozen
    operations deep) of the float32 forecast of the same weights; an unknown precision is refused."""
    interpolator, forecaster = models(dropout=0.0)
    initial, static = inputs()
    seen = []
    hooks = [module.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
             for network in (interpolator, forecaster) for module in network.modules()
             if isinstance(module, torch.nn.Conv2d)]
    schedule = StepSchedule(5, extra_steps=2)
    _, exact = DYffusionPipeline(interpolator, forecaster, schedule).forecast(initial, static, members=2)
    assert set(seen) == {torch.float32}
    seen.clear()
    _, reduced = DYffusionPipeline(interpolator, forecaster, schedule, precision="bfloat16").forecast(
        initial, static, members=2)
    for hook in hooks:
        hook.remove()
    assert seen and set(seen) == {torch.bfloat16}
    assert reduced.dtype == torch.float32
    relative = float((reduced - exact).abs().max() / exact.abs().max())
    assert 0 < relative < 0.05
    with pytest.raises(ValueError, match="precision"):
        DYffusionPipeline(interpolator, forecaster, schedule, precision="float16")
