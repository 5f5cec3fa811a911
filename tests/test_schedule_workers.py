"""Scheduled sending on real parts: a real ``celery worker`` on a Redis broker, the outbox
on, SES the project's emulator. A message due in 5 s reaches SES no earlier, its wait taken
in hops (``SEACUCUMBER_MAX_COUNTDOWN`` of 2 s here) with its outbox record kept and never
due for the sweeper before its hop ends; one cancelled just after ``send_messages`` never
reaches SES, even well past its time."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from django.core import mail
from django.core.mail import EmailMessage

import seacucumber
from seacucumber.shared import outbox, store
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER, point_app_at, point_at_emulator

AHEAD = 5.0


@pytest.fixture
def scheduled_pipeline(redis_url, settings) -> Iterator[tuple[dict, str, SESEmulator]]:
    tag = uuid.uuid4().hex[:8]
    queue = f"sc-sched-{tag}"
    emulator = SESEmulator(rate=0).start()
    env = point_at_emulator(settings, f"{redis_url}/1", emulator.url, f"{redis_url}/3",
                            f"t-{tag}", queue, SEACUCUMBER_MAX_COUNTDOWN="2",
                            SEACUCUMBER_OUTBOX="1")
    settings.SEACUCUMBER_OUTBOX = True
    try:
        yield env, queue, emulator
    finally:
        point_app_at("memory://", None)
        emulator.stop()


def queued_deadline(message_id: str) -> float | None:
    """When the outbox's sweeper would take ``message_id``'s task for lost (None: no queued
    record)."""
    return store.redis_client().zscore(outbox.key_names()["queued"], message_id)


def test_a_scheduled_message_arrives_no_earlier_and_a_cancelled_one_never(
        scheduled_pipeline, start_worker):
    env, queue, emulator = scheduled_pipeline
    worker = start_worker(env, queues=queue, pool="threads", concurrency=2)
    kept = EmailMessage("Kept", "Body", SENDER, ["kept@example.com"])
    dropped = EmailMessage("Dropped", "Body", SENDER, ["dropped@example.com"])
    due = time.time() + AHEAD
    for message in (kept, dropped):
        message.send_at = due  # anymail's attribute, a POSIX timestamp
    assert mail.get_connection().send_messages([kept, dropped]) == 2
    assert seacucumber.cancel(dropped.seacucumber_ids) is True
    [kept_id], [dropped_id] = kept.seacucumber_ids, dropped.seacucumber_ids
    assert queued_deadline(dropped_id) is None  # its outbox record went with the cancel

    # waiting: the record stays, never due for the sweeper before the hop it waits on ends
    time.sleep(1.5)
    deadline = queued_deadline(kept_id)
    assert deadline is not None and deadline > time.time()
    assert emulator.stats()["requests"] == 0

    [sent] = emulator.wait_for(1, timeout=60)
    assert sent.destinations == ["kept@example.com"]
    assert sent.time >= due, f"sent {due - sent.time:.3f}s before its send_at"

    time.sleep(max(0.0, due + 3.0 - time.time()))  # well past the cancelled one's time
    assert [m.destinations for m in emulator.messages()] == [["kept@example.com"]]
    log = worker.log()
    assert f"message {dropped_id} cancelled" in log
    deadline = time.monotonic() + 10
    while queued_deadline(kept_id) is not None and time.monotonic() < deadline:
        time.sleep(0.1)  # the send settles, its record goes
    assert queued_deadline(kept_id) is None
