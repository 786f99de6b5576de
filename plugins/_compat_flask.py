"""What the Flask plugin uses of Flask, click, werkzeug and gunicorn beyond their documented API.

Each use goes through a function here whose comment names the releases that have it and
why the plugin needs it; :data:`INTERNALS` lists them, and tests/plugins/test_compat.py
checks each against the installed versions (the newest, and the extras' floors in the
oldest-versions CI job).
"""

from __future__ import annotations

import os
import sys

import click
from flask.cli import FlaskGroup, run_command
from flask.helpers import get_debug_flag

__all__ = [
    "INTERNALS",
    "cli_context",
    "is_flask_cli",
    "is_run_command",
    "reloader_child",
    "run_command_reloads",
    "under_gunicorn",
    "werkzeug_server_fd",
]

#: (name, distribution, first release that has it), as in the gunicorn plugin's compat.
INTERNALS: tuple[tuple[str, str, str], ...] = (
    ("click.get_current_context", "click", "8.1"),
    ("flask.cli.FlaskGroup", "flask", "2.3"),
    ("flask.cli.run_command", "flask", "2.3"),
    ("run_command --reload", "flask", "2.3"),
    ("flask.helpers.get_debug_flag", "flask", "2.3"),
    ("WERKZEUG_RUN_MAIN", "werkzeug", "2.3"),
    ("WERKZEUG_SERVER_FD", "werkzeug", "2.3"),
    ("SERVER_SOFTWARE=gunicorn/", "gunicorn", "23.0"),
    ("gunicorn.arbiter", "gunicorn", "23.0"),
)


def cli_context() -> click.Context | None:
    """click >= 8.1: the click command running now, if any: Flask's CLI loads the app inside
    one, which is how the plugin knows ``flask run`` from ``flask shell`` or a custom CLI."""
    return click.get_current_context(silent=True)


def is_flask_cli(ctx: click.Context) -> bool:
    """Flask >= 2.3: the ``flask`` command (and ``FlaskGroup`` CLIs of one's own) is a
    ``FlaskGroup`` at the root of the context."""
    return isinstance(ctx.find_root().command, FlaskGroup)


def is_run_command(ctx: click.Context) -> bool:
    """Flask >= 2.3: ``flask.cli.run_command`` is the ``flask run`` command object."""
    return ctx.command is run_command


def run_command_reloads(ctx: click.Context) -> bool:
    """Flask >= 2.3: whether ``flask run`` starts werkzeug's reloader, decided as it does:
    its ``--reload/--no-reload`` option (``reload``, default None) or else the debug flag
    (``flask.helpers.get_debug_flag``)."""
    reload = ctx.params.get("reload")
    return bool(get_debug_flag() if reload is None else reload)


def reloader_child() -> bool:
    """werkzeug >= 2.3: its reloader starts the serving child with ``WERKZEUG_RUN_MAIN=true``;
    the watcher, the unit's main process, speaks for it."""
    return os.environ.get("WERKZEUG_RUN_MAIN") == "true"


def werkzeug_server_fd() -> str:
    """werkzeug >= 2.3: ``run_simple()`` names the socket it bound in ``WERKZEUG_SERVER_FD``
    (for its reloader child): a socket that accepts before this process serves."""
    return os.environ.get("WERKZEUG_SERVER_FD", "")


def under_gunicorn() -> bool:
    """gunicorn >= 23.0: its arbiter exports ``SERVER_SOFTWARE=gunicorn/<version>`` (workers
    inherit it) and lives in ``gunicorn.arbiter``: there gunicorn owns signals and exits."""
    software = os.environ.get("SERVER_SOFTWARE", "")
    return software.startswith("gunicorn/") and "gunicorn.arbiter" in sys.modules
