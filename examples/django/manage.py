"""Django's command-line utility for the example project (as ``startproject`` writes it).

Under systemd, ``python manage.py runserver 127.0.0.1:8000 --noreload`` serves and sends
READY=1 once it listens (development only); every other command (``migrate``, ``check``,
``shell``) stays inert, even in an ``ExecStartPre=`` of a ``Type=notify`` unit.
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
