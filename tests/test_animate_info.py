"""animate (one frame per lead time), info (what a run holds), loggers of fit, and progress bars that --quiet hides."""

import importlib.util
import json
import shutil
import subprocess

import pytest
from matplotlib.animation import FFMpegWriter
from PIL import Image

from dyffusion.cli.main import main
from dyffusion.config import load_config
from dyffusion.info import run_info
from dyffusion.run import RunDir
from dyffusion.training.lightning import stage_trainer
from tests.conftest import TINY_NETWORK

BAR_MARKS = ("it/s", "lead/s", "frame/s", "%|")  # what a tqdm bar prints: rate and percentage


def _frames(path) -> int:
    with Image.open(path) as image:
        return image.n_frames


def _has_bar(text: str) -> bool:
    return any(mark in text for mark in BAR_MARKS)


def test_animation_of_a_run_has_one_frame_per_lead_time(tiny_run, spring_data, tmp_path, capfd):
    out = tmp_path / "rollout.gif"
    assert main(["animate", str(tiny_run), "--data", str(spring_data), "--members", "3", "--steps", "7",
                 "--out", str(out), "--quiet"]) == 0
    assert _frames(out) == 7
    printed = capfd.readouterr()
    assert not _has_bar(printed.out + printed.err)
    assert "7 frames" in printed.out


def test_animation_of_a_forecast_file_with_bars_unless_quiet(tiny_run, spring_data, tmp_path, capfd):
    forecast = tmp_path / "forecast.nc"
    assert main(["forecast", str(tiny_run), "--data", str(spring_data), "--members", "2", "--steps", "5",
                 "--out", str(forecast)]) == 0
    assert "lead/s" in capfd.readouterr().err  # sampling shows its rate
    quiet = tmp_path / "quiet.gif"
    assert main(["forecast", str(tiny_run), "--data", str(spring_data), "--members", "2", "--steps", "5",
                 "--out", str(tmp_path / "quiet.nc"), "--quiet"]) == 0
    assert main(["animate", str(forecast), "--channel", "q_x", "--out", str(quiet), "--quiet"]) == 0
    printed = capfd.readouterr()
    assert not _has_bar(printed.out + printed.err)
    assert _frames(quiet) == 5
    with Image.open(quiet) as image:
        one_channel = image.size
    shown = tmp_path / "all.gif"
    assert main(["animate", str(forecast), "--out", str(shown)]) == 0
    assert "frame/s" in capfd.readouterr().err
    with Image.open(shown) as image:
        assert image.n_frames == 5 and image.size[1] > 2 * one_channel[1]  # a row per channel: 4 of them


def test_mp4_with_ffmpeg_has_one_frame_per_lead_time(tiny_run, spring_data, tmp_path):
    """Where ffmpeg is installed (not in CI), an MP4 holds one frame per lead time, as ffprobe counts them."""
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("ffmpeg is not installed")
    out = tmp_path / "rollout.mp4"
    assert main(["animate", str(tiny_run), "--data", str(spring_data), "--members", "3", "--steps", "7",
                 "--out", str(out), "--quiet"]) == 0
    counted = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                              "stream=nb_read_frames", "-of", "csv=p=0", str(out)], capture_output=True, text=True)
    assert counted.returncode == 0 and int(counted.stdout.strip()) == 7


@pytest.mark.parametrize("name,message", [("rollout.mp4", "needs ffmpeg"), ("rollout.png", ".gif or .mp4"),
                                          ("forecast.nc", "no channel 'z'")])
