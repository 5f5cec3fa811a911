"""Django app config for Sea Cucumber."""

from django.apps import AppConfig


class SeaCucumberConfig(AppConfig):
    name = "seacucumber"
    verbose_name = "Sea Cucumber"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, dkim, quota, status  # noqa: F401 - checks, quota: system checks
        from .events import checks as event_checks  # noqa: F401 - registers system checks

        dkim.check_settings()  # a bad DKIM key stops start-up, not every message
        status.connect()
