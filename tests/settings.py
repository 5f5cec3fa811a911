"""Django settings for the test suite and the worker processes it starts.

Worker processes get their broker, result backend, queue and SES endpoint from the
environment the tests start them with.
"""

import json
import os
import tempfile

SECRET_KEY = "tests-only"  # noqa: S105
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",  # live_server serves the admin's CSS to the browser tests
    "seacucumber",
]
# A sqlite FILE, so worker processes open the very database the tests use (pytest-django
# creates it at TEST NAME). The test process puts its path in the environment, which the
# workers it starts inherit. WAL and a long busy timeout let them write side by side.
TEST_DB = os.environ.setdefault(
    "SEACUCUMBER_TEST_DB",
    os.path.join(tempfile.gettempdir(), f"seacucumber-test-{os.getpid()}.sqlite3"),
)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": TEST_DB,
        "TEST": {"NAME": TEST_DB},
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
ROOT_URLCONF = "tests.urls"
STATIC_URL = "static/"  # the live_server fixture serves static files from here
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DEFAULT_FROM_EMAIL = "sender@example.com"
SERVER_EMAIL = "errors@example.com"
EMAIL_BACKEND = "seacucumber.backend.SESBackend"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis broker: a SIGKILLed worker's unacknowledged tasks come back after the visibility
# timeout; crash tests shorten it to seconds (celeryconfig.py keeps two hours).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": float(os.environ.get("SEACUCUMBER_TEST_VISIBILITY", "3600")),
    # kombu sweeps expired unacknowledged tasks back to the queue only every
    # interval x throttle seconds (10 x 10 by default): with visibility timeouts of seconds,
    # sweep every second, or a killed worker's tasks may wait 100 s to come back
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
if CELERY_BROKER_URL.startswith("sqs://"):  # moto's SQS (tests/test_sqs.py): plain HTTP, polled
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "region": "us-east-1", "is_secure": False, "wait_time_seconds": 0,
        "polling_interval": 0.1,
        "visibility_timeout": float(os.environ.get("SEACUCUMBER_TEST_VISIBILITY", "1800")),
    }

AWS_SES_REGION_NAME = "us-east-1"
SEACUCUMBER_ENDPOINT_URL = os.environ.get("SEACUCUMBER_ENDPOINT_URL")
SEACUCUMBER_RETRY_BASE_DELAY = float(os.environ.get("SEACUCUMBER_RETRY_BASE_DELAY", "0.2"))
# The shared rate: moto answers a sandbox's 1/s, which would pace every worker test; tests of
# the rate itself set SEACUCUMBER_RATE_LIMIT="" (learn it) or a rate of their own.
SEACUCUMBER_RATE_LIMIT = float(os.environ.get("SEACUCUMBER_RATE_LIMIT", "1000") or 0) or None
SEACUCUMBER_REDIS_URL = os.environ.get("SEACUCUMBER_REDIS_URL") or None
# a sentinel:// shared state (tests/test_sentinel.py): its master's name
SEACUCUMBER_REDIS_SENTINEL = ({"master_name": os.environ["SEACUCUMBER_TEST_SENTINEL_MASTER"]}
                              if os.environ.get("SEACUCUMBER_TEST_SENTINEL_MASTER") else None)
# tests that start workers give them a key prefix of their own (a limiter, an outbox)
SEACUCUMBER_REDIS_PREFIX = os.environ.get("SEACUCUMBER_REDIS_PREFIX", "seacucumber")
SEACUCUMBER_READ_TIMEOUT = float(os.environ.get("SEACUCUMBER_READ_TIMEOUT", "30"))
SEACUCUMBER_RATE_MAX_WAIT = float(os.environ.get("SEACUCUMBER_RATE_MAX_WAIT", "1"))
SEACUCUMBER_MAX_COUNTDOWN = (float(os.environ["SEACUCUMBER_MAX_COUNTDOWN"])
                             if os.environ.get("SEACUCUMBER_MAX_COUNTDOWN") else None)
