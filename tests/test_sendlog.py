"""The send log on a private Redis: claims, the sent mark, and a task that runs twice for
one message sending it once."""

from __future__ import annotations

import uuid

import pytest
from django.core.mail import EmailMessage

from seacucumber.payload import build_sends
from seacucumber.send import attempt
from seacucumber.shared import sendlog
from seacucumber.tasks import send_email
from tests.conftest import SENDER


@pytest.fixture
def shared_redis(redis_url, settings):
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/6"
    settings.SEACUCUMBER_REDIS_PREFIX = f"t-{uuid.uuid4().hex[:8]}"
    return settings.SEACUCUMBER_REDIS_URL


def test_one_claim_at_a_time_then_the_sent_mark(shared_redis):
    first = attempt.claim("m-1", "attempt-a")
    assert first.token == "claim:attempt-a" and first.sent_id is None
    busy = attempt.claim("m-1", "attempt-b")
    assert busy.token is None and busy.sent_id is None
    assert sendlog.claim_seconds() - 1 < busy.busy_for <= sendlog.claim_seconds()
    busy.release()  # not the holder: changes nothing
    assert attempt.claim("m-1", "attempt-c").token is None
    first.release()
    second = attempt.claim("m-1", "attempt-d")
    assert second.token == "claim:attempt-d"
    second.mark_sent("ses-123")
    again = attempt.claim("m-1", "attempt-e")
    assert (again.token, again.sent_id) == (None, "ses-123")


def test_claim_of_a_dead_attempt_expires(shared_redis, settings):
    settings.SEACUCUMBER_CONNECT_TIMEOUT = 0
    settings.SEACUCUMBER_READ_TIMEOUT = -4.8  # claim_seconds() = 0.2 s
    assert attempt.claim("m-2", "killed").token is not None
    import time

    time.sleep(0.3)
    assert attempt.claim("m-2", "next").token == "claim:next"


def test_without_shared_redis_there_is_no_log(settings):
    settings.SEACUCUMBER_REDIS_URL = None
    assert not sendlog.enabled()
    claim = attempt.claim("m-3", "a")
    assert claim.token == "claim:a"
    claim.mark_sent("ses-1")  # nowhere to write: still fine
    assert attempt.claim("m-3", "b").token == "claim:b"


def test_a_task_run_twice_sends_once(shared_redis, ses_emulator, eager):
    [outbound] = build_sends(EmailMessage("Once", "Body", SENDER, ["to@example.com"]))
    payload = outbound.to_json()
    first = send_email.apply(args=[payload]).get()
    second = send_email.apply(args=[payload]).get()  # a redelivery of the same task
    assert first == second
    assert ses_emulator.stats()["accepted"] == 1
