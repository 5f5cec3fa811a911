"""Django app config for Sea Cucumber."""

from django.apps import AppConfig


class SeaCucumberConfig(AppConfig):
    name = "seacucumber"
    verbose_name = "Sea Cucumber"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, dkim, status  # noqa: F401 - checks: registers the system checks

        dkim.check_settings()  # a bad DKIM key stops start-up, not every message
        status.connect()
