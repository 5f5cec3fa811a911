"""The example project's Celery app, as Celery's Django guide (and our README) has it.

``CELERY_CONFIG_MODULE`` (Celery's own variable: what ``celery --config MODULE`` sets) names a
module of Celery settings to use instead of Django's ``CELERY_`` settings. docker-compose.yml
sets it to ``celeryconfig``, the worker configuration README.rst recommends (in the image at
/app, on ``PYTHONPATH``), so the web process, the workers and Flower all run with it. Without
it, as README.rst's "Set up" describes, the ``CELERY_`` settings of settings.py configure the
app; they agree with celeryconfig.py (tests/test_compose.py checks both).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")

app = Celery("exampleproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
if os.environ.get("CELERY_CONFIG_MODULE"):
    # replaces the source above (config_from_object does not merge): one configuration
    app.config_from_object(os.environ["CELERY_CONFIG_MODULE"])
app.autodiscover_tasks()
