"""Django settings for the test suite and the worker processes it starts.

Worker processes get their broker, result backend, queue and SES endpoint from the
environment the tests start them with.
"""

import os

SECRET_KEY = "tests-only"  # noqa: S105
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "seacucumber",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_FROM_EMAIL = "sender@example.com"
EMAIL_BACKEND = "seacucumber.backend.SESBackend"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

AWS_SES_REGION_NAME = "us-east-1"
SEACUCUMBER_ENDPOINT_URL = os.environ.get("SEACUCUMBER_ENDPOINT_URL")
SEACUCUMBER_RETRY_BASE_DELAY = float(os.environ.get("SEACUCUMBER_RETRY_BASE_DELAY", "0.2"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"seacucumber": {"handlers": ["console"], "level": "INFO"}},
}
