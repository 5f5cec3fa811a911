"""The demo's Celery app: the repository's celeryconfig.py, as a user would load it."""

import json
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

app = Celery("demo")
app.config_from_object("celeryconfig")
# The serverless broker (kombu's filesystem transport) needs its folders.
app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    **json.loads(os.environ.get("SEACUCUMBER_DEMO_TRANSPORT_OPTIONS", "{}")),
}
app.autodiscover_tasks(["seacucumber"])
