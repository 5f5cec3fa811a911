"""URLs: ``path("ses/", include("seacucumber.urls"))`` serves the event webhook at
``ses/events/`` and the Prometheus scrape endpoint at ``ses/metrics/``."""

from django.urls import path

from .events.views import events
from .shared.metrics import metrics_view

app_name = "seacucumber"
urlpatterns = [
    path("events/", events, name="events"),
    path("metrics/", metrics_view, name="metrics"),
]
