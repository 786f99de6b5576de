"""gunicorn configuration, composed with sdready (``gunicorn -c gunicorn.conf.py flask_app:app``).

gunicorn applies every name here that matches one of its settings; the ``sdready_*``
names are read by sdready. ``install(globals())`` comes last: it wraps the hooks defined
above, so they keep running exactly as before.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WORKERS", "2"))
timeout = 30
graceful_timeout = 20

# READY once this many workers can serve ("all": every one of them); SDREADY_* variables
# in the unit's environment win over these.
sdready_ready_workers = 1
sdready_ready_timeout = 60


def post_worker_init(worker):
    # Runs before sdready counts the worker as ready (WSGI workers).
    worker.log.info("worker %s initialised", worker.pid)


from sdready.plugins.gunicorn import install  # noqa: E402  (last, after your hooks)

install(globals())
