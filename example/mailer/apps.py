from django.apps import AppConfig


class MailerConfig(AppConfig):
    name = "mailer"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import receivers  # noqa: F401 - connects the inbound_received receiver
