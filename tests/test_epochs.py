"""An epoch is ``trainer.batches_per_epoch`` batches (how often a stage validates), also on a training split of
fewer batches: its windows are then shuffled several times end to end."""

import csv
import json
from collections import Counter

from dyffusion.cli.main import main
from dyffusion.training.lightning import EpochShuffle
from tests.conftest import TINY_NETWORK


def test_a_small_split_is_shuffled_often_enough_for_the_epoch_each_window_as_often():
    sampler = EpochShuffle(40, seed=3, per_process=100, batch_size=8)
    order = list(sampler)
    assert len(order) == len(sampler) == 120  # 3 passes: the fewest that give 100 windows
    assert Counter(order) == {window: 3 for window in range(40)}
    assert [sorted(order[start:start + 40]) for start in (0, 40, 80)] == [list(range(40))] * 3
    assert list(EpochShuffle(40, seed=3, per_process=100, batch_size=8)) == order  # (seed, epoch) only
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_a_split_of_one_pass_or_smaller_than_a_batch_keeps_one_pass():
    assert sorted(EpochShuffle(40, seed=0, per_process=40, batch_size=8)) == list(range(40))
    assert sorted(EpochShuffle(40, seed=0, per_process=0, batch_size=8)) == list(range(40))  # a full pass
    assert sorted(EpochShuffle(5, seed=0, per_process=80, batch_size=8)) == list(range(5))  # no window twice


def test_a_stage_validates_every_batches_per_epoch_batches_on_a_small_split(spring_data, tmp_path):
    run = tmp_path / "run"
    # The tiny data hold 6 interpolator batches of 8 windows: 10 batches per epoch need 2 passes.
    assert main(["fit", str(spring_data), "--out", str(run), "--horizon", "4", "--max-epochs", "2", "--quiet",
                 "--stage", "interpolator", "--set", "data.time_stride=2", "--set", "trainer.batches_per_epoch=10",
                 "--set", "interpolator.batch_size=8", "--set", "interpolator.val_members=2", *TINY_NETWORK]) == 0
    summary = json.loads((run / "training.json").read_text())["interpolator"]
    assert summary["steps"] == 20
    with open(run / "logs" / "interpolator" / "version_0" / "metrics.csv") as handle:
        validated = [int(row["step"]) for row in csv.DictReader(handle) if row.get("val/crps")]
    assert validated == [9, 19]
