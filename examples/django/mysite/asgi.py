"""ASGI entry point: sdready's get_asgi_application in place of Django's.

Django's own handler refuses the lifespan scope, so a server cannot tell Django when it
starts and stops; this one speaks the lifespan protocol for it: READY=1 once uvicorn
listens, STOPPING=1 when shutdown begins, watchdog pings from the event loop.

    uvicorn mysite.asgi:application --host 127.0.0.1 --port 8000
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from sdready.plugins.django import get_asgi_application

application = get_asgi_application()
