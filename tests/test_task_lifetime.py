"""The send task and the message lifetime: every retry it makes (SES errors, a shared-state
Redis outage, a send another attempt holds) ends at ``SEACUCUMBER_MESSAGE_LIFETIME`` with a
recorded reason, except that a message held by a spent daily quota gets one quota window
(24 h) more.

The task is called in this process, SES is the project's emulator, Redis a private
redis-server (or a closed port for an outage). Called directly, a task's ``self.retry``
raises the retry instead of queueing it; ``send_email.apply`` runs the task as a worker
would, its retries at once (no countdown).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from celery.exceptions import Retry
from celery.signals import task_retry

from seacucumber import retry
from seacucumber.exceptions import PermanentSendError, TransientSendError
from seacucumber.send import attempt
from seacucumber.shared import store
from seacucumber.tasks import send_email
from seacucumber.testing.processes import free_port
from tests.conftest import payload

LIFETIME = 3600.0


@pytest.fixture
def lifetime(settings):
    from tests.proj.celery import app  # the current app: its broker is memory://, not Redis

    app.set_current()
    settings.SEACUCUMBER_MESSAGE_LIFETIME = LIFETIME
    settings.SEACUCUMBER_REDIS_URL = None  # no shared state unless a test sets one
    settings.SEACUCUMBER_RETRY_BASE_DELAY = 2.0
    assert store.redis_url() is None
    return settings


# --- SES errors ---------------------------------------------------------------------------------

def test_transient_error_retries_within_the_lifetime(ses_emulator, lifetime, failed):
    ses_emulator.configure(fail_5xx=1.0)
    with pytest.raises(TransientSendError):  # what a direct call's retry raises
        send_email(payload(age=60))
    assert failed == []


def test_transient_error_past_the_lifetime_fails(ses_emulator, lifetime, failed):
    ses_emulator.configure(fail_5xx=1.0)
    with pytest.raises(PermanentSendError) as raised:
        send_email(payload(age=LIFETIME))
    assert raised.value.code == "ServiceUnavailable"
    [record] = failed
    assert record["code"] == "ServiceUnavailable"
    assert record["reason"].startswith("still failing at the end of its lifetime")


# --- a shared-state Redis outage ------------------------------------------------------------

@pytest.fixture
def redis_down(lifetime):
    lifetime.SEACUCUMBER_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    return lifetime


def test_redis_outage_retries_within_the_lifetime(ses_emulator, redis_down, failed):
    with pytest.raises(Retry):
        send_email(payload(age=60))
    assert failed == []
    assert ses_emulator.stats()["requests"] == 0


def test_redis_outage_past_the_lifetime_fails_with_the_reason(ses_emulator, redis_down,
                                                              failed):
    data = payload(age=LIFETIME)
    with pytest.raises(PermanentSendError) as raised:
        send_email(data)
    assert raised.value.code == "SharedStateUnavailable"
    [record] = failed
    assert (record["message_id"], record["code"]) == (data["id"], "SharedStateUnavailable")
    assert "still failing at the end of its lifetime" in record["reason"]
    assert "Redis" in record["reason"]
    assert record["recipients"] == ["to@example.com"]
    assert ses_emulator.stats()["requests"] == 0


def test_redis_outage_past_the_lifetime_ends_an_eager_run(ses_emulator, redis_down, failed):
    """Run as a worker runs it (retries included): it ends, failed, instead of retrying
    for ever."""
    with pytest.raises(PermanentSendError):
        send_email.apply(args=[payload(age=LIFETIME - 0.05)]).get()
    assert [r["code"] for r in failed] == ["SharedStateUnavailable"]


# --- a send another attempt holds ---------------------------------------------------------------

@pytest.fixture
def shared_redis(redis_url, lifetime):
    lifetime.SEACUCUMBER_REDIS_URL = f"{redis_url}/6"
    lifetime.SEACUCUMBER_REDIS_PREFIX = f"t-{uuid.uuid4().hex[:8]}"
    return lifetime


def test_busy_claim_waits_for_the_other_attempt(ses_emulator, shared_redis, failed):
    data = payload(age=60)
    assert attempt.claim(data["id"], "other-attempt").token is not None
    with pytest.raises(Retry):
        send_email(data)
    assert failed == []
    assert ses_emulator.stats()["requests"] == 0


def test_busy_claim_past_the_lifetime_fails_with_the_reason(ses_emulator, shared_redis,
                                                            failed):
    data = payload(age=LIFETIME)
    holder = attempt.claim(data["id"], "other-attempt")
    assert holder.token is not None
    with pytest.raises(PermanentSendError) as raised:
        send_email(data)
    assert raised.value.code == "SendInProgress"
    [record] = failed
    assert record["code"] == "SendInProgress"
    assert "still failing at the end of its lifetime" in record["reason"]
    assert "may yet have sent" in record["reason"]
    assert ses_emulator.stats()["requests"] == 0
    # the other attempt's claim is untouched: it may still send and mark the message sent
    holder.mark_sent("ses-other")
    assert attempt.claim(data["id"], "later").sent_id == "ses-other"


# --- the daily quota ------------------------------------------------------------------------------

@pytest.fixture
def quota_frees_on_retry(ses_emulator) -> Iterator[list[str]]:
    """The quota is spent; it frees when the task schedules its retry (as the rolling
    24-hour window would, later)."""
    ses_emulator.configure(daily_quota=0)
    retried: list[str] = []

    def on_retry(sender=None, reason=None, **_):
        retried.append(str(reason))
        ses_emulator.configure(daily_quota=-1)

    task_retry.connect(on_retry)
    try:
        yield retried
    finally:
        task_retry.disconnect(on_retry)


def test_quota_hold_outlasts_the_lifetime(ses_emulator, lifetime, failed,
                                          quota_frees_on_retry):
    """A message at the end of its lifetime, held by the daily quota, is not failed for
    waiting: it is sent once the quota frees."""
    ses_id = send_email.apply(args=[payload(age=LIFETIME - 60)]).get()
    assert len(quota_frees_on_retry) == 1
    assert "Daily message quota exceeded" in quota_frees_on_retry[0]
    assert failed == []
    [accepted] = ses_emulator.messages()
    assert accepted.ses_id == ses_id


def test_quota_hold_ends_one_window_past_the_lifetime(ses_emulator, lifetime, failed):
    ses_emulator.configure(daily_quota=0)
    with pytest.raises(PermanentSendError) as raised:
        send_email(payload(age=LIFETIME + retry.QUOTA_WINDOW - 60))  # hold: 600 s
    assert raised.value.code == "Throttling"
    [record] = failed
    assert record["code"] == "Throttling"
    assert record["reason"] == (
        "still failing at the end of its lifetime: Daily message quota exceeded.")
    assert ses_emulator.stats()["accepted"] == 0
