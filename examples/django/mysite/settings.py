"""Settings of the example project: the two sdready lines are marked."""

import logging
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-use-a-real-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "mysite",  # its ready() does some pretend startup work (mysite/apps.py)
    "sdready.plugins.django",  # sdready: READY=1 once the server accepts connections
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {  # EXAMPLE_DB: the tests use ":memory:" and leave no file behind
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", BASE_DIR / "db.sqlite3"),
    },
}

# sdready: every key optional (docs/reference.md, "Django settings"). With WatchdogSec= in
# the unit, each ping first checks that the database answers SELECT 1.
SDREADY = {"ready_timeout": "30s", "health": "database"}

logging.basicConfig(level=logging.INFO)  # sdready says on the "sdready" logger why it waits
