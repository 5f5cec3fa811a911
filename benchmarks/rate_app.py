"""The benchmarks' Celery app and Django settings (rate_bench.py, chaos.py,
lanes_bench.py, soak.py): the
repository's celeryconfig.py, Sea Cucumber's task, everything else from the environment the
benchmark sets.

``BENCH_CELERY_RATE_LIMIT`` puts Celery's own per-worker ``rate_limit`` on the send task,
as Sea Cucumber 1.x did, for the side-by-side comparison."""

import json
import os

import django
from celery import Celery
from django.conf import settings

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=["seacucumber"],
        DATABASES={},
        EMAIL_BACKEND="seacucumber.backend.SESBackend",
        DEFAULT_FROM_EMAIL="bench@example.com",
        AWS_SES_REGION_NAME="us-east-1",
        SEACUCUMBER_ENDPOINT_URL=os.environ.get("SEACUCUMBER_ENDPOINT_URL"),
        SEACUCUMBER_REDIS_URL=os.environ.get("SEACUCUMBER_REDIS_URL") or None,
        SEACUCUMBER_REDIS_PREFIX=os.environ.get("SEACUCUMBER_REDIS_PREFIX", "seacucumber"),
        SEACUCUMBER_OUTBOX={"1": True, "0": False}.get(os.environ.get("SEACUCUMBER_OUTBOX", "")),
        SEACUCUMBER_OUTBOX_GRACE=float(os.environ.get("SEACUCUMBER_OUTBOX_GRACE", "30")),
        SEACUCUMBER_OUTBOX_SWEEP_INTERVAL=float(
            os.environ.get("SEACUCUMBER_OUTBOX_SWEEP_INTERVAL", "10")),
        SEACUCUMBER_SHARED_RATE=os.environ.get("SEACUCUMBER_SHARED_RATE", "1") == "1",
        SEACUCUMBER_RATE_LIMIT=float(os.environ.get("SEACUCUMBER_RATE_LIMIT") or 0) or None,
        SEACUCUMBER_RETRY_BASE_DELAY=0.5,
        SEACUCUMBER_READ_TIMEOUT=float(os.environ.get("SEACUCUMBER_READ_TIMEOUT", "30")),
        SEACUCUMBER_QUEUE=os.environ.get("SEACUCUMBER_QUEUE", "mail"),
        LOGGING_CONFIG=None,
        # lanes_bench.py: the lanes under test (unset: the package's default lanes)
        **({"SEACUCUMBER_LANES": json.loads(os.environ["SEACUCUMBER_LANES"])}
           if os.environ.get("SEACUCUMBER_LANES") else {}),
    )
    django.setup()

app = Celery("rate_app")
app.config_from_object("celeryconfig")
app.conf.worker_hijack_root_logger = False
if os.environ.get("BENCH_VISIBILITY"):  # the chaos run: a killed worker's tasks come back soon
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "visibility_timeout": float(os.environ["BENCH_VISIBILITY"]),
        # sweep expired unacknowledged tasks back every second (kombu: every 100 s)
        "unacked_restore_interval": 1, "unacked_restore_throttle": 1}
if os.environ.get("BENCH_CELERY_RATE_LIMIT"):
    app.conf.task_annotations = {
        "seacucumber.send_email": {"rate_limit": os.environ["BENCH_CELERY_RATE_LIMIT"]}}
app.autodiscover_tasks(["seacucumber"])
