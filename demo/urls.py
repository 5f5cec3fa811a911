"""The demo's one route: Sea Cucumber's event webhook, as a user includes it."""

from django.urls import include, path

urlpatterns = [path("ses/", include("seacucumber.urls"))]
