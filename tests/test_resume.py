"""``fit --resume``: a fit killed with SIGKILL mid-training and resumed ends where an uninterrupted fit ends."""

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from dyffusion.cli.main import main
from dyffusion.config import read_config
from tests.conftest import TINY_NETWORK

# 3 epochs of 3 batches per stage; each epoch ends with a checkpoint (RUN/checkpoints/<stage>/last.ckpt).
FIT_OPTIONS = ["--horizon", "4", "--max-epochs", "3", "--quiet", "--set", "data.time_stride=2",
               "--set", "trainer.batches_per_epoch=3", "--set", "interpolator.batch_size=8",
               "--set", "forecaster.batch_size=8", "--set", "interpolator.val_members=2",
               "--set", "forecaster.val_members=2", *TINY_NETWORK]
WEIGHTS = ("interpolator.safetensors", "forecaster.safetensors")


def _fit(data: Path, run: Path, *options: str) -> list[str]:
    return ["fit", str(data), "--out", str(run), *FIT_OPTIONS, *options]


def _start(data: Path, run: Path, log: Path, *options: str) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "dyffusion.cli.main", *_fit(data, run, *options)],
                                stdout=handle, stderr=handle)


def _kill_once_exists(process: subprocess.Popen, path: Path, log: Path, timeout: float = 300) -> None:
    """SIGKILL ``process`` as soon as ``path`` exists (checkpoints are renamed into place, so it is whole)."""
    deadline = time.monotonic() + timeout
    try:
        while not path.exists():
            assert process.poll() is None, f"fit ended before {path} existed:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no {path} after {timeout} s"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)  # on a failed wait too: no fit outlives the test
        process.wait()
    assert process.returncode == -signal.SIGKILL, "fit finished before the kill: it did not die mid-training"


def _finished(run: Path) -> dict[str, bool]:
    summary = json.loads((run / "training.json").read_text())
    return {stage: bool(summary.get(stage, {}).get("finished")) for stage in ("interpolator", "forecaster")}


def _assert_whole(run: Path) -> None:
    """Every file of the run parses or loads: the kill cut no write short."""
    read_config(run / "config.yaml")
    for path in run.rglob("*"):
        # Interrupted atomic writes leave their temporary files (.NAME.XXXX.tmp), never a partial NAME.
        if path.is_dir() or (path.name.startswith(".") and path.name.endswith(".tmp")):
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
        elif path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".ckpt":
            torch.load(path, map_location="cpu", weights_only=True)


def _validation_history(run: Path, stage: str) -> dict[int, float]:
    """val/crps by epoch over the CSV logs of all attempts (logs/STAGE/version_N): a later attempt's redone epochs
    replace what an interrupted one logged."""
    history = {}
    for log in sorted((run / "logs" / stage).glob("version_*/metrics.csv"), key=lambda path: int(path.parent.name.removeprefix("version_"))):
        with open(log) as handle:
            history.update({int(row["epoch"]): float(row["val/crps"]) for row in csv.DictReader(handle)
                            if row.get("val/crps")})
    return history


@pytest.fixture(scope="module")
def clean_run(spring_data, tmp_path_factory):
    """The uninterrupted fit, in this process."""
    run = tmp_path_factory.mktemp("resume") / "clean"
    assert main(_fit(spring_data, run)) == 0
    return run


def test_a_killed_fit_resumes_to_the_final_state_of_an_uninterrupted_one(spring_data, clean_run, tmp_path, capsys):
    run, log = tmp_path / "killed", tmp_path / "fit.log"
    # Killed in stage 1 right after its first checkpoint. Started with --resume, as a job script that always
    # passes it would: with no checkpoint yet, that is a fresh start.
    _kill_once_exists(_start(spring_data, run, log, "--resume"), run / "checkpoints/interpolator/last.ckpt", log)
    _assert_whole(run)
    assert _finished(run) == {"interpolator": False, "forecaster": False}
    # A fit without --resume does not throw the interrupted stage away.
    assert main(_fit(spring_data, run)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "interrupted interpolator stage" in error[0] and "--resume" in error[0]

    # Resumed (stage 1 continues from its checkpoint), then killed again in stage 2 after its first checkpoint.
    _kill_once_exists(_start(spring_data, run, log, "--resume"), run / "checkpoints/forecaster/last.ckpt", log)
    _assert_whole(run)
    assert _finished(run) == {"interpolator": True, "forecaster": False}

    # Resumed to the end: stage 1 is only loaded, stage 2 continues from its checkpoint.
    assert main(_fit(spring_data, run, "--resume")) == 0
    for name in WEIGHTS:
        resumed, clean = load_file(str(run / name)), load_file(str(clean_run / name))
        assert resumed.keys() == clean.keys()
        for key in clean:
            assert torch.equal(resumed[key], clean[key]), f"{name}: {key}"
    summary, clean_summary = (json.loads((path / "training.json").read_text()) for path in (run, clean_run))
    for stage in ("interpolator", "forecaster"):
        for key in ("best_val_crps", "epochs", "steps", "finished"):
            assert summary[stage][key] == clean_summary[stage][key], f"{stage}.{key}"
        assert _validation_history(run, stage) == _validation_history(clean_run, stage), stage


def test_resuming_a_finished_run_trains_nothing(spring_data, clean_run):
    files = [clean_run / name for name in WEIGHTS] + sorted((clean_run / "checkpoints").rglob("*.ckpt"))
    before = {path: path.read_bytes() for path in files}
    # Only the budget may change on resume; finished stages stay as they are.
    assert main(_fit(spring_data, clean_run, "--resume", "--max-epochs", "5")) == 0
    assert {path: path.read_bytes() for path in files} == before
    assert _finished(clean_run) == {"interpolator": True, "forecaster": True}


def test_resume_refuses_another_configuration(spring_data, clean_run, capsys):
    config = (clean_run / "config.yaml").read_text()
    assert main(_fit(spring_data, clean_run, "--resume", "--set", "forecaster.learning_rate=0.01")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "another configuration" in error[0] and "forecaster.learning_rate" in error[0]
    assert (clean_run / "config.yaml").read_text() == config


def test_every_epoch_leaves_a_checkpoint_to_resume_from(clean_run):
    """last.ckpt is the latest epoch, not the latest improvement: a resume redoes at most one epoch."""
    for stage in ("interpolator", "forecaster"):
        last = torch.load(clean_run / "checkpoints" / stage / "last.ckpt", map_location="cpu", weights_only=True)
        summary = json.loads((clean_run / "training.json").read_text())[stage]
        assert last["global_step"] == summary["steps"] and last["epoch"] == summary["epochs"] - 1


def test_resuming_with_a_budget_already_spent_finishes_the_stage(spring_data, clean_run, tmp_path):
    """A forecaster killed after its 3rd epoch's checkpoint, before its weights were saved, resumed with
    --max-epochs 1: its budget is spent, so it keeps the best of its 3 epochs (Lightning alone refuses a
    checkpoint beyond max_epochs)."""
    run = tmp_path / "run"
    shutil.copytree(clean_run, run)
    (run / "forecaster.safetensors").unlink()
    summary = json.loads((run / "training.json").read_text())
    summary["forecaster"]["finished"] = False
    (run / "training.json").write_text(json.dumps(summary))
    assert main(_fit(spring_data, run, "--resume", "--max-epochs", "1")) == 0
    assert _finished(run) == {"interpolator": True, "forecaster": True}
    resumed, clean = (load_file(path / "forecaster.safetensors") for path in (run, clean_run))
    assert all(torch.equal(resumed[name], clean[name]) for name in clean)
