"""Files written so that a crash never leaves a half-written one behind (temporary file, then rename)."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dyffusion.errors import RunError


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renamed onto it only if the block succeeds. ``suffix`` ends the
    temporary name (writers that choose the format by the file's suffix need ``path``'s own).

    An OSError of the writing (no space left, permission denied) names ``path``, not the temporary file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory; give a file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        os.close(handle)
        yield Path(temporary)
        if os.path.isfile(temporary):
            os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes files private; results are for sharing
        os.replace(temporary, path)
    except OSError as error:
        if error.errno is None:
            raise
        raise type(error)(error.errno, f"cannot write it ({error.strerror})", str(path)) from error
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.remove(temporary)


def check_writable_directory(directory: str | Path) -> None:
    """Raise now if ``directory`` could not be created or written into (creating nothing): a long computation
    should not end in an error that could have been found before it started."""
    directory = Path(directory)
    existing = next(path for path in (directory, *directory.parents) if path.exists())
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file, not a directory", str(directory))
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "cannot write into it" if existing == directory else f"cannot create it in {existing}"
        raise PermissionError(errno.EACCES, f"{reason} (Permission denied)", str(directory))


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
    """Load ``path`` into ``module``; a damaged file or one whose tensors do not fit ``module`` is a ValueError
    that names the file (safetensors holds tensors only, so no file can run code here)."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise RunError(f"{path}: not a readable safetensors file, damaged or cut short? ({error})") from None
    expected = module.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    reshaped = [f"{name} {tuple(state[name].shape)} instead of {tuple(expected[name].shape)}"
                for name in sorted(expected.keys() & state.keys()) if state[name].shape != expected[name].shape]
    if missing or unexpected or reshaped:
        problems = [f"{len(found)} {what} (first: {found[0]})" for what, found in
                    (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if found]
        raise RunError(f"{path}: the weights do not fit the network of the run's config.yaml ({'; '.join(problems)})")
    module.load_state_dict(state)
