"""The project's SES emulator as fixtures: one fresh emulator per test, settings pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from seacucumber.testing.emulator import SESEmulator

SENDER = "sender@example.com"  # the same as tests.conftest.SENDER


@pytest.fixture
def ses_emulator(settings) -> Iterator[SESEmulator]:
    """A fresh emulator (rate unlimited, no faults) and settings that send to it."""
    emulator = SESEmulator(rate=0).start()
    settings.SEACUCUMBER_ENDPOINT_URL = emulator.url
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.DEFAULT_FROM_EMAIL = SENDER
    try:
        yield emulator
    finally:
        emulator.stop()
