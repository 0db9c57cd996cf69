import pytest

from dyffusion.cli.main import main

TINY_NETWORK = ["--set", "interpolator.network={name: convnet, width: 8, kernel_sizes: [3, 3], dropout: 0.2}",
                "--set", "forecaster.network={name: convnet, width: 8, kernel_sizes: [3, 3]}"]


@pytest.fixture(scope="session")
def spring_data(tmp_path_factory):
    """A tiny spring-mesh data set written by the CLI."""
    out = tmp_path_factory.mktemp("spring") / "data"
    assert main(["data", "spring-mesh", str(out), "--train", "3", "--val", "1", "--test", "2", "--ood-test", "0",
                 "--frames", "41", "--quiet"]) == 0
    return out


# The fit options of tiny_run: one short epoch per stage, horizon 4 on every 2nd frame.
TINY_FIT = ["--horizon", "4", "--max-epochs", "1", "--quiet", "--set", "data.time_stride=2",
            "--set", "trainer.batches_per_epoch=3", "--set", "interpolator.batch_size=8",
            "--set", "forecaster.batch_size=8", "--set", "interpolator.val_members=4",
            "--set", "forecaster.val_members=3", *TINY_NETWORK]


@pytest.fixture(scope="session")
def tiny_run(spring_data, tmp_path_factory):
    """A run trained with TINY_FIT."""
    run = tmp_path_factory.mktemp("runs") / "run"
    code = main(["fit", str(spring_data), "--out", str(run), *TINY_FIT])
    assert code == 0
    return run
