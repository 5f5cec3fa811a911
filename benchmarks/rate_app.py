"""The benchmarks' Celery app and Django settings (rate_bench.py, chaos.py,
lanes_bench.py, soak.py): the
repository's celeryconfig.py, Sea Cucumber's task, everything else from the environment the
benchmark sets. ``floor_send`` is Celery's own floor for rate_bench.py's capacity runs.

``BENCH_CELERY_RATE_LIMIT`` puts Celery's own per-worker ``rate_limit`` on the send task,
as Sea Cucumber 1.x did, for the side-by-side comparison."""

import functools
import json
import os
from typing import Any

import django
from celery import Celery
from celery.signals import worker_init
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
        # the package's defaults unless the benchmark sets them
        **{name: float(os.environ[name]) for name in (
            "SEACUCUMBER_OUTBOX_GRACE", "SEACUCUMBER_OUTBOX_SWEEP_INTERVAL",
            "SEACUCUMBER_HOLDER_TTL") if os.environ.get(name)},
        SEACUCUMBER_SHARED_RATE=os.environ.get("SEACUCUMBER_SHARED_RATE", "1") == "1",
        SEACUCUMBER_RATE_LIMIT=float(os.environ.get("SEACUCUMBER_RATE_LIMIT") or 0) or None,
        SEACUCUMBER_RETRY_BASE_DELAY=0.5,
        SEACUCUMBER_READ_TIMEOUT=float(os.environ.get("SEACUCUMBER_READ_TIMEOUT", "30")),
        SEACUCUMBER_QUEUE=os.environ.get("SEACUCUMBER_QUEUE", "mail"),
        LOGGING_CONFIG=None,
        # buckets_bench.py: the client options a mailer of another SES account names
        SEACUCUMBER_TRUSTED_ENDPOINT_URLS=json.loads(
            os.environ.get("BENCH_TRUSTED_ENDPOINT_URLS") or "[]"),
        SEACUCUMBER_TRUSTED_REGIONS=json.loads(os.environ.get("BENCH_TRUSTED_REGIONS") or "[]"),
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
if os.environ.get("CELERY_BROKER_URL", "").startswith("sqs://"):  # recovery.py: moto's SQS
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options, "region": "us-east-1", "is_secure": False,
        "wait_time_seconds": 0, "polling_interval": 0.1}
if os.environ.get("BENCH_CELERY_RATE_LIMIT"):
    app.conf.task_annotations = {
        "seacucumber.send_email": {"rate_limit": os.environ["BENCH_CELERY_RATE_LIMIT"]}}
app.autodiscover_tasks(["seacucumber"])


# --- the bare boto3 call, and Celery's own floor (rate_bench.py) -------------------------


def bare_ses_client(endpoint: str) -> Any:
    """A plain boto3 SES client for ``endpoint``: no Sea Cucumber code, boto3's retries off
    (as Sea Cucumber's own client has them)."""
    import boto3
    from botocore.config import Config

    return boto3.client("ses", endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(retries={"total_max_attempts": 1}))


def bare_send(client: Any, raw: bytes) -> str:
    """The bare call every comparison makes: ``raw`` to one recipient; the SES MessageId."""
    return client.send_raw_email(Source="bench@example.com", Destinations=["to@example.com"],
                                 RawMessage={"Data": raw})["MessageId"]


@functools.cache
def _floor_client() -> Any:
    return bare_ses_client(os.environ["SEACUCUMBER_ENDPOINT_URL"])


@app.task(name="benchmarks.floor_send")
def floor_send(raw: str) -> str:
    """The bare call as a Celery task, nothing else: what Celery and kombu cost a send before
    any of Sea Cucumber's work (acknowledged late, as celeryconfig.py says)."""
    return bare_send(_floor_client(), raw.encode())


@worker_init.connect
def _floor_client_before_fork(**_: object) -> None:
    """Made before a prefork pool forks, as Sea Cucumber's own client is (``ses.clients.warm``)."""
    if os.environ.get("BENCH_FLOOR"):
        _floor_client()
