"""The paper's baselines through the same CLI, data layer, metrics and files as DYffusion."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

from dyffusion.baselines.gaussian_diffusion import NoiseSchedule, ddim_sample, diffusion_loss
from dyffusion.baselines.multistep import MultiStepPipeline, choose_perturbation_scale
from dyffusion.baselines.video_diffusion import FrameStackDenoiser
from dyffusion.cli.main import main
from dyffusion.networks import NetworkConfig, build_network
from dyffusion.run import Run
from tests.conftest import TINY_NETWORK

BASELINE_NETWORK = ["--set", "baseline.network={name: convnet, width: 8, kernel_sizes: [3, 3], dropout: 0.2}"]


@pytest.fixture(scope="module")
def baseline_runs(spring_data, tmp_path_factory):
    runs = {}
    for method in ("dropout", "perturbation", "ddpm", "mcvd"):
        run = tmp_path_factory.mktemp(method) / "run"
        assert main(["fit", str(spring_data), "--out", str(run), "--method", method, "--horizon", "4",
                     "--max-epochs", "1", "--quiet", "--set", "data.time_stride=2",
                     "--set", "trainer.batches_per_epoch=3", "--set", "baseline.batch_size=8",
                     "--set", "baseline.val_members=3", "--set", "baseline.val_ddim_steps=5",
                     "--set", "baseline.perturbation_scales=[0.0, 0.1, 0.3]", *BASELINE_NETWORK]) == 0
        runs[method] = run
    return runs


@pytest.mark.parametrize("method,evaluations", [("dropout", 4), ("perturbation", 4), ("ddpm", 1000), ("mcvd", 1000)])
def test_every_method_evaluates_with_the_same_schema(method, evaluations, baseline_runs, tiny_run, tmp_path):
    out = tmp_path / method
    assert main(["evaluate", str(baseline_runs[method]), "--members", "3", "--rollout", "6", "--out", str(out),
                 "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    reference_out = tmp_path / "dyffusion"
    assert main(["evaluate", str(tiny_run), "--members", "3", "--rollout", "6", "--out", str(reference_out),
                 "--quiet"]) == 0
    reference = json.loads((reference_out / "metrics.json").read_text())
    assert set(metrics) == set(reference) and metrics["method"] == method
    assert metrics["lead_times"] == list(range(1, 7)) and all(np.isfinite(metrics["crps"]))
    # Two horizons of 4 cover the 6 lead times: the cost is per member and rollout.
    assert metrics["network_evaluations"] == pytest.approx(2 * evaluations)


@pytest.mark.parametrize("method", ["dropout", "perturbation", "ddpm", "mcvd"])
def test_every_method_forecasts_the_data_layout_with_spread(method, baseline_runs, spring_data, tmp_path):
    run = Run.load(baseline_runs[method])
    if method == "perturbation":
        assert run.config.baseline.perturbation_scale in (0.0, 0.1, 0.3)
        run.config.baseline.perturbation_scale = 0.1  # a spread to observe, whatever validation chose
        pipeline = run.pipeline()
        initial, static = torch.randn(2, 4, 10, 10), torch.zeros(2, 1, 10, 10)
        _, frames = pipeline.forecast(initial, static, members=3)
        assert frames.shape == (3, 2, 4, 4, 10, 10) and (frames[0] - frames[1]).abs().max() > 0
        return
    out = tmp_path / "forecast.nc"
    assert main(["forecast", str(baseline_runs[method]), "--data", str(spring_data), "--members", "3",
                 "--steps", "5", "--out", str(out), "--quiet"]) == 0
    forecast = xr.open_dataset(out)
    assert forecast["q"].dims == ("member", "init_time", "lead_time", "component", "y", "x")
    assert forecast.sizes["lead_time"] == 5 and np.abs(forecast["q"][0] - forecast["q"][1]).max() > 0


def test_ddim_option_reduces_the_diffusion_cost(baseline_runs, tmp_path):
    out = tmp_path / "ddim"
    assert main(["evaluate", str(baseline_runs["ddpm"]), "--members", "2", "--rollout", "4", "--ddim-steps", "10",
                 "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["network_evaluations"] == 10 and metrics["sampler"] == "ddim (10 steps)"


def test_stage_option_is_for_dyffusion_only(spring_data, tmp_path, capsys):
    assert main(["fit", str(spring_data), "--out", str(tmp_path / "r"), "--method", "ddpm", "--stage",
                 "interpolator", "--max-epochs", "1", *TINY_NETWORK]) == 2
    assert "single stage" in capsys.readouterr().err


class Persistence(nn.Module):
    """G(x_t, j) = x_t: a known model, so the best perturbation is the truth's own scatter."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, initial, time, static):
        return initial


