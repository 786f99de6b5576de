"""Settings of the test project (see the package docstring for the SITE_* variables)."""

import json
import logging
import os
import sys

logging.basicConfig(
    level=logging.DEBUG, stream=sys.stderr, format="%(process)d %(levelname)s %(name)s: %(message)s"
)

SECRET_KEY = "sdready-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "_django_site.urls"
WSGI_APPLICATION = "_django_site.wsgi.application"  # runserver loads it too (the gap)
USE_TZ = True
MIDDLEWARE: list[str] = []
_MODE = os.environ.get("SITE_MODE", "sdready")
INSTALLED_APPS = {
    "sdready": ["sdready.plugins.django"],
    "plain": [],
    "naive": ["_django_site.naive.NaiveConfig"],
}[_MODE]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SITE_DB", ":memory:"),
    }
}
if "SITE_SDREADY" in os.environ:
    SDREADY = json.loads(os.environ["SITE_SDREADY"])
LOGGING_CONFIG = None  # keep the basicConfig above: sdready's DEBUG lines say why
