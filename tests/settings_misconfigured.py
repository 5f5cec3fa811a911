"""Test settings for a worker whose AWS configuration is broken on purpose
(tests/test_config_errors.py). ``SEACUCUMBER_TEST_BREAK`` names what is missing: ``region``
(no AWS_SES_REGION_NAME, no region in the environment or an AWS config file) or
``credentials`` (none in settings, environment, files or instance metadata). The
environment is changed here, in the worker, because a worker inherits the test process's
region and test credentials (tests/conftest.py) and can only be given more, not fewer."""

import os

from tests.settings import *  # noqa: F403

_BREAK = os.environ.get("SEACUCUMBER_TEST_BREAK", "")
if _BREAK == "region":
    AWS_SES_REGION_NAME = None
    for _name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        os.environ.pop(_name, None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
elif _BREAK == "credentials":
    AWS_SES_ACCESS_KEY_ID = AWS_SES_SECRET_ACCESS_KEY = AWS_SES_SESSION_TOKEN = None
    for _name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                  "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                  "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        os.environ.pop(_name, None)
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # never ask 169.254.169.254
elif _BREAK:
    raise ValueError(f"SEACUCUMBER_TEST_BREAK={_BREAK!r}: region or credentials")
# the retries of a held message come back within a second, so a test waits on no backoff
SEACUCUMBER_RETRY_MAX_DELAY = float(os.environ.get("SEACUCUMBER_RETRY_MAX_DELAY", "300"))
