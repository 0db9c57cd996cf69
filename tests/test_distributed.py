"""Several processes on the CPU (Lightning DDP over gloo): ``fit`` trains like one process with the processes'
batches together, into one consistent run directory; sharded ``evaluate`` and ``forecast`` give exactly what one
process gives.

A multi-process command runs as its own ``python -m dyffusion.cli.main`` process: Lightning starts the second
process by running that command line again. Each gets one thread (``OMP_NUM_THREADS=1``), and so does the
single-process evaluation it is compared with (in this process): float sums depend on the number of threads.
"""

import csv
import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from safetensors.torch import load_file

from dyffusion.cli.main import main
from dyffusion.run import Run
from tests.conftest import TINY_NETWORK

PROCESSES = ["--devices", "2", "--accelerator", "cpu", "--strategy", "ddp"]
# 2 epochs of 10 steps per stage, logged train/loss at steps 9 and 19; 5 validation windows. The 51 training
# windows hold 6 batches of 8: each epoch shuffles them twice end to end, on both processes alike.
# sampling.max_batch 6 = 2 initial conditions of 3 members per batch, so that evaluation has several batches.
FIT_OPTIONS = ["--horizon", "4", "--max-epochs", "2", "--quiet", "--set", "data.time_stride=2",
               "--set", "trainer.batches_per_epoch=10", "--set", "interpolator.val_members=4",
               "--set", "forecaster.val_members=3", "--set", "sampling.max_batch=6", *TINY_NETWORK]
GLOBAL_BATCH = 8  # one process with batch 8 against two with batch 4: the same windows in every step

# The processes draw their own dropout masks, interpolation times and noise, so DDP training is not the
# single-process run bit for bit: it differs by random draws alone (same initial weights, same windows per step).
# Train loss: one step's loss on a fixed batch of 8 windows, redrawn with 300 seeds at the trained weights, has a
# standard deviation of 2.3% (interpolator) and 3.0% (forecaster) of its mean. Two independent draws differ by
# sqrt(2) * 3% = 4.2%, the mean of the 2 logged steps by 3%; 12% is 4 of those standard deviations.
LOSS_RTOL = 0.12
# Best val CRPS: redrawing the validation ensembles alone moves it by 0.034% (interpolator) and 0.026%
# (forecaster) of its value; DDP and single-process runs differed by at most 0.07% over four seeds. 0.5% keeps a
# margin for the training draws and still fails on what DDP gets wrong easily: validation windows scored twice
# to even out the processes (5% here) or process means averaged with the wrong weights (25% here).
CRPS_RTOL = 0.005
TIMINGS = ("sampling_seconds", "sampling_seconds_per_initial_condition")


