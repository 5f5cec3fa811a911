"""Django app config for Sea Cucumber."""

from django.apps import AppConfig


class SeaCucumberConfig(AppConfig):
    name = "seacucumber"
    verbose_name = "Sea Cucumber"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import status
        from .events import checks  # noqa: F401 - registers the system checks

        status.connect()
