"""Django settings of the demo: configured as README.rst tells a user to, plus delivery
feedback (status records, the event webhook) so the summary can show bounces and complaints."""

import os
from pathlib import Path

import django

STATE = Path(os.environ.get("SEACUCUMBER_DEMO_DIR", ".demo")).resolve()

SECRET_KEY = "demo-only"  # noqa: S105
USE_TZ = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "seacucumber"]
ROOT_URLCONF = "demo.urls"
# One sqlite file shared by the demo process (backend, webhook) and the workers: WAL and a
# long busy timeout let them write side by side.
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": STATE / "demo.sqlite3",
    "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
}}

if django.VERSION >= (6, 1):  # MAILERS replaces EMAIL_BACKEND
    MAILERS = {
        "default": {"BACKEND": "seacucumber.backend.SESBackend"},
        # the newsletter's mailer: mail.mailers["bulk"]
        "bulk": {"BACKEND": "seacucumber.backend.SESBackend", "OPTIONS": {"lane": "bulk"}},
    }
else:  # the newsletter's connection: mail.get_connection(lane="bulk")
    EMAIL_BACKEND = "seacucumber.backend.SESBackend"
# Two lanes under the account's rate (docs/rate.rst): password resets (any mail that names no
# lane) are served first, on the queue celeryconfig.py routes mail to; the newsletter takes
# what they leave, from a queue of its own. The demo's workers consume both.
SEACUCUMBER_LANES = {
    "transactional": {"queue": "mail"},
    "bulk": {"queue": "seacucumber-bulk", "min_share": 0.1},
}
SERVER_EMAIL = "errors@example.com"  # error reports: an address SES takes
DEFAULT_FROM_EMAIL = "Sea Cucumber Demo <demo@example.com>"
AWS_SES_REGION_NAME = "us-east-1"
SEACUCUMBER_ENDPOINT_URL = os.environ.get("SEACUCUMBER_ENDPOINT_URL")
SEACUCUMBER_REDIS_URL = os.environ.get("SEACUCUMBER_REDIS_URL") or None
SEACUCUMBER_RETRY_BASE_DELAY = 0.5

# Delivery feedback: the emulator posts signed SNS notifications to /ses/events/; its
# certificate is pinned (written by the demo to the state folder) instead of fetched.
SEACUCUMBER_TRACK_STATUS = True
SEACUCUMBER_SUPPRESS_ON_BOUNCE = True
SEACUCUMBER_SUPPRESS_ON_COMPLAINT = True
# The demo's newsletter bounces and complains far more than a real list may (to show the
# suppression list): the reputation guard would hold its lane a minute at a time
# (docs/deliverability.rst), and with REDIS_URL its counts would outlive the run.
SEACUCUMBER_REPUTATION_GUARD = False
SEACUCUMBER_EVENT_TOPIC_ARNS = ["arn:aws:sns:us-east-1:123456789012:ses-events"]
_CERT = STATE / "emulator-cert.pem"
SEACUCUMBER_SNS_CERTIFICATES = {
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-emulator.pem":
        _CERT.read_text() if _CERT.exists() else "",
}

ROLE = os.environ.get("SEACUCUMBER_DEMO_ROLE", "demo")  # the log file: demo.log, worker1.log
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"file": {"class": "logging.FileHandler", "filename": STATE / f"{ROLE}.log"}},
    "loggers": {"seacucumber": {"handlers": ["file"], "level": "INFO"}},
}
