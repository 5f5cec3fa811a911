"""The project's Celery app, exactly as a Django user writes it."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

if os.environ.get("SEACUCUMBER_TEST_TRACE_FILE"):  # tests/test_tracing.py's workers
    from tests.proj import tracing  # noqa: F401
