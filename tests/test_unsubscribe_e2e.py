"""One-click unsubscribe end to end: topic mail queued by the backend in this process, sent by a
real ``celery worker`` (Redis broker) to the project's SES emulator, each stored raw message
read back for its own List-Unsubscribe URL, one URL posted as a mail client does, and the next
topic send to that recipient dropped by the worker while other mail to them still goes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from urllib.parse import urlsplit

import pytest
from django.core.mail import EmailMessage
from django.test import Client

from seacucumber.backend import SESBackend
from seacucumber.models import MessageStatus, TopicSuppression
from tests.conftest import SENDER, Pipeline, point_app_at

BASE = "https://mail.example.com/ses/"
READERS = ["ann@example.com", "bob@example.com", "cat@example.com"]


@pytest.fixture
def emulator_pipeline(redis_url, ses_emulator, settings) -> Iterator[Pipeline]:
    """This process and its workers on a private Redis broker, SES at the emulator."""
    queue = f"sc-test-{uuid.uuid4().hex[:10]}"
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_BASE_URL = BASE
    point_app_at(f"{redis_url}/1", f"{redis_url}/2")
    try:
        yield Pipeline(f"{redis_url}/1", f"{redis_url}/2", queue, ses_emulator.url)
    finally:
        point_app_at("memory://", None)


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached after {timeout}s")
        time.sleep(0.1)


def wait_for(emulator, count: int):
    wait_until(lambda: len(emulator.messages()) >= count)
    return emulator.messages()


def parsed(accepted):
    return message_from_bytes(accepted.raw, policy=policy.SMTP)


@pytest.mark.django_db(transaction=True)
def test_one_click_unsubscribe_through_a_worker(emulator_pipeline, ses_emulator, start_worker,
                                                settings):
    settings.SEACUCUMBER_TRACK_STATUS = True
    start_worker(emulator_pipeline.worker_env(SEACUCUMBER_TRACK_STATUS="1"),
                 queues=emulator_pipeline.queue, concurrency=2)
    bulk = SESBackend(unsubscribe_topic="newsletter")
    assert bulk.send_messages([EmailMessage("Issue 1", "News", SENDER, [], bcc=READERS)]) == 1

    first = wait_for(ses_emulator, 3)
    assert sorted(tuple(m.destinations) for m in first) == [(r,) for r in READERS]
    links = {}
    for accepted in first:
        message = parsed(accepted)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = message["List-Unsubscribe"]
        assert link.startswith(f"<{BASE}unsubscribe/") and link.endswith("/>")
        links[accepted.destinations[0]] = link[1:-1]
    assert len(set(links.values())) == 3

    response = Client(enforce_csrf_checks=True).post(
        urlsplit(links["bob@example.com"]).path, "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert list(TopicSuppression.objects.values_list("address", "topic")) == [
        ("bob@example.com", "newsletter")]

    assert bulk.send_messages([EmailMessage("Issue 2", "News", SENDER, [], bcc=READERS)]) == 1
    receipt = EmailMessage("Your receipt", "Paid", SENDER, ["bob@example.com"])
    assert SESBackend().send_messages([receipt]) == 1
    wait_for(ses_emulator, 3 + 2)
    wait_until(lambda: not MessageStatus.objects.filter(status="queued").exists())
    assert list(MessageStatus.objects.filter(status="suppressed").values_list(
        "subject", "recipients", "suppressed_recipients")) == [
        ("Issue 2", "bob@example.com", "bob@example.com")]
    later = ses_emulator.messages(since=3)
    got = sorted((parsed(m)["Subject"], m.destinations[0]) for m in later)
    assert got == [("Issue 2", "ann@example.com"), ("Issue 2", "cat@example.com"),
                   ("Your receipt", "bob@example.com")]
    receipt_raw = next(m for m in later if parsed(m)["Subject"] == "Your receipt")
    assert "List-Unsubscribe" not in parsed(receipt_raw)
