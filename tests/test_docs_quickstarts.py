"""Every quick start in README.md runs as written.

Each ```python block under "## Quick starts" is written to a file as it stands and served by
the command its section gives (the ``ExecStart=`` of the section's unit snippet, with
``/srv/app/.venv/bin/`` pointing at this venv), under a real server with a
``NotifyRecorder`` as systemd: READY=1 must arrive and a GET at that moment must be
answered with 200. The test completes only what the text names as the reader's own (the
ASGI section's ``app``, the gunicorn section's ``app:app``), and moves port 8000 to a free
one so tests can run side by side.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sdready
from _servers import ServerProcess, child_env, free_port, http_get
from sdready.testing import NotifyRecorder, RecorderTimeout

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
READY_TIMEOUT = 45.0  # bounds a broken run only: a loaded 2-core machine imports slowly
PORT_ATTEMPTS = 3

pytestmark = pytest.mark.timeout(180)


def _sections(readme: str) -> dict[str, str]:
    """The "### " subsections of "## Quick starts", by heading."""
    part = readme.split("\n## Quick starts\n", 1)[1].split("\n## ", 1)[0]
    chunks = re.split(r"^### (.+)$", part, flags=re.M)[1:]
    return dict(zip(chunks[::2], chunks[1::2], strict=True))


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section, flags=re.M | re.S)


SECTIONS = _sections((ROOT / "README.md").read_text())


@dataclass(frozen=True)
class QuickStart:
    """A quick start's section, and what the text says the reader supplies."""

    heading: str
    file: str  # where the block goes: the file the section's command reads
    yours: dict[str, str]  # files the text names as the reader's own
    command: str | None = None  # for a section with no unit snippet: the server the text names
    prepend: str = ""  # the reader's own code the block follows (the ASGI section's `app`)
    more: tuple[str, ...] = ()  # files the blocks before the last go to, appended to yours


# The reader's own ASGI app, for the section that wraps "the ASGI application your module
# already defines (a Starlette app, …)".
_STARLETTE_APP = """\
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return PlainTextResponse("hello")


app = Starlette(routes=[Route("/", hello)])
"""

# The reader's own WSGI app, for "`app:app` ... is yours".
_WSGI_APP = """\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"""

# The reader's own Django project (`django-admin startproject mysite`, trimmed): the section
# adds two lines to its settings and replaces its asgi.py.
_DJANGO_SETTINGS = """\
SECRET_KEY = "quick-start"
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
"""
_DJANGO_URLS = """\
from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("", lambda request: HttpResponse("hello"))]
"""

QUICK_STARTS = [
    QuickStart("FastAPI", "app.py", {}),
    QuickStart(
        "Starlette, or any ASGI app",
        "app.py",
        {},
        command=f"{BIN}/uvicorn app:app --host 127.0.0.1 --port 8000",
        prepend=_STARLETTE_APP,
    ),
    QuickStart("Flask", "app.py", {}),
    QuickStart(
        "Django",
        "mysite/asgi.py",
        {
            "mysite/__init__.py": "",
            "mysite/settings.py": _DJANGO_SETTINGS,
            "mysite/urls.py": _DJANGO_URLS,
        },
        more=("mysite/settings.py",),
    ),
    QuickStart("gunicorn", "gunicorn.conf.py", {"app.py": _WSGI_APP}),
]


def _command(quick: QuickStart) -> list[str]:
    if quick.command is not None:
        return quick.command.split()
    (unit,) = _blocks(SECTIONS[quick.heading], "ini")
    line = re.search(r"^ExecStart=(.+)$", unit, re.M)
    assert line is not None, unit
    return line.group(1).replace("/srv/app/.venv/bin/", f"{BIN}/").split()


def _on_port(text: str, port: int) -> str:
    return re.sub(r"\b8000\b", str(port), text)


def _python_blocks(quick: QuickStart) -> tuple[dict[str, str], str]:
    """The section's python blocks appended to the reader's files; the command's file last."""
    *before, block = _blocks(SECTIONS[quick.heading], "python")
    assert len(before) == len(quick.more), f"{quick.heading}: a block for each of {quick.more}"
    files = dict(quick.yours)
    for name, text in zip(quick.more, before, strict=True):
        files[name] = files.get(name, "") + text
    return files, block


@contextlib.contextmanager
def _serve(block: str, quick: QuickStart, tmp_path: Path, port: int) -> Iterator[ServerProcess]:
    folder = tmp_path / f"port-{port}"
    folder.mkdir()
    files, _ = _python_blocks(quick)
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    source = quick.prepend + "\n" + block if quick.prepend else block
    (folder / quick.file).write_text(_on_port(source, port))
    # NOTIFY_SOCKET: the recorder fixture's, inherited; the group stops together (workers too).
    with ServerProcess(
        [_on_port(arg, port) for arg in _command(quick)],
        env=child_env({"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"]}),
        log=folder / "server.log",
        cwd=folder,
    ) as served:
        yield served


