"""A Django project set up the way the README tells users to."""

from .celery import app as celery_app

__all__ = ["celery_app"]
