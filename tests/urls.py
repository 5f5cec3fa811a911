"""URLs of the test project: the admin and Sea Cucumber's event webhook."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ses/", include("seacucumber.urls")),
]
