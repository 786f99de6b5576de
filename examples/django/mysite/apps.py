import os
import time

from django.apps import AppConfig


class MysiteConfig(AppConfig):
    name = "mysite"

    def ready(self) -> None:
        # Pretend startup work (warming caches, loading a model): READY must not come
        # before it, nor before the server has bound its socket after it.
        time.sleep(float(os.environ.get("EXAMPLE_STARTUP_DELAY", "0.5")))
