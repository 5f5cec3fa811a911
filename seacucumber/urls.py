"""URLs: ``path("ses/", include("seacucumber.urls"))`` serves the event webhook at
``ses/events/``."""

from django.urls import path

from .events.views import events

app_name = "seacucumber"
urlpatterns = [path("events/", events, name="events")]