def test_perturbation_search_picks_the_scale_of_the_truths_scatter():
    torch.manual_seed(0)
    scatter, horizon = 0.2, 3
    batches = []
    for _ in range(3):
        initial = torch.randn(8, 1, 16, 16)
        window = torch.cat([initial[:, None], initial[:, None] + scatter * torch.randn(8, horizon, 1, 16, 16)], 1)
        batches.append({"initial": initial, "window": window, "static": torch.zeros(8, 0, 16, 16),
                        "valid": torch.ones(8, 16, 16, dtype=torch.bool)})
    scales = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8]
    chosen, scores = choose_perturbation_scale(Persistence(), batches, horizon, scales, members=32)
    assert chosen == scatter
    assert scores[0.0] > scores[0.1] > scores[0.2] < scores[0.4] < scores[0.8]


def test_multistep_pipeline_answers_real_valued_times_and_refuses_others():
    pipeline = MultiStepPipeline(Persistence(), horizon=4)
    times, frames = pipeline.forecast(torch.randn(2, 1, 3, 3), torch.zeros(2, 0, 3, 3), 2, output_times=[0.5, 4])
    assert times == [0.5, 4] and frames.shape == (2, 2, 2, 1, 3, 3)
    with pytest.raises(ValueError):
        pipeline.forecast(torch.randn(2, 1, 3, 3), torch.zeros(2, 0, 3, 3), 2, output_times=[5])


def test_denoiser_width_is_sized_to_the_stacked_outputs_and_a_narrower_one_is_refused(spring_data, tmp_path, capsys):
    """The frame-stack denoiser predicts h x C channels through a linear head: unset, its width is raised to them;
    an explicit narrower width is refused in one line before any file of the run is written."""
    network = NetworkConfig(name="convnet", width=8, kernel_sizes=(3, 3))
    assert FrameStackDenoiser(network, 4, 1, horizon=4).network.conv_out.in_channels == 16
    assert FrameStackDenoiser(network, 4, 1, horizon=1).network.conv_out.in_channels == 8  # already wide enough
    assert FrameStackDenoiser(network, 4, 1, horizon=4, width=24).network.conv_out.in_channels == 24
    run = tmp_path / "run"
    code = main(["fit", str(spring_data), "--out", str(run), "--method", "ddpm", "--horizon", "4", "--max-epochs",
                 "1", "--quiet", *BASELINE_NETWORK, "--set", "baseline.denoiser_width=12"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "narrower than the 16 channels" in lines[0], lines
    assert not run.exists()


def _gaussian_ddim_samples(denoiser: nn.Module, std: float, steps: int = 1500) -> torch.Tensor:
    """Train ``denoiser`` on data N(0, std^2) per channel and pixel (the condition carries nothing), then draw 256
    DDIM samples of 20 steps; (256, K, 6, 6)."""
    torch.manual_seed(0)
    schedule = NoiseSchedule.cosine(1000)
    outputs = denoiser.horizon * denoiser.channels
    optimiser = torch.optim.Adam(denoiser.parameters(), lr=3e-3)
    decay = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - step / steps)
    condition = torch.zeros(64, denoiser.channels, 6, 6)
    for _ in range(steps):
        loss = diffusion_loss(denoiser, std * torch.randn(64, outputs, 6, 6), condition, schedule)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        decay.step()
    return ddim_sample(denoiser.eval(), torch.zeros(256, denoiser.channels, 6, 6), (256, outputs, 6, 6), schedule,
                       20, clip=5.0)


def test_a_sized_denoiser_recovers_gaussian_data_where_a_narrow_one_lands_on_the_clip():
    """Data N(0, 0.5^2) in h x C = 8 channels. With the exact noise predictor, 20 DDIM steps give a sample std of
    0.46 (tests/test_gaussian_diffusion.py checks the sampler); a briefly trained denoiser sized to its outputs
    comes near it with almost no sample on the +-5 clip, while one whose head reads 2 features (the construction
    issue 17 found: width 32 for 64 outputs) takes the unexplained noise for signal and saturates."""
    network = NetworkConfig(name="convnet", width=4, kernel_sizes=(1, 1), time_embedding_dim=16)
    sized = FrameStackDenoiser(network, channels=2, static_channels=0, horizon=4)
    assert sized.network.conv_out.in_channels == 8
    samples = _gaussian_ddim_samples(sized, 0.5)
    channel_std = samples.std(dim=(0, 2, 3))
    assert ((channel_std > 0.4) & (channel_std < 0.8)).all(), channel_std
    assert (samples.abs() >= 5.0 - 1e-6).float().mean() < 0.002

    narrow = FrameStackDenoiser(network, channels=2, static_channels=0, horizon=4)
    narrow.network = build_network(replace(network, width=2), 8 + 2, 8)  # bypasses the sizing on purpose
    samples = _gaussian_ddim_samples(narrow, 0.5)
    assert samples.std() > 2.0 and (samples.abs() >= 5.0 - 1e-6).float().mean() > 0.2
