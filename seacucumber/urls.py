"""URLs: ``path("ses/", include("seacucumber.urls"))`` serves the event webhook at
``ses/events/``, the Prometheus scrape endpoint at ``ses/metrics/`` and one-click unsubscribe
links at ``ses/unsubscribe/<token>/`` (``SEACUCUMBER_BASE_URL`` names where this is served)."""

from django.urls import path

from .events.unsubscribe import unsubscribe
from .events.views import events
from .operations.metrics import metrics_view
from .payload import UNSUBSCRIBE_PATH

app_name = "seacucumber"
urlpatterns = [
    path("events/", events, name="events"),
    path("metrics/", metrics_view, name="metrics"),
    path(f"{UNSUBSCRIBE_PATH}<str:token>/", unsubscribe, name="unsubscribe"),
]
