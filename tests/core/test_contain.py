"""_contain: our failures contained, the app's signals and errors intact."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap

import pytest
from sdready._contain import chain_signal, contained


def test_our_failure_is_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    with contained("testing"):
        raise RuntimeError("ours")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "testing failed; the app is unaffected" in errors[0].getMessage()
    assert errors[0].exc_info is not None


def test_allowed_errors_propagate() -> None:
    with pytest.raises(KeyError), contained("testing", allow=(KeyError,)):
        raise KeyError("a bad option must stop the start")


def test_base_exceptions_are_never_swallowed() -> None:
    with pytest.raises(KeyboardInterrupt), contained("testing"):
        raise KeyboardInterrupt


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_ours_runs_then_the_previous_python_handler() -> None:
    result = run(
        """
        import os, signal
        from sdready._contain import chain_signal
        signal.signal(signal.SIGUSR1, lambda s, f: print("theirs", s == signal.SIGUSR1))
        chain_signal(signal.SIGUSR1, lambda s: print("ours"))
        os.kill(os.getpid(), signal.SIGUSR1)
        """
    )
    assert result.stdout.split("\n")[:3] == ["ours", "theirs True", ""], result.stderr


def test_the_default_action_still_ends_the_process() -> None:
    result = run(
        """
        import os, signal, sys
        from sdready._contain import chain_signal
        chain_signal(signal.SIGTERM, lambda s: print("ours", flush=True))
        os.kill(os.getpid(), signal.SIGTERM)
        print("survived")
        """
    )
    assert result.returncode == -signal.SIGTERM
    assert result.stdout == "ours\n"


def test_our_failure_inside_a_handler_is_contained() -> None:
    result = run(
        """
        import os, signal
        from sdready._contain import chain_signal
        signal.signal(signal.SIGUSR1, lambda s, f: print("theirs"))
        chain_signal(signal.SIGUSR1, lambda s: 1 / 0)
        os.kill(os.getpid(), signal.SIGUSR1)
        print("survived")
        """
    )
    assert result.stdout == "theirs\nsurvived\n", result.stderr


def test_only_default_leaves_a_custom_handler_alone() -> None:
    def theirs(signum: int, frame: object) -> None:
        pass

    previous = signal.signal(signal.SIGUSR2, theirs)
    try:
        assert not chain_signal(signal.SIGUSR2, lambda s: None, only_default=True)
        assert signal.getsignal(signal.SIGUSR2) is theirs
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_forked_child_does_not_run_ours() -> None:
    result = run(
        """
        import os, signal
        from sdready._contain import chain_signal
        signal.signal(signal.SIGUSR1, lambda s, f: print("theirs", os.getpid() != parent))
        parent = os.getpid()
        chain_signal(signal.SIGUSR1, lambda s: print("ours"))
        pid = os.fork()
        if pid == 0:
            os.kill(os.getpid(), signal.SIGUSR1)
            os._exit(0)
        os.waitpid(pid, 0)
        """
    )
    assert result.stdout == "theirs True\n", result.stderr
