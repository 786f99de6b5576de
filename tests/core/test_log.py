"""sdready's logger (``sdready._log``): ``logging`` in a library, a command's own stderr
log while a ``sdready`` command runs, and ``logging`` never imported for the latter.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from sdready._log import DEBUG, INFO, WARNING, logger, report_error, stderr_log


def test_a_command_writes_its_level_and_above_to_stderr(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with stderr_log("wait-listen", INFO):
        logger.debug("not %s", "shown")
        logger.info("listening on %s after %.0f ms", "127.0.0.1:80", 3.2)
        logger.log(WARNING, "a %s", "warning")
        assert logger.isEnabledFor(INFO) and not logger.isEnabledFor(DEBUG)
    assert capsys.readouterr().err == (
        "sdready wait-listen: listening on 127.0.0.1:80 after 3 ms\n"
        "sdready wait-listen: a warning\n"
    )
    assert caplog.records == []  # the command's log is not logging's
    # The control: outside a command the same calls are logging records.
    logger.info("listening on %s", "x")
    assert [r.getMessage() for r in caplog.records] == ["listening on x"]
    assert capsys.readouterr().err == ""


def test_an_exception_is_followed_by_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with stderr_log("exec", INFO):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("listener discovery failed")
        logger.error("no traceback here", exc_info=False)
    err = capsys.readouterr().err
    assert err.startswith("sdready exec: listener discovery failed\nTraceback (most recent call")
    assert "RuntimeError: boom\n" in err
    assert err.endswith("sdready exec: no traceback here\n")


def test_a_bad_format_is_written_rather_than_raised(capsys: pytest.CaptureFixture[str]) -> None:
    with stderr_log("exec", INFO):
        logger.info("%d ms", "not a number")
    assert capsys.readouterr().err == "sdready exec: %d ms ('not a number',)\n"


def test_report_error(capsys: pytest.CaptureFixture[str]) -> None:
    report_error("notify", "cannot notify: no socket")
    assert capsys.readouterr().err == "sdready notify: cannot notify: no socket\n"


def test_a_command_never_imports_logging() -> None:
    code = (
        "import sys; before = set(sys.modules); from sdready._log import logger, stderr_log; "
        "log = stderr_log('x', 20); log.__enter__(); logger.info('hello'); logger.debug('no'); "
        "log.__exit__(); print('logging' in set(sys.modules) - before)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (done.stdout, done.stderr) == ("False\n", "sdready x: hello\n")
    # The control: the same call outside a command goes through logging.
    code = code.replace("log.__enter__(); ", "").replace("log.__exit__(); ", "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "True\n"


def test_the_library_logger_is_loggings() -> None:
    assert logger.name == "sdready" and logger.getEffectiveLevel() <= logging.DEBUG
