"""A tiny Django project for the Django plugin's tests; the environment picks its variant.

``SITE_MODE``: ``sdready`` (default: the plugin in INSTALLED_APPS), ``plain`` (Django
alone), ``naive`` (an app whose ``ready()`` sends READY itself: the early READY of the
obvious approach). ``SITE_ASGI``: ``sdready`` (default: the plugin's
get_asgi_application) or ``django`` (Django's own). ``SITE_SDREADY``: JSON for
``settings.SDREADY``. ``SITE_DB``: the sqlite file (default: in memory). ``SITE_GAP``:
seconds of slow startup after the app exists, before the server binds. ``SITE_FAIL=1``:
the app module raises after the app exists. Just before returning the app, asgi.py and
wsgi.py print ``APP_LOADED <time.monotonic()> THREADS <names>`` to stderr.
"""