# the claim check (tests/test_claimcheck.py, tests/test_sqs.py): store, bucket, S3 at moto
SEACUCUMBER_CLAIM_CHECK_STORE = os.environ.get("SEACUCUMBER_CLAIM_CHECK_STORE") or None
SEACUCUMBER_CLAIM_CHECK_BUCKET = os.environ.get("SEACUCUMBER_CLAIM_CHECK_BUCKET") or None
SEACUCUMBER_S3_ENDPOINT_URL = os.environ.get("SEACUCUMBER_S3_ENDPOINT_URL") or None
SEACUCUMBER_QUOTA_HOLD = float(os.environ.get("SEACUCUMBER_QUOTA_HOLD", "600"))
SEACUCUMBER_QUOTA_REFRESH = float(os.environ.get("SEACUCUMBER_QUOTA_REFRESH", "300"))
# The outbox (on with a Redis broker): crash tests look for lost tasks every second.
# SEACUCUMBER_OUTBOX=0 in the environment turns it off, to see what it guards against.
SEACUCUMBER_OUTBOX = {"1": True, "0": False}.get(os.environ.get("SEACUCUMBER_OUTBOX", ""))
SEACUCUMBER_OUTBOX_GRACE = float(os.environ.get("SEACUCUMBER_OUTBOX_GRACE", "30"))
# worker processes' heartbeats (a dead one's sends are taken over): the package's 5 s
SEACUCUMBER_HOLDER_TTL = float(os.environ.get("SEACUCUMBER_HOLDER_TTL", "5"))
# Lanes: worker tests give theirs (queue names of their own) as JSON in the environment.
if os.environ.get("SEACUCUMBER_TEST_LANES"):
    SEACUCUMBER_LANES = json.loads(os.environ["SEACUCUMBER_TEST_LANES"])
SEACUCUMBER_OUTBOX_SWEEP_INTERVAL = float(os.environ.get("SEACUCUMBER_OUTBOX_SWEEP_INTERVAL",
                                                         "10"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"seacucumber": {"handlers": ["console"], "level": "INFO"}},
}

# Event feedback settings for worker processes (tests pass them in the worker environment).
SEACUCUMBER_TRACK_STATUS = os.environ.get("SEACUCUMBER_TRACK_STATUS") == "1"
SEACUCUMBER_SUPPRESSION_LIST = (
    True if os.environ.get("SEACUCUMBER_SUPPRESSION_LIST") == "1" else None
)
# The reputation guard: worker tests make a held send look again within a second.
SEACUCUMBER_REPUTATION_RETRY = float(os.environ.get("SEACUCUMBER_REPUTATION_RETRY", "60"))

# Safe staging for worker processes: the allowlist as JSON, the redirect as an address.
SEACUCUMBER_RECIPIENT_ALLOWLIST = (
    json.loads(os.environ["SEACUCUMBER_RECIPIENT_ALLOWLIST"])
    if "SEACUCUMBER_RECIPIENT_ALLOWLIST" in os.environ else None
)
SEACUCUMBER_RECIPIENT_REDIRECT = os.environ.get("SEACUCUMBER_RECIPIENT_REDIRECT") or None
# A worker trusts the client options a test's mailers name (tests/test_rate_buckets.py).
SEACUCUMBER_TRUSTED_ENDPOINT_URLS = json.loads(
    os.environ.get("SEACUCUMBER_TEST_TRUSTED_ENDPOINT_URLS", "[]"))
SEACUCUMBER_TRUSTED_REGIONS = json.loads(os.environ.get("SEACUCUMBER_TEST_TRUSTED_REGIONS", "[]"))
# The shared state on a Redis Cluster (tests/test_redis_cluster.py's worker).
SEACUCUMBER_REDIS_CLUSTER = os.environ.get("SEACUCUMBER_REDIS_CLUSTER") == "1"
