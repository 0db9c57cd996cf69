"""What every benchmark shares: the machine line of its section and appending the section to RESULTS.md."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "RESULTS.md"


def machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def append(lines: list[str]) -> None:
    """Print a section and append it to ``benchmarks/RESULTS.md`` (made with its header if missing)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach section says how it was made. Timings are ratios measured "
                           "side by side in one run; absolute times on this shared machine are noisy.\n")
    with RESULTS.open("a") as handle:
        handle.write(text)
