"""The ``dyffusion`` command: data, validate-solver, fit, evaluate, frontier, forecast, animate, info, demo.

Bad input (a :class:`dyffusion.errors.UserError` or an ``OSError``) ends with one line on stderr and exit code 2,
never a traceback (``--debug`` shows it); any other exception is our bug: one line naming it, exit code 1.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from dyffusion.cli import commands
from dyffusion.cli.parser import build_parser
from dyffusion.errors import UserError

# What the user can fix: our UserError family and the OS refusing a path (missing, not allowed, disk full).
# Any other exception is a bug of ours and is reported as one; a ValueError is not taken for bad input.
USER_ERRORS = (UserError, OSError)
HANDLERS = {"data": commands.cmd_data, "fit": commands.cmd_fit, "evaluate": commands.cmd_evaluate,
            "frontier": commands.cmd_frontier, "forecast": commands.cmd_forecast, "animate": commands.cmd_animate,
            "info": commands.cmd_info, "demo": commands.cmd_demo, "validate-solver": commands.cmd_validate_solver,
            "benchmark": commands.cmd_benchmark}


def _one_line(error: Exception) -> str:
    """The message of a user error on one line; an OSError names its file without errno codes."""
    if isinstance(error, MemoryError):
        return ("out of memory; give --stream to read the data from disk as it is needed, or lower the batch sizes "
                "or sampling.max_batch")
    if isinstance(error, OSError) and error.strerror and error.filename:
        text = f"{error.filename}: {error.strerror}"
        if error.errno in (errno.ENOTDIR, errno.EEXIST):
            # mkdir -p and open name the path they were given; the user needs the file standing in its way.
            path = Path(error.filename)
            blocking = next((part for part in (path, *path.parents) if part.exists() and not part.is_dir()), None)
            if blocking == path:
                text = f"{path} is a file, not a directory"
            elif blocking is not None:
                text = f"{path}: {blocking} is a file, not a directory"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = HANDLERS[args.command]
    try:
        code = handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug or os.environ.get("DYFFUSION_DEBUG"):
            raise
        if isinstance(error, (MemoryError, *USER_ERRORS)):
            print(f"dyffusion {args.command}: error: {_one_line(error)}", file=sys.stderr)
            return 2
        print(f"dyffusion {args.command}: internal error (a bug in dyffusion, not in your input): "
              f"{type(error).__name__}: {_one_line(error)}; rerun with --debug for the traceback and report it",
              file=sys.stderr)
        return 1
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
