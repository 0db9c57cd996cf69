"""Continuous-time evaluation: DYffusion's real-valued lead times against linear interpolation of its own forecasts."""

import json
import shutil

import numpy as np
import pytest
import torch

from dyffusion.cli.main import main
from dyffusion.data.splits import open_split
from dyffusion.evaluation.continuous import evaluate_continuous, fine_lead_times, in_between_means, interpolate_linearly
from dyffusion.method.sampler import sample_horizon
from dyffusion.method.schedule import StepSchedule, sampling_steps
from dyffusion.run import Run
from tests.test_sampling import DECAY, HORIZON, OMEGA, oracles


def test_fine_lead_times_are_every_stored_frame_of_the_first_horizon():
    assert fine_lead_times(2, 4) == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert fine_lead_times(3, 1) == [1.0, 2.0, 3.0]
    times = fine_lead_times(16, 8)
    assert len(times) == 128 and [t for t in times if t.is_integer()] == [float(k) for k in range(1, 17)]


def test_linear_interpolation_of_an_ensemble_on_hand_made_numbers():
    initial = torch.tensor([1.0]).reshape(1, 1, 1, 1)  # (B, C, H, W)
    members = torch.tensor([[3.0, 7.0], [-1.0, 5.0]]).reshape(2, 1, 2, 1, 1, 1)  # (M, B, L, C, H, W) at times 1, 2
    times = [0, 0.25, 0.5, 1, 1.5, 2]
    linear = interpolate_linearly(initial, members, [1, 2], times)
    assert linear.shape == (2, 1, 6, 1, 1, 1)
    assert linear.flatten(1).tolist() == [[1, 1.5, 2, 3, 5, 7], [1, 0.5, 0, -1, 2, 5]]


def test_linear_interpolation_returns_the_frames_at_the_knots_bit_for_bit():
    torch.manual_seed(0)
    initial, ensemble = torch.randn(3, 2, 4, 5), torch.randn(4, 3, 5, 2, 4, 5)
    times = fine_lead_times(5, 3)
    linear = interpolate_linearly(initial, ensemble, [1, 2, 3, 4, 5], [0, *times])
    assert torch.equal(linear[:, :, 0], initial.expand(4, -1, -1, -1, -1))
    assert torch.equal(linear[:, :, 3::3], ensemble)


def test_linear_interpolation_refuses_times_outside_the_knots_and_unordered_knots():
    initial, ensemble = torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 2, 1, 1, 1)
    with pytest.raises(ValueError, match="must lie in"):
        interpolate_linearly(initial, ensemble, [1, 2], [2.5])
    with pytest.raises(ValueError, match="increasing knots"):
        interpolate_linearly(initial, ensemble, [2, 1], [0.5])


def test_means_over_the_in_between_lead_times_leave_the_integer_ones_out():
    scores = {key: [1.0, 100.0, 3.0, 200.0] for key in ("crps", "crps_fair", "mse", "rmse", "ssr", "ssr_corrected")}
    assert in_between_means(scores, [0.5, 1.0, 1.5, 2.0]) == {key: 2.0 for key in scores}


def test_oracle_interpolator_is_exact_in_between_and_linear_interpolation_has_its_closed_form_error():
    """The damped rotation x(t) = e^{(-DECAY + i OMEGA) t} x(0) (the two channels as one complex number): the
    exact networks give every real-valued lead time exactly, and linear interpolation of the exact integer-time
    states is off by x(0) ((1 - w) e^{mu n} + w e^{mu (n + 1)} - e^{mu t}) at t = n + w, computed here in numpy."""
    torch.manual_seed(0)
    stride = 4
    initial = torch.randn(3, 2, 2, 3, dtype=torch.float64)
    times = fine_lead_times(HORIZON, stride)
    schedule = StepSchedule(HORIZON)
    lead_times, frames = sample_horizon(*oracles(initial), initial, schedule, sampling_steps(schedule),
                                        output_times=times)
    assert lead_times == times

    mu = complex(-DECAY, OMEGA)
    start = initial[:, 0].numpy() + 1j * initial[:, 1].numpy()  # (B, H, W)
    t = np.asarray(times)
    exact = start[:, None] * np.exp(mu * t)[None, :, None, None]  # (B, T, H, W)
    np.testing.assert_allclose(frames[:, :, 0].numpy() + 1j * frames[:, :, 1].numpy(), exact, rtol=0, atol=1e-10)

    knots = list(range(1, HORIZON + 1))
    linear = interpolate_linearly(initial, frames[None, :, [stride * k - 1 for k in knots]], knots, times)[0]
    whole, weight = np.floor(t), t - np.floor(t)
    factor = (1 - weight) * np.exp(mu * whole) + weight * np.exp(mu * (whole + 1)) - np.exp(mu * t)
    error = start[:, None] * factor[None, :, None, None]
    np.testing.assert_allclose((linear - frames)[:, :, 0].numpy() + 1j * (linear - frames)[:, :, 1].numpy(), error,
                               rtol=0, atol=1e-10)
    between = weight > 0
    assert np.all(factor[~between] == 0) and np.all(np.abs(factor[between]) > 1e-3)


def test_evaluate_continuous_end_to_end(tiny_run, tmp_path, capsys):
    out = tmp_path / "continuous"
    assert main(["evaluate", str(tiny_run), "--continuous", "--members", "3", "--out", str(out), "--quiet"]) == 0
    assert "linear interpolation" in capsys.readouterr().out
    for name in ("continuous.json", "continuous.md", "continuous.png"):
        assert (out / name).stat().st_size > 0
    result = json.loads((out / "continuous.json").read_text())
    assert result["time_stride"] == 2 and result["horizon"] == 4 and result["members"] == 3
    assert result["lead_times"] == [k / 2 for k in range(1, 9)] and result["stored_frames"] == list(range(1, 9))
    whole = [i for i, time in enumerate(result["lead_times"]) if time.is_integer()]
    for key in ("crps", "crps_fair", "mse", "ssr", "ssr_corrected"):
        # The same members at the run's own lead times: both methods score identically there.
        assert [result["dyffusion"][key][i] for i in whole] == [result["linear"][key][i] for i in whole]
        for method in ("dyffusion", "linear"):
            assert len(result[method][key]) == 8 and np.all(np.isfinite(result[method][key]))
            assert np.isfinite(result["in_between"][method][key])
        ratio = result["in_between"]["dyffusion"][key] / result["in_between"]["linear"][key]
        assert result["in_between"]["ratio"][key] == pytest.approx(ratio)
    assert "conclusion" in (out / "continuous.md").read_text()


def test_evaluate_continuous_refuses_runs_without_frames_in_between(tiny_run, tmp_path, capsys):
    every_frame = tmp_path / "every-frame"
    shutil.copytree(tiny_run, every_frame)
    description = json.loads((every_frame / "data.json").read_text())
    (every_frame / "data.json").write_text(json.dumps({**description, "time_stride": 1}))
    assert main(["evaluate", str(every_frame), "--continuous", "--members", "2", "--quiet"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no stored frames lie between its lead times" in error[0]


def test_evaluate_continuous_refuses_other_methods(tiny_run, spring_data):
    run = Run.load(tiny_run)
    run.config.method = "dropout"
    with pytest.raises(ValueError, match="needs a DYffusion run"):
        evaluate_continuous(run, open_split(spring_data, "test"))


def test_evaluate_continuous_refuses_options_it_does_not_use(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run), "--continuous", "--rollout", "3"]) == 2
    assert "drop --rollout" in capsys.readouterr().err
