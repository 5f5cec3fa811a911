"""URLs of the example project."""

from django.contrib import admin
from django.urls import include, path
from mailer import views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("ses/", include("seacucumber.urls")),  # the SES event webhook: ses/events/
]