def _cli(*args: str, timeout: float = 300) -> str:
    """Run ``dyffusion ARGS`` in a new session (a hung process group is killed whole); returns its output."""
    process = subprocess.Popen([sys.executable, "-m", "dyffusion.cli.main", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, output
    return output


@contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit(data: Path, run: Path, batch_size: int) -> list[str]:
    return ["fit", str(data), "--out", str(run), *FIT_OPTIONS, "--set", f"interpolator.batch_size={batch_size}",
            "--set", f"forecaster.batch_size={batch_size}"]


@pytest.fixture(scope="module")
def runs(spring_data, tmp_path_factory):
    """(two-process run, single-process run) of the same configuration and seed."""
    root = tmp_path_factory.mktemp("distributed")
    ddp, single = root / "ddp", root / "single"
    _cli(*_fit(spring_data, ddp, GLOBAL_BATCH // 2), *PROCESSES)
    assert main(_fit(spring_data, single, GLOBAL_BATCH)) == 0
    return ddp, single


def _logged(run: Path, stage: str, key: str) -> list[float]:
    with open(run / "logs" / stage / "version_0" / "metrics.csv") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


def test_ddp_fit_trains_like_one_process_with_both_batches(runs):
    ddp, single = runs
    summaries = [json.loads((run / "training.json").read_text()) for run in runs]
    for stage in ("interpolator", "forecaster"):
        # As many steps as one process with the global batch: each process took half the windows of every step.
        for key in ("epochs", "steps", "finished"):
            assert summaries[0][stage][key] == summaries[1][stage][key], f"{stage}.{key}"
        losses = [np.mean(_logged(run, stage, "train/loss")) for run in runs]
        assert len(_logged(ddp, stage, "train/loss")) == 2
        assert losses[0] == pytest.approx(losses[1], rel=LOSS_RTOL), stage
        crps = [summary[stage]["best_val_crps"] for summary in summaries]
        assert crps[0] == pytest.approx(crps[1], rel=CRPS_RTOL), stage


def test_ddp_fit_writes_one_consistent_run_directory(runs):
    ddp, single = runs
    files = sorted(str(path.relative_to(ddp)) for path in ddp.rglob("*") if path.is_file())
    assert files == sorted(str(path.relative_to(single)) for path in single.rglob("*") if path.is_file())
    assert not [name for name in files if name.endswith(".tmp")]
    assert sorted(path.name for path in (ddp / "logs").glob("*/*")) == ["version_0", "version_0"]
    trainer = yaml.safe_load((ddp / "config.yaml").read_text())["trainer"]
    assert (trainer["devices"], trainer["accelerator"], trainer["strategy"]) == (2, "cpu", "ddp")
    assert json.loads((ddp / "data.json").read_text()) == json.loads((single / "data.json").read_text())
    summary = json.loads((ddp / "training.json").read_text())
    # The sampling steps search: the processes' shares scored together, rank 0's choice written once.
    search = summary["sampling_steps"]
    assert search["initial_conditions"] == 1 and search["chosen"] in [c["name"] for c in search["candidates"]]
    assert yaml.safe_load((ddp / "config.yaml").read_text())["sampling"]["steps"] == search["setting"]
    for stage in ("interpolator", "forecaster"):
        assert summary[stage]["finished"]
        # Every process validated on its share of the windows; the logged epoch means are over all of them.
        assert summary[stage]["best_val_crps"] == pytest.approx(min(_logged(ddp, stage, "val/crps")))
        best = torch.load(ddp / "checkpoints" / stage / "best.ckpt", weights_only=True)["state_dict"]
        for name, tensor in load_file(str(ddp / f"{stage}.safetensors")).items():
            torch.testing.assert_close(tensor, best[f"{stage}.{name}"], rtol=0, atol=0)
    assert Run.load(ddp).horizon == 4


def test_sharded_evaluate_and_forecast_equal_one_process(runs, spring_data, tmp_path):
    """Exactly equal: each batch of initial conditions is seeded by (seed, batch index) and sampled alike by
    whichever process has it (one thread each), and rank 0 adds up the batches' score sums in batch order."""
    ddp = runs[0]  # evaluate and forecast work on a run trained with DDP
    evaluate = ["evaluate", str(ddp), "--members", "3", "--rollout", "6", "--inits", "5", "--seed", "2",
                "--save-forecasts"]  # 3 batches: processes 0 and 1 take 2 and 1
    assert "Starting with 2 processes" in _cli(*evaluate, "--out", str(tmp_path / "sharded"), *PROCESSES)
    with _one_thread():
        assert main([*evaluate, "--out", str(tmp_path / "single"), "--quiet"]) == 0
    sharded, single = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("sharded", "single"))
    for key in (*TIMINGS, "forecasts"):
        sharded.pop(key), single.pop(key)
    assert sharded == single and sharded["initial_conditions"] == 5
    xr.testing.assert_identical(xr.open_dataset(tmp_path / "sharded" / "forecasts.nc"),
                                xr.open_dataset(tmp_path / "single" / "forecasts.nc"))
    assert (tmp_path / "sharded" / "report.md").exists()

    forecast = ["forecast", str(ddp), "--data", str(spring_data), "--members", "3", "--steps", "6", "--inits", "5",
                "--quiet"]
    _cli(*forecast, "--out", str(tmp_path / "sharded.nc"), *PROCESSES)
    with _one_thread():
        assert main([*forecast, "--out", str(tmp_path / "single.nc")]) == 0
    xr.testing.assert_identical(xr.open_dataset(tmp_path / "sharded.nc"), xr.open_dataset(tmp_path / "single.nc"))


def test_more_processes_than_validation_windows_is_one_clear_line(spring_data, tmp_path, capsys):
    # 5 validation windows; a process without one would leave the others waiting for its scores.
    options = ["--devices", "6", *PROCESSES[2:]]
    assert main(["fit", str(spring_data), "--out", str(tmp_path / "run"), *FIT_OPTIONS, *options]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == ["dyffusion fit: error: 5 validation windows cannot be shared by 6 processes: each needs one; "
                     "use fewer --devices or more validation data"]
