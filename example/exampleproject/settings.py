"""Settings of the example project. Everything comes from the environment, as in
docker-compose.yml."""

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,web").split(",")
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "seacucumber",
    "mailer",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "exampleproject.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB_PATH", str(BASE_DIR / "example.sqlite3")),
    }
}
STATIC_URL = "static/"

# --- Sea Cucumber, as README.rst says ---
if django.VERSION >= (6, 1):  # MAILERS replaces EMAIL_BACKEND
    MAILERS = {"default": {"BACKEND": "seacucumber.backend.SESBackend"}}
else:
    EMAIL_BACKEND = "seacucumber.backend.SESBackend"
SERVER_EMAIL = "errors@example.com"  # error reports: an address SES takes
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "example@example.com")
# Celery: the repository's celeryconfig.py under Django's names, every setting of it (with
# CELERY_CONFIG_MODULE=celeryconfig, as in docker-compose.yml, the app reads that module
# instead; tests/test_compose.py checks that the two agree).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_PREFETCH_MULTIPLIER = int(os.environ.get("CELERY_WORKER_PREFETCH_MULTIPLIER", "1"))
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 2 * 3600, "socket_connect_timeout": 5, "socket_timeout": 10,
}
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ROUTES = {"seacucumber.send_email": {"queue": "mail"}}
# Lanes (docs/rate.rst): mail that names no lane is transactional and goes where Celery routes
# it (mail); get_connection(lane="bulk") sends on the bulk lane, from a queue of its own,
# after transactional mail. Workers consume both: celery worker -Q mail,seacucumber-bulk.
SEACUCUMBER_LANES = {
    "transactional": {},
    "bulk": {"queue": "seacucumber-bulk", "min_share": 0.1},
}
# The SES endpoint: real SES by default (boto3's resolution); the compose stack points it at
# the project's SES emulator.
SEACUCUMBER_ENDPOINT_URL = os.environ.get("SEACUCUMBER_ENDPOINT_URL") or None
AWS_SES_REGION_NAME = os.environ.get("AWS_SES_REGION_NAME", "us-east-1")
# Delivery feedback: per-message status, suppression of bounces and complaints, and the SNS
# topics the webhook accepts (comma-separated ARNs).
SEACUCUMBER_TRACK_STATUS = True
SEACUCUMBER_SUPPRESS_ON_BOUNCE = True
SEACUCUMBER_SUPPRESS_ON_COMPLAINT = True
SEACUCUMBER_EVENT_TOPIC_ARNS = [
    arn for arn in os.environ.get("SEACUCUMBER_EVENT_TOPIC_ARNS", "").split(",") if arn
]
# The certificate SNS signs events with is fetched from AWS; against the project's SES
# emulator (docker-compose) it is pinned from the file the emulator writes instead.
if os.environ.get("EXAMPLE_SNS_CERT_FILE"):
    SEACUCUMBER_SNS_CERTIFICATES = {
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-emulator.pem":
            Path(os.environ["EXAMPLE_SNS_CERT_FILE"]),
    }

# Reply by email (docs/inbound.rst): the test message's Reply-To, where an SES receipt rule
# takes mail in (its SNS topic listed in SEACUCUMBER_EVENT_TOPIC_ARNS); with the S3 action
# the mail is fetched from S3 (SEACUCUMBER_S3_ENDPOINT_URL: a local S3 such as moto's).
EXAMPLE_REPLY_TO = os.environ.get("EXAMPLE_REPLY_TO", "replies@example.com")
SEACUCUMBER_S3_ENDPOINT_URL = os.environ.get("SEACUCUMBER_S3_ENDPOINT_URL") or None
# The buckets (or "bucket/prefix") the S3 action's mail is read from: the emulator's own.
SEACUCUMBER_INBOUND_S3_BUCKETS = os.environ.get(
    "SEACUCUMBER_INBOUND_S3_BUCKETS", "inbound-mail").split(",")
