"""Data larger than memory: frames streamed from netCDF or zarr read exactly what an in-memory load holds, train
to bit-identical weights, and let training and evaluation run under a memory limit smaller than the data."""

import json
import os
import pickle
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from dyffusion.cli.main import main
from dyffusion.data.contract import DataError, open_gridded
from dyffusion.data.frames import LazyFrames
from dyffusion.data.normalization import Normalizer
from dyffusion.data.splits import SplitConfig, open_split
from tests.conftest import TINY_NETWORK
from tests.test_data import contract_file

INDICES = [(1, 3), (1, np.array([9, 3, 5])), (np.array([0, 1]), 4), (slice(None), 7), (0, slice(2, 9)),
           (-1, -1), (1, [0, 11])]


@pytest.mark.parametrize("engine", ["netcdf4", "zarr"])
def test_streamed_frames_are_the_frames_in_memory(tmp_path, engine):
    path = tmp_path / ("data.zarr" if engine == "zarr" else "data.nc")
    contract_file(path, trajectories=2, frames=12, land=True, engine=engine)
    memory, streamed = open_gridded(path, stream=False), open_gridded(path, stream=True)
    assert isinstance(streamed.values, LazyFrames) and isinstance(memory.values, np.ndarray)
    assert streamed.values.shape == memory.values.shape == (2, 12, 3, 5, 6)
    np.testing.assert_array_equal(streamed.valid, memory.valid)
    np.testing.assert_array_equal(streamed.static, memory.static)
    for key in INDICES:
        np.testing.assert_array_equal(streamed.values[key], memory.values[key], err_msg=str(key))
    # Slices give lazy views that index like numpy's; an open file does not travel with a pickle.
    strided = streamed.subsample_time(3)
    assert isinstance(strided.values, LazyFrames)
    np.testing.assert_array_equal(strided.values[1, [0, 3]], memory.values[1, [0, 9]])
    copy = pickle.loads(pickle.dumps(strided.values))
    np.testing.assert_array_equal(copy[0, 2], memory.values[0, 6])
    with pytest.raises(IndexError, match="not both"):
        streamed.values[[0, 1], [2, 3]]


@pytest.mark.parametrize("rule", [SplitConfig(by="time", val_fraction=0.25, test_fraction=0.25),
                                  SplitConfig(by="trajectory", val_fraction=0.25, test_fraction=0.25)])
def test_a_streamed_split_of_one_file_holds_the_same_frames(tmp_path, rule):
    contract_file(tmp_path / "all.nc", trajectories=4, frames=16)
    for split in ("train", "val", "test"):
        memory = open_split(tmp_path / "all.nc", split, rule, stream=False)
        streamed = open_split(tmp_path / "all.nc", split, rule, stream=True)
        assert streamed.values.shape == memory.values.shape and streamed.source == memory.source
        for trajectory in range(memory.num_trajectories):
            np.testing.assert_array_equal(streamed.values[trajectory, :], memory.values[trajectory])


def test_a_streamed_value_that_breaks_the_contract_is_an_error_when_read(tmp_path):
    ds = contract_file(tmp_path / "data.nc", frames=12)
    ds["sst"][1, 5, 2, 3] = np.inf
    ds.to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(DataError, match="is infinite at trajectory 1, time index 5"):
        open_gridded(tmp_path / "bad.nc", stream=False)
    streamed = open_gridded(tmp_path / "bad.nc", stream=True)  # checked as read, not up front
    np.testing.assert_array_equal(streamed.values[1, 4], open_gridded(tmp_path / "data.nc").values[1, 4])
    with pytest.raises(DataError, match="'sst' is NaN or inf at trajectory 1, time index 5"):
        streamed.values[1, 3:8]


@pytest.mark.parametrize("per_point", [False, True])
def test_the_normaliser_streams_the_statistics_of_the_loaded_data(tmp_path, per_point):
    contract_file(tmp_path / "data.zarr", trajectories=3, frames=40, land=True, engine="zarr")
    memory, streamed = open_gridded(tmp_path / "data.zarr", stream=False), open_gridded(tmp_path / "data.zarr",
                                                                                         stream=True)
    # Blocks of 7 frames: the pass must add up partial blocks and trajectories as numpy does all at once.
    fitted = Normalizer.fit(streamed.values, streamed.valid, per_point, block_bytes=7 * 3 * 5 * 6 * 4)
    valid = memory.valid[:, None, None].repeat(40, 1)  # (T, time, 1, H, W)
    data = np.ma.masked_array(memory.values.astype(np.float64), ~np.broadcast_to(valid, memory.values.shape))
    axes = (0, 1) if per_point else (0, 1, 3, 4)
    mean, std = data.mean(axis=axes), data.std(axis=axes)  # masked where a point is land in every trajectory
    np.testing.assert_allclose(fitted.mean.squeeze(), mean.filled(0).squeeze(), rtol=1e-12)
    np.testing.assert_allclose(fitted.std.squeeze(), std.filled(1).squeeze(), rtol=1e-9)
    assert per_point == bool(np.ma.getmaskarray(mean).any())  # the land case is met per point


