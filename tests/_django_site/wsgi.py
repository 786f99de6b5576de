import os

from django.core.wsgi import get_wsgi_application

from _django_site._slow import after_app

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "_django_site.settings")

application = get_wsgi_application()
after_app()
