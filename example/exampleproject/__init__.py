"""The example project: Sea Cucumber set up exactly as README.rst says."""

from .celery import app as celery_app

__all__ = ["celery_app"]
