"""Django app config for Sea Cucumber."""

from django.apps import AppConfig, apps


class SeaCucumberConfig(AppConfig):
    name = "seacucumber"
    verbose_name = "Sea Cucumber"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, dkim  # noqa: F401 - checks: registers the system checks
        from .operations import statistics  # noqa: F401 - its beat task

        dkim.check_settings()  # a bad DKIM key stops start-up, not every message
        if apps.is_installed("django.contrib.admin"):
            from .dashboard import admin  # noqa: F401 - registers the dashboard page
