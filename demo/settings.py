"""Django settings of the demo: configured as README.rst tells a user to."""

import os
from pathlib import Path

STATE = Path(os.environ.get("SEACUCUMBER_DEMO_DIR", ".demo")).resolve()

SECRET_KEY = "demo-only"  # noqa: S105
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "seacucumber"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": STATE / "demo.sqlite3"}}

EMAIL_BACKEND = "seacucumber.backend.SESBackend"
DEFAULT_FROM_EMAIL = "Sea Cucumber Demo <demo@example.com>"
AWS_SES_REGION_NAME = "us-east-1"
SEACUCUMBER_ENDPOINT_URL = os.environ.get("SEACUCUMBER_ENDPOINT_URL")
SEACUCUMBER_RETRY_BASE_DELAY = 0.5

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"seacucumber": {"handlers": ["console"], "level": "WARNING"}},
}
