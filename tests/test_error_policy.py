"""The CLI's error policy: what the user can fix is one line and exit code 2; a bug of ours is never passed off
as bad input, even when it is a ValueError, and ``--debug`` shows its traceback."""

import pytest

import dyffusion.info
from dyffusion.cli.main import main
from dyffusion.errors import ConfigError, DataError, RunError, UserError
from tests.conftest import TINY_NETWORK


def test_a_valueerror_of_our_own_is_an_internal_error_with_a_hint(tiny_run, monkeypatch, capsys):
    def broken_run_info(path):
        raise ValueError("an invariant of ours does not hold")

    monkeypatch.setattr(dyffusion.info, "run_info", broken_run_info)
    assert main(["info", str(tiny_run)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dyffusion info: internal error")
    assert "ValueError: an invariant of ours does not hold" in lines[0] and "--debug" in lines[0]
    with pytest.raises(ValueError, match="invariant"):
        main(["--debug", "info", str(tiny_run)])


def test_a_user_error_raised_deep_in_the_library_is_still_one_line(spring_data, tmp_path, capsys):
    """An even kernel size reaches the network's constructor, far below the CLI: it is the user's to fix."""
    code = main(["fit", str(spring_data), "--out", str(tmp_path / "run"), "--max-epochs", "1", "--quiet",
                 *TINY_NETWORK, "--set", "interpolator.network.kernel_sizes=[4]"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("dyffusion fit: error:") and "kernel sizes must be odd" in lines[0]


def test_user_errors_stay_valueerrors_for_api_callers():
    for error in (ConfigError, DataError, RunError):
        assert issubclass(error, UserError) and issubclass(error, ValueError)
