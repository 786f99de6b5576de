"""WSGI entry point, as ``startproject`` writes it: sdready needs nothing here.

waitress-serve --listen=127.0.0.1:8000 mysite.wsgi:application
gunicorn -c python:sdready.plugins.gunicorn --bind 127.0.0.1:8000 mysite.wsgi:application
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_wsgi_application()
