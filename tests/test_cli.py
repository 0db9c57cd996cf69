"""The command line end to end on tiny data, and its answers to bad input."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr
from safetensors.torch import load_file

from dyffusion.cli.main import main
from dyffusion.run import Run
from tests.conftest import TINY_NETWORK


def test_fit_writes_a_self_contained_run(tiny_run):
    for name in ("config.yaml", "data.json", "interpolator.safetensors", "forecaster.safetensors", "training.json"):
        assert (tiny_run / name).exists()
    summary = json.loads((tiny_run / "training.json").read_text())
    assert summary["interpolator"]["best_val_crps"] > 0 and summary["forecaster"]["best_val_crps"] > 0
    run = Run.load(tiny_run)
    assert run.horizon == 4 and [c.name for c in run.spec.channels] == ["p_x", "p_y", "q_x", "q_y"]


def test_evaluate_writes_metrics_per_lead_time(tiny_run, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", str(tiny_run), "--members", "3", "--rollout", "10", "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["lead_times"] == list(range(1, 11))
    for key in ("crps", "crps_fair", "mse", "ssr", "ssr_corrected"):
        assert len(metrics[key]) == 10 and all(np.isfinite(metrics[key]))
        assert np.isclose(metrics["mean"][key], np.mean(metrics[key]))
    assert metrics["members"] == 3 and metrics["initial_conditions"] == 2 and metrics["sampling_seconds"] > 0
    # The fair CRPS subtracts a larger spread term than the paper's estimator.
    assert all(fair <= paper for fair, paper in zip(metrics["crps_fair"], metrics["crps"]))
    assert (out / "metrics_vs_lead_time.png").exists() and (out / "report.md").exists()
    assert metrics["area_weighting"] == "none"  # x/y grid without a latitude coordinate
    assert metrics["precision"] == "float32"


def test_evaluate_in_bfloat16_scores_like_float32(tiny_run, tmp_path):
    """``--precision bfloat16`` is recorded and, for the same seed, scores within bfloat16's rounding (relative
    2^-8 per operation) of the float32 evaluation."""
    scores = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        assert main(["evaluate", str(tiny_run), "--members", "3", "--rollout", "4", "--out", str(out), "--quiet",
                     "--precision", precision]) == 0
        scores[precision] = json.loads((out / "metrics.json").read_text())
    assert scores["bfloat16"]["precision"] == "bfloat16"
    assert scores["bfloat16"]["mean"]["crps"] == pytest.approx(scores["float32"]["mean"]["crps"], rel=0.05)


def test_forecast_writes_the_data_layout_and_applies_boundary_conditions(tiny_run, spring_data, tmp_path):
    out = tmp_path / "forecast.nc"
    assert main(["forecast", str(tiny_run), "--data", str(spring_data), "--members", "3", "--steps", "6",
                 "--out", str(out), "--quiet"]) == 0
    forecast = xr.open_dataset(out)
    assert forecast["q"].dims == ("member", "init_time", "lead_time", "component", "y", "x")
    assert forecast.sizes["member"] == 3 and forecast["lead_step"].values.tolist() == [1, 2, 3, 4, 5, 6]
    assert {"truth_p", "truth_q"} <= set(forecast.data_vars)
    truth = xr.open_dataset(spring_data / "test.nc")
    # Lead times in the units of the data's time coordinate: the run uses every 2nd frame.
    step = 2 * float(truth["time"][1] - truth["time"][0])
    np.testing.assert_allclose(forecast["lead_time"].values, step * np.arange(1, 7), rtol=1e-6)
    np.testing.assert_allclose(forecast["init_time"].values, truth["time"].values[:1])
    np.testing.assert_allclose(forecast["valid_time"].values[0], truth["time"].values[0] + step * np.arange(1, 7))
    fixed = truth["fixed_mask"].values > 0.5
    # Fixed particles stay exactly at rest in every member and lead time.
    np.testing.assert_array_equal(forecast["q"].values[..., fixed],
                                  np.broadcast_to(truth["q"].values[0, 0][..., fixed], forecast["q"].values[..., fixed].shape))
    assert (forecast["p"].values[..., fixed] == 0).all()
    members = forecast["q"].values
    assert np.abs(members[0] - members[1]).max() > 0  # MC dropout makes members differ


def test_forecast_at_real_valued_times(tiny_run, spring_data, tmp_path):
    out = tmp_path / "times.nc"
    assert main(["forecast", str(tiny_run), "--data", str(spring_data), "--members", "2", "--times", "0.5,1,2.5,4",
                 "--out", str(out), "--quiet"]) == 0
    assert xr.open_dataset(out)["lead_step"].values.tolist() == [0.5, 1, 2.5, 4]


@pytest.mark.parametrize("args,message", [
    (["evaluate", "{tmp}/missing"], "does not exist"),
    (["evaluate", "{run}", "--data", "{tmp}/nothing.nc"], "does not exist"),
    (["evaluate", "{run}", "--members", "0"], "members must be >= 1"),
    (["evaluate", "{run}", "--rollout", "500"], "too short for a rollout"),
    (["fit", "{data}", "--out", "{tmp}/r", "--horizon", "100", "--max-epochs", "1"], "too short for horizon 100"),
    (["fit", "{data}", "--out", "{tmp}/r", "--config", "no-such-preset"], "neither a YAML file nor a preset"),
    (["fit", "{data}", "--out", "{tmp}/r", "--set", "interpolator.dropout=0.1"], "unknown key"),
    (["fit", "{data}/train.nc", "--out", "{tmp}/r", "--max-epochs", "1"], "give --split-by"),
    (["fit", "{data}", "--out", "{tmp}/r", "--split-by", "time"], "directory of split files"),
    (["fit", "{data}/train.nc", "--out", "{tmp}/r", "--val-fraction", "0.6", "--test-fraction", "0.5"], "nothing to train"),
    (["evaluate", "{run}", "--lat-weighting"], "needs a latitude coordinate"),
    (["forecast", "{run}", "--init-times", "99", "--out", "{tmp}/f.nc"], "not a time of the data"),
    (["forecast", "{run}", "--start", "1000", "--out", "{tmp}/f.nc"], "start 1000 outside"),
])
def test_bad_input_gets_one_clear_line(args, message, tiny_run, spring_data, tmp_path, capsys):
    filled = [a.format(tmp=tmp_path, run=tiny_run, data=spring_data) for a in args]
    assert main(filled) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]


def test_incomplete_or_foreign_runs_are_refused(tiny_run, spring_data, tmp_path, capsys):
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.yaml").write_text((tiny_run / "config.yaml").read_text())
    assert main(["evaluate", str(incomplete), "--data", str(spring_data)]) == 2
    assert "incomplete" in capsys.readouterr().err
    # Data of another shape: a grid the run was not trained on.
    other = xr.open_dataset(spring_data / "test.nc").isel(x=slice(0, 8))
    other.to_netcdf(tmp_path / "test.nc")
    assert main(["evaluate", str(tiny_run), "--data", str(tmp_path), "--members", "2"]) == 2
    assert "grid (10, 8) instead of (10, 10)" in capsys.readouterr().err


def test_console_script_exits_nonzero_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dyffusion.cli.main", "evaluate", str(tmp_path / "none")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "does not exist" in result.stderr


def test_checkpoint_is_the_epoch_with_the_best_validation_crps(spring_data, tmp_path):
    run = tmp_path / "run"
    assert main(["fit", str(spring_data), "--out", str(run), "--horizon", "4", "--max-epochs", "4", "--quiet",
                 "--stage", "interpolator", "--set", "data.time_stride=2", "--set", "trainer.batches_per_epoch=2",
                 "--set", "interpolator.batch_size=4", "--set", "interpolator.val_members=3",
                 "--set", "interpolator.learning_rate=0.01", *TINY_NETWORK]) == 0
    with open(run / "logs" / "interpolator" / "version_0" / "metrics.csv") as handle:
        logged = [float(row["val/crps"]) for row in csv.DictReader(handle) if row.get("val/crps")]
    assert len(logged) == 4
    summary = json.loads((run / "training.json").read_text())
    assert summary["interpolator"]["best_val_crps"] == pytest.approx(min(logged))
    best = torch.load(run / "checkpoints" / "interpolator" / "best.ckpt", weights_only=True)["state_dict"]
    saved = load_file(str(run / "interpolator.safetensors"))
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, best[f"interpolator.{name}"])
    assert not (run / "forecaster.safetensors").exists()


def test_nan_in_training_data_is_named(spring_data, tmp_path, capsys):
    for split in ("train", "val"):
        ds = xr.open_dataset(spring_data / f"{split}.nc").load()
        if split == "train":
            ds["p"][1, 7, 0, 3, 3] = np.nan
        ds.to_netcdf(tmp_path / f"{split}.nc")
    assert main(["fit", str(tmp_path), "--out", str(tmp_path / "run"), "--max-epochs", "1"]) == 2
    error = capsys.readouterr().err
    assert "'p' has NaN at trajectory 1, time index 7" in error and "Traceback" not in error


def test_same_seed_gives_bit_identical_weights_and_metrics(spring_data, tmp_path):


    results = []
    for name in ("a", "b"):
        run = tmp_path / name
        assert main(["fit", str(spring_data), "--out", str(run), "--horizon", "4", "--max-epochs", "1", "--quiet",
                     "--seed", "7", "--set", "data.time_stride=2", "--set", "trainer.batches_per_epoch=2",
                     "--set", "forecaster.conditioning=data+noise", "--set", "forecaster.extra_steps=2",
                     "--set", "interpolator.val_members=2", "--set", "forecaster.val_members=2", *TINY_NETWORK]) == 0
        assert main(["evaluate", str(run), "--members", "2", "--seed", "3", "--out", str(run / "eval"), "--quiet"]) == 0
        metrics = json.loads((run / "eval" / "metrics.json").read_text())
        results.append(({stage: load_file(str(run / f"{stage}.safetensors")) for stage in ("interpolator", "forecaster")},
                        metrics["crps"]))
    (weights_a, crps_a), (weights_b, crps_b) = results
    for stage in weights_a:
        for key in weights_a[stage]:
            assert torch.equal(weights_a[stage][key], weights_b[stage][key]), f"{stage}.{key}"
    assert crps_a == crps_b


def test_bfloat16_mixed_precision_trains_both_stages(spring_data, tmp_path):
    """``trainer.precision: bf16-mixed`` (Lightning's CPU autocast) trains both stages to finite weights: the
    frozen interpolator's bfloat16 output is cast to the forecaster's float32 state."""
    run = tmp_path / "run"
    assert main(["fit", str(spring_data), "--out", str(run), "--horizon", "4", "--max-epochs", "1", "--quiet",
                 "--set", "trainer.precision=bf16-mixed", "--set", "data.time_stride=2",
                 "--set", "trainer.batches_per_epoch=2", "--set", "interpolator.val_members=2",
                 "--set", "forecaster.val_members=2", *TINY_NETWORK]) == 0
    for stage in ("interpolator", "forecaster"):
        weights = load_file(str(run / f"{stage}.safetensors"))
        assert all(tensor.dtype == torch.float32 and torch.isfinite(tensor).all() for tensor in weights.values())


def test_benchmark_runs_the_repositorys_script_with_its_part(capfd):
    """``dyffusion benchmark memory`` is ``benchmarks/memory.py horizons``: its own help comes back, exit 0."""
    assert main(["benchmark", "memory", "--help"]) == 0
    out = capfd.readouterr().out
    assert "memory.py horizons" in out and "--horizons" in out


def test_benchmark_outside_a_clone_is_one_clear_line(tmp_path, monkeypatch, capsys):
    import dyffusion.cli.commands as cli

    monkeypatch.setattr(cli, "BENCHMARKS_DIR", tmp_path / "benchmarks")
    assert main(["benchmark", "paper", "--quick"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "source repository" in error and "paper.py" in error