def test_streamed_training_and_evaluation_equal_in_memory_ones(spring_data, tmp_path):
    """Same seed, same windows: streaming changes where frames come from, not one bit of the result. A data
    loader worker process reads the file on its own."""
    options = ["--horizon", "4", "--max-epochs", "1", "--quiet", "--set", "trainer.batches_per_epoch=3",
               "--set", "trainer.num_workers=1", "--set", "interpolator.val_members=2",
               "--set", "forecaster.val_members=2", *TINY_NETWORK]
    runs = {}
    for mode in ("--stream", "--no-stream"):
        runs[mode] = tmp_path / mode.strip("-")
        assert main(["fit", str(spring_data), "--out", str(runs[mode]), mode, *options]) == 0
        assert main(["evaluate", str(runs[mode]), "--members", "3", "--inits", "2", "--quiet", mode]) == 0
    for name in ("interpolator.safetensors", "forecaster.safetensors"):
        streamed, loaded = load_file(runs["--stream"] / name), load_file(runs["--no-stream"] / name)
        assert all(np.array_equal(streamed[key], loaded[key]) for key in loaded)
    metrics = [json.loads((runs[mode] / "eval-test" / "metrics.json").read_text())["mean"] for mode in runs]
    assert metrics[0] == metrics[1]


def _write_large_zarr(path: Path, trajectories: int, frames: int, size: int) -> int:
    """A data set of smooth waves quantised to 1/64 (so the store compresses well on disk), written chunk by
    chunk with zarr (xarray's dims convention); returns its bytes in memory as float32."""
    import zarr

    group = zarr.open_group(path, mode="w", zarr_format=2)
    time = group.create_array("time", shape=(frames,), dtype="float64", attributes={"_ARRAY_DIMENSIONS": ["time"]})
    time[:] = np.arange(frames)
    waves = group.create_array("u", shape=(trajectories, frames, size, size), chunks=(1, 512, size, size),
                               dtype="float32", fill_value=np.nan, attributes={"_ARRAY_DIMENSIONS": ["trajectory", "time", "y", "x"]})
    y, x = np.meshgrid(np.linspace(0, 2 * np.pi, size), np.linspace(0, 2 * np.pi, size), indexing="ij")
    for trajectory in range(trajectories):
        for first in range(0, frames, 512):
            phase = 0.05 * np.arange(first, min(first + 512, frames))[:, None, None] + trajectory
            waves[trajectory, first : first + 512] = np.round(64 * np.sin(x + phase) * np.cos(y - 0.5 * phase)) / 64
    zarr.consolidate_metadata(path)
    return trajectories * frames * size * size * 4


def _run_limited(limit: int, *arguments: str) -> subprocess.CompletedProcess:
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "dyffusion.cli.main", *arguments], capture_output=True, text=True,
                          preexec_fn=limit_memory, env=environment, timeout=600)


def test_fit_and_evaluate_data_larger_than_the_memory_limit(tmp_path):
    """The training split alone is 2 GiB in memory; the processes may allocate 1 GiB (RLIMIT_DATA: heap and
    private writable mappings, where numpy and torch put arrays; RLIMIT_AS would also count the address space
    that shared libraries and idle thread arenas reserve without using it)."""
    limit = 2**30
    data = tmp_path / "data"
    data.mkdir()
    sizes = {split: _write_large_zarr(data / f"{split}.zarr", trajectories, frames, 64)
             for split, trajectories, frames in (("train", 8, 16384), ("val", 1, 1024), ("test", 1, 1024))}
    assert sizes["train"] > limit
    options = ["--out", str(tmp_path / "run"), "--horizon", "4", "--max-epochs", "1", "--quiet",
               "--set", "trainer.batches_per_epoch=2", "--set", "trainer.val_batches=1",
               "--set", "interpolator.batch_size=4", "--set", "forecaster.batch_size=4",
               "--set", "interpolator.val_members=2", "--set", "forecaster.val_members=2",
               # the step choice would roll out the whole 1024-frame validation trajectory: not this test's point
               "--set", "sampling.choose_steps=false", *TINY_NETWORK]

    loading = _run_limited(limit, "fit", str(data), "--no-stream", *options)
    assert loading.returncode == 2 and "out of memory" in loading.stderr and "Traceback" not in loading.stderr

    streaming = _run_limited(limit, "fit", str(data), *options)  # the default streams data this large
    assert streaming.returncode == 0, streaming.stderr
    run = tmp_path / "run"
    assert json.loads((run / "training.json").read_text())["forecaster"]["finished"]
    evaluation = _run_limited(limit, "evaluate", str(run), "--split", "train", "--inits", "3", "--members", "2",
                              "--quiet")
    assert evaluation.returncode == 0, evaluation.stderr
    metrics = json.loads((run / "eval-train" / "metrics.json").read_text())
    assert metrics["initial_conditions"] == 3 and np.isfinite(metrics["mean"]["crps"])
