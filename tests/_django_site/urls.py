import os

from django.http import HttpResponse
from django.urls import path


def index(request: object) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def pid(request: object) -> HttpResponse:
    return HttpResponse(str(os.getpid()), content_type="text/plain")


urlpatterns = [path("", index), path("pid", pid)]