def test_animation_refuses_in_one_line(name, message, tiny_run, spring_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(FFMpegWriter, "isAvailable", classmethod(lambda cls: False))
    source = tiny_run
    if name == "forecast.nc":
        source = tmp_path / name
        assert main(["forecast", str(tiny_run), "--data", str(spring_data), "--members", "2", "--steps", "2",
                     "--out", str(source), "--quiet"]) == 0
        capsys.readouterr()
    out = tmp_path / ("a.gif" if name == "forecast.nc" else name)
    assert main(["animate", str(source), "--channel", "z" if name == "forecast.nc" else "q_x", "--out", str(out),
                 "--quiet"]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not out.exists()


def test_info_lists_horizon_channels_networks_and_files(tiny_run, capsys):
    assert main(["info", str(tiny_run)]) == 0
    text = capsys.readouterr().out
    lines = {line.split()[0]: line for line in text.splitlines() if line and not line.startswith(" ")}
    assert "4 time steps" in lines["horizon"]
    for channel in ("p_x", "p_y", "q_x", "q_y"):
        assert f" {channel} " in text
    assert "fixed_mask" in lines["static"] and "finished" in lines["stages"]
    assert main(["info", str(tiny_run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == json.loads(json.dumps(run_info(tiny_run)))
    assert info["horizon"] == 4 and info["method"] == "dyffusion"
    assert [c["name"] for c in info["data"]["channels"]] == ["p_x", "p_y", "q_x", "q_y"]
    assert info["data"]["grid"] == {"dims": ["y", "x"], "shape": [10, 10]} and info["data"]["time_stride"] == 2
    assert info["schedule"]["diffusion_steps"] == 4
    assert all(network["parameters"] > 0 and network["weights"] for network in info["networks"].values())
    assert {stage["status"] for stage in info["training"]["stages"].values()} == {"finished"}
    files = {file["path"]: file["bytes"] for file in info["files"]}
    assert files["config.yaml"] == (tiny_run / "config.yaml").stat().st_size and "checkpoints/" in files


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_logger_that_is_not_installed_is_one_line(name, spring_data, tmp_path, capsys):
    if importlib.util.find_spec(name):
        pytest.skip(f"{name} is installed")
    run = tmp_path / "run"
    assert main(["fit", str(spring_data), "--out", str(run), "--max-epochs", "1", "--logger", f"csv,{name}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"pip install 'dyffusion[{name}]'" in error
    assert not run.exists()


def test_tensorboard_logs_beside_csv_and_the_stage_bar(spring_data, tmp_path, capfd):
    pytest.importorskip("tensorboardX")
    from tensorboardX.proto.event_pb2 import Event

    run = tmp_path / "run"
    fit = ["fit", str(spring_data), "--out", str(run), "--horizon", "4", "--max-epochs", "1", "--set", "data.time_stride=2",
           "--set", "trainer.batches_per_epoch=2", "--set", "interpolator.val_members=2",
           "--set", "forecaster.val_members=2", *TINY_NETWORK]
    assert main([*fit, "--logger", "csv", "--logger", "tensorboard"]) == 0
    printed = capfd.readouterr().out
    assert "interpolator epoch 1/1" in printed and "forecaster epoch 1/1" in printed and "it/s" in printed
    logs = run / "logs" / "forecaster" / "version_0"
    assert (logs / "metrics.csv").exists()
    tags = set()
    for path in logs.glob("events.out.tfevents.*"):
        records, offset = path.read_bytes(), 0
        while offset < len(records):  # TFRecord: length (8 bytes), its CRC (4), the event, its CRC (4)
            length = int.from_bytes(records[offset : offset + 8], "little")
            event = Event.FromString(records[offset + 12 : offset + 12 + length])
            tags.update(value.tag for value in event.summary.value)
            offset += 16 + length
    assert "val/crps" in tags
    # The logger is not part of the run's configuration: a resumed run may log elsewhere.
    assert main([*fit, "--resume", "--quiet"]) == 0


def test_mlflow_and_wandb_log_offline_into_the_run(spring_data, tmp_path, monkeypatch):
    """With the extras installed (not in CI: ``pip install 'dyffusion[mlflow,wandb]'``), both stages' validation
    scores reach MLflow's SQLite store and W&B writes an offline run, all inside RUN/logs."""
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    for variable in ("MLFLOW_TRACKING_URI", "WANDB_MODE"):
        monkeypatch.delenv(variable, raising=False)
    run = tmp_path / "run"
    assert main(["fit", str(spring_data), "--out", str(run), "--horizon", "4", "--max-epochs", "1", "--quiet",
                 "--set", "data.time_stride=2", "--set", "trainer.batches_per_epoch=2",
                 "--set", "interpolator.val_members=2", "--set", "forecaster.val_members=2", *TINY_NETWORK,
                 "--logger", "mlflow,wandb"]) == 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{run / 'logs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("dyffusion").experiment_id])
    assert {entry.info.run_name for entry in runs} == {"run/interpolator", "run/forecaster"}
    assert all("val/crps" in entry.data.metrics for entry in runs)
    assert list((run / "logs" / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.mark.parametrize("quiet", [True, False])
def test_training_bar_only_without_quiet(quiet, tmp_path):
    trainer = stage_trainer(load_config("demo").trainer, RunDir(tmp_path), "interpolator", None, quiet, 0, ["csv"])
    assert (trainer.progress_bar_callback is None) == quiet
