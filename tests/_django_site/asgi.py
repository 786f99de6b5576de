import os

from _django_site._slow import after_app

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "_django_site.settings")

if os.environ.get("SITE_ASGI", "sdready") == "sdready":
    from sdready.plugins.django import get_asgi_application
else:
    from django.core.asgi import get_asgi_application

application = get_asgi_application()
after_app()
