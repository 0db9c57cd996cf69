"""What every benchmark shares: the machine line of its section and appending the section to RESULTS.md."""

from __future__ import annotations

import argparse
import platform
from collections.abc import Iterable
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "RESULTS.md"


def machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def chosen_names(parser: argparse.ArgumentParser, text: str, known: Iterable[str],
                 option: str = "--systems") -> list[str]:
    """The comma-separated names given to ``option``, each one of ``known`` (else the parser's one-line error)."""
    known = list(known)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"{option}: unknown {unknown}; choose from {', '.join(known)}")
    return names


def append(lines: list[str]) -> None:
    """Print a section and append it to ``benchmarks/RESULTS.md`` (made with its header if missing)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach section says how it was made. Timings are ratios measured "
                           "side by side in one run; absolute times on this shared machine are noisy.\n")
    with RESULTS.open("a") as handle:
        handle.write(text)
