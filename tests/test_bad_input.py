"""Bad input, everywhere (docs/bad-input.md): each row ends with exit code 2 and one line on stderr, never a
traceback; and no file the library reads (weights, checkpoints, configs, data, simulator parts) can run code."""

import errno
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from safetensors import SafetensorError

import dyffusion
import dyffusion.io
from dyffusion.cli.main import main
from dyffusion.run import RunError
from dyffusion.simulators.flow_solver import SolverSettings
from dyffusion.simulators.navier_stokes import NUM_FRAMES, _parts_dir
from dyffusion.training.lightning import read_checkpoint


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    """Exit code and stderr lines as the console script gives them: an exception escaping ``main`` is exit
    code 1 with a traceback, as Python would print it."""
    try:
        code = main(argv)
    except Exception:
        traceback.print_exc()
        code = 1
    return code, capsys.readouterr().err.strip().splitlines()


def assert_one_clear_line(code: int, lines: list[str], expected: str) -> None:
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert expected in lines[0] and "Traceback" not in lines[0], lines[0]


class LeavesMarker:
    """Unpickled, this creates ``marker``: proof that a loader ran code from the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def make_bad_data(root: Path, spring_data: Path) -> None:
    """Data directories that are wrong in one way each, made from the spring-mesh test split."""
    test = xr.open_dataset(spring_data / "test.nc").load()
    variants = {
        "other-grid": test.isel(x=slice(0, 8)),
        "renamed": test.rename({"p": "momentum"}),
        "no-static": test.drop_vars("fixed_mask"),
        "nan": test.copy(deep=True),
        "inf": test.copy(deep=True),
        "nan-static": test.copy(deep=True),
        "short": test.isel(time=slice(0, 5)),
    }
    variants["nan"]["q"][1, 9, 0, 2, 5] = np.nan
    variants["inf"]["p"][0, 3, 1, 4, 4] = np.inf
    variants["nan-static"]["fixed_mask"][3, 3] = np.nan
    for name, dataset in variants.items():
        (root / name).mkdir(parents=True)
        dataset.to_netcdf(root / name / "test.nc")
    (root / "nan-train").mkdir()
    train = xr.open_dataset(spring_data / "train.nc").load()
    train["p"][1, 7, 0, 3, 3] = np.nan
    train.to_netcdf(root / "nan-train" / "train.nc")
    shutil.copy(spring_data / "val.nc", root / "nan-train" / "val.nc")
    (root / "no-val").mkdir()
    for split in ("train", "test"):
        shutil.copy(spring_data / f"{split}.nc", root / "no-val" / f"{split}.nc")
    (root / "not-netcdf").mkdir()
    (root / "not-netcdf" / "test.nc").write_text("time,p\n0,1\n")
    (root / "truncated").mkdir()
    whole = (spring_data / "test.nc").read_bytes()
    (root / "truncated" / "test.nc").write_bytes(whole[: len(whole) // 2])
    (root / "directory" / "test.nc").mkdir(parents=True)  # unreadable as a file, even by root
    (root / "a-file").write_text("a regular file where a directory is needed\n")
    (root / "broken.yaml").write_text("data: {horizon: [4, 8}\n")


def make_broken_runs(root: Path, run: Path) -> None:
    """Copies of a trained run (without checkpoints and logs), each damaged in one way."""
    files = ("config.yaml", "data.json", "training.json", "interpolator.safetensors", "forecaster.safetensors",
             "static.safetensors")
    for name in ("truncated-weights", "foreign-weights", "bad-data-json", "directory-data-json", "bad-training-json",
                 "bad-config", "no-forecaster", "no-data-json"):
        (root / name).mkdir(parents=True)
        for file in files:
            shutil.copy(run / file, root / name / file)
    weights = (run / "interpolator.safetensors").read_bytes()
    (root / "truncated-weights" / "interpolator.safetensors").write_bytes(weights[: len(weights) // 2])
    # Weights of a wider network, as if config.yaml had been edited after training.
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["interpolator"]["network"]["width"] = 12
    (root / "foreign-weights" / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "bad-data-json" / "data.json").write_text('{"channels": [')
    (root / "directory-data-json" / "data.json").unlink()
    (root / "directory-data-json" / "data.json").mkdir()
    (root / "bad-training-json" / "training.json").write_text("not json\n")
    (root / "bad-config" / "config.yaml").write_text("data: {horizon: 4\n")
    (root / "no-forecaster" / "forecaster.safetensors").unlink()
    (root / "no-data-json" / "data.json").unlink()


@pytest.fixture(scope="module")
def bad(spring_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    make_bad_data(root, spring_data)
    return root


@pytest.fixture(scope="module")
def broken(tiny_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    make_broken_runs(root, tiny_run)
    return root


# (command line, text the one line of stderr contains); {run} is a trained run (h = 4 on every 2nd frame of
# 41-frame trajectories), {data} its data directory, {bad} and {broken} hold the variants made above.
CASES = {
    # Damaged or foreign run files.
    "truncated weights": (["evaluate", "{broken}/truncated-weights"], "not a readable safetensors file"),
    "weights of another network": (["evaluate", "{broken}/foreign-weights"], "do not fit the network"),
    "malformed data.json": (["evaluate", "{broken}/bad-data-json"], "not the data description a run writes"),
    "data.json is a directory": (["evaluate", "{broken}/directory-data-json"], "data.json: Is a directory"),
    "malformed training.json": (["evaluate", "{broken}/bad-training-json"], "not the training summary a run writes"),
    "config.yaml not YAML": (["evaluate", "{broken}/bad-config"], "config.yaml, line 2, column 1: not valid YAML"),
    # Missing files.
    "missing run directory": (["evaluate", "{tmp}/missing"], "run directory {tmp}/missing does not exist"),
    "run without its forecaster": (["evaluate", "{broken}/no-forecaster"], "forecaster.safetensors is missing"),
    "run without data.json": (["evaluate", "{broken}/no-data-json"], "data.json is missing"),
    "missing --data file": (["evaluate", "{run}", "--data", "{tmp}/nothing.nc"], "does not exist"),
    "missing data directory": (["fit", "{tmp}/nowhere", "--out", "{tmp}/r"], "{tmp}/nowhere does not exist"),
    "missing config file": (["fit", "{data}", "--out", "{tmp}/r", "--config", "{tmp}/missing.yaml"],
                            "neither a YAML file nor a preset"),
    # Unreadable data.
    "data file not netCDF": (["evaluate", "{run}", "--data", "{bad}/not-netcdf"],
                             "cannot open {bad}/not-netcdf/test.nc as netCDF or zarr"),
    "truncated data file": (["evaluate", "{run}", "--data", "{bad}/truncated"], "NetCDF: HDF error"),
    "directory in place of a data file": (["evaluate", "{run}", "--data", "{bad}/directory"],
                                          "cannot open {bad}/directory/test.nc as netCDF or zarr"),
    # Data that does not fit the run.
    "other grid (evaluate)": (["evaluate", "{run}", "--data", "{bad}/other-grid"], "grid (10, 8) instead of (10, 10)"),
    "other grid (forecast)": (["forecast", "{run}", "--data", "{bad}/other-grid", "--out", "{tmp}/f.nc"],
                              "grid (10, 8) instead of (10, 10)"),
    "other variable names": (["evaluate", "{run}", "--data", "{bad}/renamed"],
                             "channels ['momentum_x', 'momentum_y', 'q_x', 'q_y'] instead of"),
    "static variable missing": (["evaluate", "{run}", "--data", "{bad}/no-static"],
                                "static variables [] instead of ['fixed_mask']"),
    # Values that are not numbers.
    "NaN at one time (evaluate)": (["evaluate", "{run}", "--data", "{bad}/nan"],
                                   "'q' has NaN at trajectory 1, time index 9"),
    "NaN at one time (fit)": (["fit", "{bad}/nan-train", "--out", "{tmp}/r"], "'p' has NaN at trajectory 1, time index 7"),
    "NaN at one time (streamed fit)": (["fit", "{bad}/nan-train", "--out", "{tmp}/r", "--stream"],
                                       "'p' is NaN or inf at trajectory 1, time index 7"),
    "inf": (["evaluate", "{run}", "--data", "{bad}/inf"], "'p' is infinite at trajectory 0, time index 3"),
    "NaN in a static variable": (["evaluate", "{run}", "--data", "{bad}/nan-static"],
                                 "static variable 'fixed_mask' contains NaN or inf"),
    # Too short for the horizon or the rollout.
    "trajectories shorter than h": (["fit", "{data}", "--out", "{tmp}/r", "--horizon", "100"],
                                    "too short for horizon 100"),
    "rollout longer than the data": (["evaluate", "{run}", "--rollout", "500"], "too short for a rollout of 500"),
    "data shorter than h (evaluate)": (["evaluate", "{run}", "--data", "{bad}/short"], "too short for a rollout of 4"),
    # Empty splits.
    "val block rounds to nothing": (["fit", "{data}/train.nc", "--out", "{tmp}/r", "--split-by", "time",
                                     "--val-fraction", "0.01"], "a val fraction of 0.01 of 41 time steps is empty"),
    "val block of no trajectory": (["fit", "{data}/train.nc", "--out", "{tmp}/r", "--split-by", "trajectory"],
                                   "a val fraction of 0.1 of 3 trajectories is empty"),
    "val fraction 0": (["fit", "{data}/train.nc", "--out", "{tmp}/r", "--split-by", "time", "--val-fraction", "0"],
                       "the val split is empty"),
    "no val.nc (fit)": (["fit", "{bad}/no-val", "--out", "{tmp}/r"], "no split 'val'"),
    "no val.nc (evaluate --split val)": (["evaluate", "{run}", "--data", "{bad}/no-val", "--split", "val"],
                                         "no split 'val'"),
    # Counts that must be positive.
    "zero members": (["evaluate", "{run}", "--members", "0"], "--members must be >= 1, got 0"),
    "negative members": (["evaluate", "{run}", "--members", "-2"], "--members must be >= 1, got -2"),
    "zero members (forecast)": (["forecast", "{run}", "--members", "0", "--out", "{tmp}/f.nc"],
                                "members must be >= 1, got 0"),
    "zero members in the config": (["fit", "{data}", "--out", "{tmp}/r", "--set", "sampling.members=0"],
                                   "sampling.members must be >= 1, got 0"),
    "zero initial conditions": (["evaluate", "{run}", "--inits", "0"], "--inits must be >= 1"),
    "rollout 0": (["evaluate", "{run}", "--rollout", "0"], "--rollout must be >= 1, got 0"),
    "zero steps": (["forecast", "{run}", "--steps", "0", "--out", "{tmp}/f.nc"], "steps must be >= 1, got 0"),
    "negative steps": (["forecast", "{run}", "--steps", "-2", "--out", "{tmp}/f.nc"], "steps must be >= 1, got -2"),
    "zero DDIM steps": (["evaluate", "{run}", "--ddim-steps", "0"], "--ddim-steps must be >= 1, got 0"),
    "negative epochs": (["fit", "{data}", "--out", "{tmp}/r", "--max-epochs", "-1"],
                        "trainer.max_epochs must be >= 1, got -1"),
    "unknown sampling precision": (["fit", "{data}", "--out", "{tmp}/r", "--set", "sampling.precision=float16"],
                                   "sampling.precision must be float32 or bfloat16, got 'float16'"),
    "zero minutes": (["fit", "{data}", "--out", "{tmp}/r", "--max-minutes", "0"], "trainer.max_minutes must be > 0"),
    # Horizons.
    "DYffusion with h = 1": (["fit", "{data}", "--out", "{tmp}/r", "--horizon", "1"],
                             "DYffusion needs data.horizon >= 2 (got 1)"),
    "h = 0": (["fit", "{data}", "--out", "{tmp}/r", "--horizon", "0", "--method", "dropout"],
              "data.horizon must be >= 1, got 0"),
    "lead time beyond h": (["forecast", "{run}", "--times", "5", "--out", "{tmp}/f.nc"], "outside (0, 4]"),
    # Outputs that cannot be written (a regular file in the path stops root too).
    "evaluate --out under a file": (["evaluate", "{run}", "--out", "{bad}/a-file/eval"],
                                    "{bad}/a-file/eval: {bad}/a-file is a file, not a directory"),
    "forecast --out under a file": (["forecast", "{run}", "--out", "{bad}/a-file/f.nc"],
                                    "{bad}/a-file is a file, not a directory"),
    "forecast --out a directory": (["forecast", "{run}", "--out", "{bad}/directory"],
                                   "{bad}/directory: is a directory; give a file name"),
    "fit --out under a file": (["fit", "{data}", "--out", "{bad}/a-file/run"], "{bad}/a-file is a file, not a directory"),
    "--save-forecasts under a file": (["evaluate", "{run}", "--out", "{tmp}/eval", "--save-forecasts",
                                       "{bad}/a-file/f.nc"], "{bad}/a-file is a file, not a directory"),
    # Configuration.
    "unknown preset": (["fit", "{data}", "--out", "{tmp}/r", "--config", "no-such-preset"],
                       "neither a YAML file nor a preset"),
    "unknown config key": (["fit", "{data}", "--out", "{tmp}/r", "--set", "interpolator.dropout=0.1"],
                           "config.interpolator: unknown key(s) ['dropout']"),
    "unknown config section": (["fit", "{data}", "--out", "{tmp}/r", "--set", "model.width=8"],
                               "config: unknown key(s) ['model']"),
    "unknown method in the config": (["fit", "{data}", "--out", "{tmp}/r", "--set", "method=nope"],
                                     "unknown method 'nope'; choose one of dyffusion, dropout"),
    "config file not YAML": (["fit", "{data}", "--out", "{tmp}/r", "--config", "{bad}/broken.yaml"],
                             "line 1, column 22: not valid YAML"),
    "--set text for an integer": (["fit", "{data}", "--out", "{tmp}/r", "--set", "trainer.batches_per_epoch=ten"],
                                  "config.trainer.batches_per_epoch: expected int or null, got 'ten'"),
    "--set text for a horizon": (["fit", "{data}", "--out", "{tmp}/r", "--set", "data.horizon=four"],
                                 "config.data.horizon: expected int, got 'four'"),
    "--set text for a float": (["fit", "{data}", "--out", "{tmp}/r", "--set", "interpolator.learning_rate=fast"],
                               "config.interpolator.learning_rate: expected float, got 'fast'"),
    "unknown logger": (["fit", "{data}", "--out", "{tmp}/r", "--logger", "neptune"], "unknown logger 'neptune'"),
    "logger not installed": (["fit", "{data}", "--out", "{tmp}/r", "--logger", "wandb"],
                             "logger wandb needs the wandb package: pip install 'dyffusion[wandb]'"),
}


def command_line(args: list[str], places: dict) -> list[str]:
    """The case's arguments with its places filled in, then the options it does not give that keep it quick and
    its outputs in ``places["tmp"]``."""
    command, *rest = [arg.format(**places) for arg in args]
    quick = {"evaluate": {"--members": "2", "--out": f"{places['tmp']}/eval"}, "forecast": {"--members": "2"},
             "fit": {} if "--max-minutes" in rest else {"--max-epochs": "1"}}[command]
    return [command, *rest, *[part for option, value in quick.items() if option not in rest for part in (option, value)],
            "--quiet"]


@pytest.mark.parametrize("args,expected", [pytest.param(*case, id=name) for name, case in CASES.items()])
def test_bad_input_gets_one_clear_line(args, expected, tiny_run, spring_data, bad, broken, tmp_path, capsys):
    places = {"run": tiny_run, "data": spring_data, "bad": bad, "broken": broken, "tmp": tmp_path}
    assert_one_clear_line(*run_cli(command_line(args, places), capsys), expected.format(**places))


# Files that could run code: every loader of the library refuses them and runs nothing.

def copy_run_files(run: Path, to: Path) -> Path:
    """The files that make a run (not its checkpoints or logs), copied to ``to``."""
    to.mkdir(parents=True)
    for path in run.iterdir():
        if path.is_file():
            shutil.copy(path, to / path.name)
    return to


def yaml_payload(marker: Path) -> str:
    return f"!!python/object/apply:os.system [{json.dumps('touch ' + shlex.quote(str(marker)))}]"


def test_the_payloads_run_code_when_loaded_unsafely(tmp_path):
    """Controls: each payload below runs code through an unsafe loader, so that its refusal means something."""
    marker = tmp_path / "code-ran"

    def ran_code() -> bool:
        found = marker.exists()
        marker.unlink(missing_ok=True)
        return found

    pickle.loads(pickle.dumps(LeavesMarker(marker)))
    assert ran_code()
    torch.save(LeavesMarker(marker), tmp_path / "a.pt")
    torch.load(tmp_path / "a.pt", weights_only=False)
    assert ran_code()
    yaml.unsafe_load(yaml_payload(marker))
    assert ran_code()
    np.save(tmp_path / "a.npy", np.array([LeavesMarker(marker)], dtype=object), allow_pickle=True)
    np.load(tmp_path / "a.npy", allow_pickle=True)
    assert ran_code()


@pytest.mark.parametrize("save", ["pickle", "torch.save"])
@pytest.mark.parametrize("name", ["interpolator", "forecaster"])
def test_pickle_in_place_of_weights_is_refused(name, save, tiny_run, tmp_path, capsys):
    run, marker = copy_run_files(tiny_run, tmp_path / "run"), tmp_path / "code-ran"
    weights = run / f"{name}.safetensors"
    if save == "pickle":
        weights.write_bytes(pickle.dumps({"weight": LeavesMarker(marker)}))
    else:
        torch.save({"weight": LeavesMarker(marker)}, weights)
    code, lines = run_cli(["evaluate", str(run), "--members", "2", "--out", str(tmp_path / "eval")], capsys)
    assert_one_clear_line(code, lines, f"{weights}: not a readable safetensors file")
    assert not marker.exists()


def test_pickle_in_place_of_static_conditions_is_refused(tiny_run, tmp_path):
    run, marker = copy_run_files(tiny_run, tmp_path / "run"), tmp_path / "code-ran"
    (run / "static.safetensors").write_bytes(pickle.dumps({"static": LeavesMarker(marker)}))
    loaded = dyffusion.load_run(run)
    with pytest.raises(SafetensorError):
        dyffusion.forecast(loaded, torch.zeros(4, 10, 10), members=1)  # reads the run's static.safetensors
    assert not marker.exists()


@pytest.mark.parametrize("save", ["pickle", "torch.save"])
def test_pickle_as_best_checkpoint_is_refused(save, tmp_path):
    best, marker = tmp_path / "best.ckpt", tmp_path / "code-ran"
    checkpoint = {"state_dict": {}, "callbacks": LeavesMarker(marker)}
    if save == "pickle":
        best.write_bytes(pickle.dumps(checkpoint, protocol=2))  # torch's protocol: no warning before the refusal
    else:
        torch.save(checkpoint, best)
    # The one reader of Lightning checkpoints: the best weights after a stage and Lightning's restore on resume.
    with pytest.raises(RunError, match="refused"):
        read_checkpoint(best)
    assert not marker.exists()


def interrupted_run(tiny_run: Path, to: Path, last_checkpoint: bytes) -> Path:
    """A copy of ``tiny_run`` whose forecaster stage looks interrupted, with ``last_checkpoint`` to resume from."""
    shutil.copytree(tiny_run, to)
    summary = json.loads((to / "training.json").read_text())
    summary["forecaster"]["finished"] = False
    (to / "training.json").write_text(json.dumps(summary))
    (to / "checkpoints" / "forecaster" / "last.ckpt").write_bytes(last_checkpoint)
    return to


def resume(run: Path, data: Path) -> list[str]:
    # The run's own config.yaml as --config: the resumed configuration is the stored one.
    return ["fit", str(data), "--out", str(run), "--resume", "--config", str(run / "config.yaml"), "--quiet"]


def test_pickle_as_last_checkpoint_is_refused_on_resume(tiny_run, spring_data, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": {}, "loops": LeavesMarker(marker)}, tmp_path / "crafted.ckpt")
    run = interrupted_run(tiny_run, tmp_path / "run", (tmp_path / "crafted.ckpt").read_bytes())
    code, lines = run_cli(resume(run, spring_data), capsys)
    # Refused by torch.load(weights_only=True) inside Lightning's restore, reported on one line naming the file.
    assert code == 2 and len(lines) == 1 and "last.ckpt" in lines[0] and "refused" in lines[0], lines
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "pickle"])
def test_damaged_last_checkpoint_gets_one_clear_line(damage, tiny_run, spring_data, tmp_path, capsys):
    last = (tiny_run / "checkpoints" / "forecaster" / "last.ckpt").read_bytes()
    if damage == "pickle":
        last = pickle.dumps({"state_dict": {}, "loops": LeavesMarker(tmp_path / "code-ran")}, protocol=2)
    run = interrupted_run(tiny_run, tmp_path / "run", last[: len(last) // 2] if damage == "truncated" else last)
    assert_one_clear_line(*run_cli(resume(run, spring_data), capsys), "last.ckpt")


@pytest.mark.parametrize("where", ["run config.yaml", "--config file", "--set value"])
def test_python_yaml_tags_are_refused(where, tiny_run, spring_data, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    payload = yaml_payload(marker)
    if where == "run config.yaml":
        run = copy_run_files(tiny_run, tmp_path / "run")
        (run / "config.yaml").write_text(f"method: {payload}\n")
        argv, expected = ["evaluate", str(run), "--out", str(tmp_path / "eval")], "refused: could not determine a constructor"
    elif where == "--config file":
        (tmp_path / "evil.yaml").write_text(f"method: {payload}\n")
        argv = ["fit", str(spring_data), "--out", str(tmp_path / "r"), "--config", str(tmp_path / "evil.yaml")]
        expected = "refused: could not determine a constructor"
    else:
        argv, expected = ["fit", str(spring_data), "--out", str(tmp_path / "r"), "--set", f"method={payload}"], "not valid YAML"
    assert_one_clear_line(*run_cli(argv, capsys), expected)
    assert not marker.exists() and not (tmp_path / "r").exists()


def test_pickled_simulator_part_is_refused(tmp_path, capsys):
    """An interrupted Navier-Stokes generation resumes from its .npy parts, read with allow_pickle=False."""
    out, marker = tmp_path / "ns", tmp_path / "code-ran"
    parts = _parts_dir(out, "train", 0, SolverSettings(), NUM_FRAMES)
    parts.mkdir(parents=True)
    np.save(parts / "0000.npy", np.array([LeavesMarker(marker)], dtype=object), allow_pickle=True)
    code, lines = run_cli(["data", "navier-stokes", str(out), "--train", "1", "--val", "0", "--test", "0", "--quiet"],
                          capsys)
    assert_one_clear_line(code, lines, "Object arrays cannot be loaded when allow_pickle=False")
    assert not marker.exists()


def test_zarr_pickle_codec_is_refused(tiny_run, spring_data, tmp_path, capsys):
    pytest.importorskip("zarr")
    store, marker = tmp_path / "data.zarr", tmp_path / "code-ran"
    xr.open_dataset(spring_data / "test.nc").load().to_zarr(store, zarr_format=2, consolidated=False)
    # An object array whose chunk is a pickle, the way numcodecs' Pickle codec stores one.
    (store / "note").mkdir()
    (store / "note" / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [1], "chunks": [1], "dtype": "|O", "compressor": None, "fill_value": None,
        "filters": [{"id": "pickle", "protocol": 5}], "order": "C", "dimension_separator": "."}))
    (store / "note" / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": ["note"]}))
    (store / "note" / "0").write_bytes(pickle.dumps(np.array([LeavesMarker(marker)], dtype=object)))
    code, lines = run_cli(["evaluate", str(tiny_run), "--data", str(store), "--split", "all", "--members", "2",
                           "--out", str(tmp_path / "eval")], capsys)
    assert_one_clear_line(code, lines, f"cannot open {store} as netCDF or zarr")
    assert not marker.exists()


def test_damaged_zarr_chunk_is_one_clear_line(tiny_run, spring_data, tmp_path, capsys):
    pytest.importorskip("zarr")
    store = tmp_path / "data" / "test.zarr"
    xr.open_dataset(spring_data / "test.nc").load().to_zarr(store, zarr_format=2, consolidated=True)
    chunk = next((store / "p").glob("0.*"))
    chunk.write_bytes(chunk.read_bytes()[:100])
    code, lines = run_cli(["evaluate", str(tiny_run), "--data", str(tmp_path / "data"), "--members", "2",
                           "--out", str(tmp_path / "eval")], capsys)
    assert_one_clear_line(code, lines, f"{store}: cannot read variable 'p' (is the file damaged or cut short?)")


# A full disk, simulated: the library's writer fails with ENOSPC after writing part of the file.

def fails_like_a_full_disk(destination_of):
    """A writer that leaves part of its file where it was told to write, then fails as a full disk does."""
    def write(*args, **kwargs):
        Path(destination_of(*args)).write_bytes(b"the first bytes")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write


DISK_FULL = {
    "metrics.json": (["evaluate", "{run}", "--out", "{tmp}/eval"], Path, "write_text", lambda self, *_: self,
                     "{tmp}/eval/metrics.json"),
    "figure": (["evaluate", "{run}", "--out", "{tmp}/eval"], matplotlib.figure.Figure, "savefig",
               lambda self, path, *_: path, "{tmp}/eval/metrics_vs_lead_time.png"),
    "forecast file": (["forecast", "{run}", "--out", "{tmp}/f.nc"], xr.Dataset, "to_netcdf",
                      lambda self, path, *_: path, "{tmp}/f.nc"),
    "weights file": (["fit", "{data}", "--out", "{tmp}/run"], dyffusion.io, "save_file",
                     lambda tensors, path, *_: path, "{tmp}/run/static.safetensors"),
}


@pytest.mark.parametrize("args,owner,writer,destination_of,destination", DISK_FULL.values(), ids=DISK_FULL.keys())
def test_full_disk_leaves_no_partial_file(args, owner, writer, destination_of, destination, tiny_run, spring_data,
                                          tmp_path, capsys, monkeypatch):
    places = {"run": tiny_run, "data": spring_data, "tmp": tmp_path}
    monkeypatch.setattr(owner, writer, fails_like_a_full_disk(destination_of))
    code, lines = run_cli(command_line(args, places), capsys)
    monkeypatch.undo()
    destination = Path(destination.format(**places))
    assert_one_clear_line(code, lines, f"{destination}: cannot write it (No space left on device)")
    assert not destination.exists()
    assert not [path.name for path in destination.parent.iterdir() if path.name.endswith(".tmp")]


# Permissions. Root passes every permission check through its capabilities CAP_DAC_OVERRIDE and
# CAP_DAC_READ_SEARCH; without them (setpriv drops them from a child process) root is refused as anyone else is.

def run_cli_as_unprivileged(argv: list[str], capsys) -> tuple[int, list[str]]:
    """``run_cli`` for a user without root's permission bypass: a root test process runs the console script
    without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH."""
    if os.geteuid() != 0:
        return run_cli(argv, capsys)
    setpriv = shutil.which("setpriv")
    drop = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"] if setpriv else None
    if drop is None or subprocess.run([*drop, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root without setpriv to drop the permission bypass")
    result = subprocess.run([*drop, sys.executable, "-m", "dyffusion.cli.main", *argv], capture_output=True, text=True)
    return result.returncode, result.stderr.strip().splitlines()


@pytest.mark.parametrize("what", ["read-only output directory (forecast)", "read-only output directory (evaluate)",
                                  "unreadable config.yaml", "unreadable data file"])
def test_permissions_are_one_clear_line(what, tiny_run, spring_data, tmp_path, capsys):
    run = copy_run_files(tiny_run, tmp_path / "run")
    evaluate = ["evaluate", str(run), "--members", "2", "--out", str(tmp_path / "eval"), "--quiet"]
    if what.startswith("read-only output directory"):
        locked = tmp_path / "read-only"
        locked.mkdir()
        # Both are found before sampling.
        if what.endswith("(forecast)"):
            argv = ["forecast", str(run), "--data", str(spring_data), "--members", "2", "--out",
                    str(locked / "f.nc"), "--quiet"]
            expected = f"{locked}: cannot write into it (Permission denied)"
        else:
            argv = [*evaluate, "--data", str(spring_data), "--out", str(locked / "eval")]
            expected = f"{locked}/eval: cannot create it in {locked} (Permission denied)"
    elif what == "unreadable config.yaml":
        locked = run / "config.yaml"
        argv, expected = [*evaluate, "--data", str(spring_data)], f"{locked}: Permission denied"
    else:
        (tmp_path / "data").mkdir()
        locked = Path(shutil.copy(spring_data / "test.nc", tmp_path / "data" / "test.nc"))
        argv, expected = [*evaluate, "--data", str(tmp_path / "data")], f"cannot open {locked} as netCDF or zarr"
    mode = locked.stat().st_mode
    locked.chmod(0o555 if locked.is_dir() else 0)
    try:
        code, lines = run_cli_as_unprivileged(argv, capsys)
    finally:
        locked.chmod(mode)
    assert_one_clear_line(code, lines, expected)


def test_baselines_accept_horizon_one(spring_data, tmp_path):
    """h = 1 is a one-step forecaster for Dropout and Perturbation: it trains, rolls out and is scored."""
    run = tmp_path / "run"
    assert main(["fit", str(spring_data), "--out", str(run), "--method", "dropout", "--horizon", "1", "--max-epochs",
                 "1", "--quiet", "--set", "data.time_stride=2", "--set", "trainer.batches_per_epoch=2",
                 "--set", "baseline.val_members=2", "--set", "baseline.batch_size=8",
                 "--set", "baseline.network={name: convnet, width: 8, kernel_sizes: [3, 3], dropout: 0.2}"]) == 0
    assert main(["evaluate", str(run), "--members", "2", "--rollout", "3", "--out", str(tmp_path / "eval"),
                 "--quiet"]) == 0
