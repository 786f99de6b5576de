"""The obvious approach, for controls: READY from AppConfig.ready(), before any server binds."""

import sdready
from django.apps import AppConfig


class NaiveConfig(AppConfig):
    name = "_django_site.naive"
    label = "naive"

    def ready(self) -> None:
        sdready.ready("Ready (sent from AppConfig.ready)")
