"""Test settings plus DKIM from the environment, for worker processes that sign."""

import os

from tests.settings import *  # noqa: F403

DKIM_DOMAIN = os.environ.get("TEST_DKIM_DOMAIN")
DKIM_PRIVATE_KEY = os.environ.get("TEST_DKIM_PRIVATE_KEY")