def _wait_ready(served: ServerProcess, recorder: NotifyRecorder) -> bool:
    """True at READY=1; False when the server exited first."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(RecorderTimeout):
            recorder.wait_for("READY=1", timeout=0.2)
            return True
        if served.process.poll() is not None:
            return False
    raise AssertionError(f"no READY=1; got {[str(m) for m in recorder]}\n{served.output(3000)}")


def _get(port: int) -> int:
    return http_get(("127.0.0.1", port), timeout=10).status


@pytest.mark.parametrize("quick", QUICK_STARTS, ids=lambda q: q.heading.split(",")[0])
def test_quick_start_runs_as_written(
    quick: QuickStart, notify_socket: NotifyRecorder, tmp_path: Path
) -> None:
    _, block = _python_blocks(quick)
    for attempt in range(PORT_ATTEMPTS):
        notify_socket.clear()
        port = free_port()
        with _serve(block, quick, tmp_path, port) as served:
            if _wait_ready(served, notify_socket):
                # The moment READY arrived: a client systemd starts now must be answered.
                assert _get(port) == 200, served.output(3000)
                if quick.heading == "gunicorn":
                    assert "initialised" in served.output(3000)  # "your hooks keep running"
                return
        if "in use" not in served.output(3000).lower() or attempt == PORT_ATTEMPTS - 1:
            raise AssertionError(f"exited before READY=1:\n{served.output(3000)}")


def test_every_quick_start_is_run() -> None:
    """A new quick start with Python in it must be added to QUICK_STARTS, so it runs too."""
    with_python = {heading for heading, text in SECTIONS.items() if _blocks(text, "python")}
    assert with_python == {quick.heading for quick in QUICK_STARTS}


def test_without_the_sdready_line_no_ready(notify_socket: NotifyRecorder, tmp_path: Path) -> None:
    """Control: the FastAPI quick start minus ``SystemdNotify(app)`` serves, but never READY.

    So the READY above comes from the quick start's own line, not from anything around it.
    """
    quick = QUICK_STARTS[0]
    (block,) = _blocks(SECTIONS[quick.heading], "python")
    without = re.sub(r"^SystemdNotify\(app\).*$", "", block, count=1, flags=re.M)
    assert without != block
    port = free_port()
    with _serve(without, quick, tmp_path, port) as served:
        deadline = time.monotonic() + READY_TIMEOUT  # bounds a broken run only
        status = None
        while status is None and served.process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # not listening yet
                status = _get(port)
            time.sleep(0.05)
        assert status == 200, served.output(3000)
    # The server has exited; a BARRIER from here is answered only after everything it sent.
    assert sdready.Notifier().barrier(timeout=10)
    assert [m for m in notify_socket if "READY" in m] == []


def test_quick_starts_are_found() -> None:
    """Control for the extraction: the README's sections and blocks are where we look."""
    assert "FastAPI" in SECTIONS and "gunicorn" in SECTIONS
    assert "SystemdNotify(app)" in _blocks(SECTIONS["FastAPI"], "python")[0]
    uvicorn = [f"{BIN}/uvicorn", "app:app", "--host", "127.0.0.1", "--port", "8000"]
    assert _command(QUICK_STARTS[0]) == uvicorn  # from the section's ExecStart=


# -- each quick start says what to install ------------------------------------------------

_IMPORTED = re.compile(r"^\s*(?:from|import)\s+(\w+)", re.M)
_PROGRAM = re.compile(r"/\.venv/bin/([\w-]+)")
_WORKER = re.compile(r"-k\s+(\w+)\.")
_INSTALL = re.compile(r"^\$ pip install (.+?)(?:\s+#.*)?$", re.M)
_NOT_A_PACKAGE = {"python", "sdready", *sys.stdlib_module_names}
#: Console scripts named otherwise than the distribution that brings them.
_SCRIPTS = {"waitress-serve": "waitress"}


def needed(section: str) -> set[str]:
    """The distributions a quick start's code imports and its commands run."""
    names = {name for block in _blocks(section, "python") for name in _IMPORTED.findall(block)}
    names |= {_SCRIPTS.get(p, p) for p in _PROGRAM.findall(section)} | set(_WORKER.findall(section))
    return {name.replace("_", "-") for name in names - _NOT_A_PACKAGE}


def installed(section: str) -> set[str]:
    """What the section's ``pip install`` line brings: packages, and extras as theirs."""
    found: set[str] = set()
    for line in _INSTALL.findall("\n".join(_blocks(section, "console"))):
        for word in line.replace("'", "").split():
            name, _, extras = word.partition("[")
            found |= {name, *extras.rstrip("]").split(",")} - {""}
    return found


@pytest.mark.parametrize("heading", list(SECTIONS))
def test_each_quick_start_has_its_install_line(heading: str) -> None:
    section = SECTIONS[heading]
    assert installed(section), f"{heading}: no `$ pip install` line"
    assert needed(section) <= installed(section), (heading, needed(section), installed(section))


def test_a_missing_server_in_the_install_line_is_caught() -> None:
    """Control: the 0.1 Flask quick start, whose extra brings no server."""
    section = SECTIONS["Flask"].replace(" waitress ", " ", 1)
    assert "waitress" in needed(section) - installed(section)
