"""Files written so that a crash never leaves a half-written one behind (temporary file, then rename)."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file, save_file


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renamed onto it only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        if os.path.isfile(temporary):
            os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes files private; results are for sharing
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json(path: str | Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Plain tensors as safetensors: loading them can never run code."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    with atomic_path(path) as temporary:
        save_file(state, str(temporary))


def save_weights(module: torch.nn.Module, path: str | Path) -> None:
    save_tensors(module.state_dict(), path)


def load_weights(module: torch.nn.Module, path: str | Path) -> None:
    module.load_state_dict(load_file(str(path)))
