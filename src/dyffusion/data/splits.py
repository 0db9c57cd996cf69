"""Train, val and test parts of one data file: contiguous blocks of time or of trajectories, or ranges of the
time coordinate.

The rule is part of a run's config (``data.split``), so ``evaluate`` and ``forecast`` given the file the run was
trained on score exactly its held-out part. Each part is read as its own array, so no window crosses a boundary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from dyffusion.data.contract import DataError, GriddedData, from_xarray, is_split_directory, open_dataset, open_gridded
from dyffusion.errors import ConfigError

SPLITS = ("train", "val", "test")
DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2}([T ][\d:.]+)?)?)?$")


@dataclass
class SplitConfig:
    """How to split a single data file (unused for a directory of split files).

    by: ``None`` (the data is a directory with ``train``/``val``/``test`` files), ``time`` or ``trajectory``.
    val_fraction, test_fraction: sizes of the val and test blocks, which follow the train block in that order.
    train_range, val_range, test_range: ``START..END`` in values of the time coordinate (dates or numbers),
    inclusive; a date without a time of day includes that whole day (``2019`` the whole year). Ranges replace
    the fractions; a missing train range means everything before the first val or test time.
    """

    by: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    train_range: str | None = None
    val_range: str | None = None
    test_range: str | None = None

    def __post_init__(self) -> None:
        if self.ranges and self.by is None:
            self.by = "time"
        if self.by not in (None, "time", "trajectory"):
            raise ConfigError(f"data.split.by must be time or trajectory, got {self.by!r}")
        if self.by == "trajectory" and self.ranges:
            raise ConfigError("time ranges split by time: drop --split-by trajectory or the ranges")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"data.split.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("val and test fractions leave nothing to train on")

    @property
    def ranges(self) -> dict[str, str]:
        named = {"train": self.train_range, "val": self.val_range, "test": self.test_range}
        return {split: text for split, text in named.items() if text is not None}


def _blocks(count: int, rule: SplitConfig, what: str) -> dict[str, np.ndarray]:
    sizes = {"val": round(count * rule.val_fraction), "test": round(count * rule.test_fraction)}
    for split, fraction in (("val", rule.val_fraction), ("test", rule.test_fraction)):
        if fraction > 0 and sizes[split] == 0:
            raise DataError(f"a {split} fraction of {fraction} of {count} {what} is empty: raise it")
    train = count - sizes["val"] - sizes["test"]
    if train < 1:
        raise DataError(f"no {what} left to train on after the val and test blocks")
    edges = np.cumsum([0, train, sizes["val"], sizes["test"]])
    return {split: np.arange(edges[i], edges[i + 1]) for i, split in enumerate(SPLITS)}


def _bounds(text: str, time: np.ndarray) -> tuple:
    """``START..END`` -> (start, end, end_inclusive) comparable with ``time``."""
    start_text, separator, end_text = text.partition("..")
    if not separator or not start_text.strip() or not end_text.strip():
        raise DataError(f"range {text!r}: expected START..END, e.g. 2019-01-01..2019-12-31 or 0..250")
    if np.issubdtype(time.dtype, np.datetime64):
        try:
            if not all(DATE.match(part.strip()) for part in (start_text, end_text)):
                raise ValueError  # numpy reads "1" as the year 1
            start, end = np.datetime64(start_text.strip()), np.datetime64(end_text.strip())
        except ValueError:
            raise DataError(f"range {text!r}: the time coordinate holds dates; give dates like 2019-01-01") from None
        # A date (or month, year) as the end means all of it: compare with the start of the next one.
        whole_unit = np.datetime_data(end.dtype)[0] in ("Y", "M", "W", "D")
        return start, end + 1 if whole_unit else end, not whole_unit
    try:
        return float(start_text), float(end_text), True
    except ValueError:
        raise DataError(f"range {text!r}: the time coordinate holds numbers; give numbers like 0..250") from None


def _in_range(text: str, time: np.ndarray) -> np.ndarray:
    start, end, inclusive = _bounds(text, time)
    return (time >= start) & ((time <= end) if inclusive else (time < end))


def split_indices(rule: SplitConfig, time: np.ndarray, num_trajectories: int) -> dict[str, np.ndarray]:
    """Indices along the split axis (time for ``by="time"``, trajectory otherwise) of each split."""
    if rule.by == "trajectory":
        return _blocks(num_trajectories, rule, "trajectories")
    if not rule.ranges:
        return _blocks(time.size, rule, "time steps")
    masks = {split: _in_range(text, time) for split, text in rule.ranges.items()}
    if "train" not in masks:
        later = [np.argmax(mask) for mask in masks.values() if mask.any()]
        masks["train"] = np.arange(time.size) < (min(later) if later else time.size)
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1:]:
            if first in masks and second in masks and (masks[first] & masks[second]).any():
                raise DataError(f"the {first} and {second} ranges overlap")
    return {split: np.flatnonzero(mask) for split, mask in masks.items()}


def select_split(ds: xr.Dataset, rule: SplitConfig, split: str, source: str) -> tuple[dict[str, np.ndarray], str]:
    """The indices of ``split`` in ``ds`` (``{"trajectory": ...}`` or ``{"time": ...}``), and a description of
    them for messages and metrics."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: a single file splits into {', '.join(SPLITS)} (or use 'all')")
    if rule.by == "trajectory" and "trajectory" not in ds.dims:
        raise DataError(f"{source} has a single trajectory: split it by time instead")
    time = np.asarray(ds["time"].values)
    indices = split_indices(rule, time, ds.sizes.get("trajectory", 1)).get(split)
    if indices is None or indices.size == 0:
        raise DataError(f"{source}: the {split} split is empty (rule: {describe(rule)})")
    if rule.by == "trajectory":
        return {"trajectory": indices}, f"trajectories {indices[0]}..{indices[-1]}"
    return {"time": indices}, f"time {time[indices[0]]} .. {time[indices[-1]]} ({indices.size} steps)"


def describe(rule: SplitConfig) -> str:
    if rule.by is None:
        return "split files"
    if rule.ranges:
        return "time ranges " + ", ".join(f"{split} {text}" for split, text in rule.ranges.items())
    return f"{rule.by}: val {rule.val_fraction:g}, test {rule.test_fraction:g} (train first, then val, then test)"


def open_split(path: str | Path, split: str | None, rule: SplitConfig | None = None,
               stream: bool | None = None) -> GriddedData:
    """One split of a data set: from a directory of split files, or the ``rule``'s part of a single file.

    Without a rule a single file is read whole (new data to forecast); with a rule whose ``by`` is None a single
    file is an error, because training on it would see the validation and test data. ``stream``: keep the
    frames on disk (True), in memory (False), or decide by their size (None).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data {path} does not exist")
    directory = is_split_directory(path)
    if directory and rule is not None and rule.by is not None:
        raise DataError(f"{path} is a directory of split files: --split-by is for a single file")
    if directory or rule is None or split is None:
        return open_gridded(path, split, stream)
    if rule.by is None:
        raise DataError(f"{path} is a single file: give --split-by time or trajectory (with --val-fraction and "
                        f"--test-fraction, or --val-range and --test-range), or a directory of train and val files")
    with open_dataset(path) as ds:
        selection, where = select_split(ds, rule, split, str(path))
        return from_xarray(ds.isel(selection), f"{path} [{split}: {where}]", path=path, selection=selection,
                           stream=stream)
