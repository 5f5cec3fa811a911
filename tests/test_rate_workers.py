"""The shared rate with real workers: two worker groups (standing in for two hosts, with
different pools) hold the emulator's account rate with no throttling, on a Redis and on a
RabbitMQ broker; a spent daily quota holds sends until it frees; throttling caused by
another sender on the account slows the workers down and every message still goes."""

from __future__ import annotations

import time
import uuid

import boto3
import pytest
from botocore.config import Config
from django.core import mail
from django.core.mail import EmailMessage

from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER, point_app_at, point_at_emulator

RATE = 20.0


@pytest.fixture
def rate_setup(request, redis_url, settings):
    """(environment for workers, queue) on the broker the test asks for; SES at a fresh
    emulator with a rate of RATE recipients/s; the rate learned from it, not configured."""
    broker_kind = getattr(request, "param", "redis")
    broker = f"{redis_url}/1" if broker_kind == "redis" else request.getfixturevalue("amqp_url")
    queue = f"sc-rate-{uuid.uuid4().hex[:8]}"
    emulator = SESEmulator(rate=RATE).start()
    # a limiter of this test's own; the rate learned from the emulator's GetSendQuota
    env = point_at_emulator(settings, broker, emulator.url, f"{redis_url}/3", queue, queue,
                            SEACUCUMBER_RATE_LIMIT="")
    try:
        yield env, queue, emulator
    finally:
        point_app_at("memory://", None)
        emulator.stop()


def mixed_messages(count: int) -> list[EmailMessage]:
    """Alternating 1- and 3-recipient messages."""
    return [EmailMessage(f"Rate {i}", "Body", SENDER, [f"to{i}@example.com"],
                         cc=[f"cc{i}@example.com"] if i % 2 else [],
                         bcc=[f"bcc{i}@example.com"] if i % 2 else [])
            for i in range(count)]


def steady_rate(emulator) -> float:
    """Recipients per second after the first second (the burst), as the shared rate paces them.

    The rate charges a send's recipients forward: a send of n recipients moves the next slot
    n / rate seconds on. So the window runs from the first send after the burst to the last
    one, and counts every send in it but the last (whose recipients were paid for after the
    window). Counting the last one too would overstate the rate by a send's recipients (up to
    3 here, some 3% of a 5-second window) on a perfectly paced run.
    """
    accepted = emulator.messages()
    steady = [m for m in accepted if m.time >= accepted[0].time + 1.0]
    paid = sum(len(m.destinations) for m in steady[:-1])
    return paid / (steady[-1].time - steady[0].time)


@pytest.mark.parametrize("rate_setup", ["redis", "amqp"], indirect=True)
def test_two_worker_groups_hold_the_account_rate(rate_setup, start_worker):
    env, queue, emulator = rate_setup
    start_worker({**env, "AWS_SDK_UA_APP_ID": "group-a"}, queues=queue, pool="prefork",
                 concurrency=2)
    start_worker({**env, "AWS_SDK_UA_APP_ID": "group-b"}, queues=queue, pool="threads",
                 concurrency=4)
    assert mail.get_connection().send_messages(mixed_messages(80)) == 80  # 160 recipients
    accepted = emulator.wait_for(80, timeout=60)
    stats = emulator.stats()
    assert stats["throttled"] == 0
    assert stats["recipients_accepted"] == 160
    assert {m.app for m in accepted} == {"group-a", "group-b"}
    assert 0.85 * RATE <= steady_rate(emulator) <= 1.02 * RATE


def test_gevent_pool_holds_the_rate(rate_setup, start_worker):
    env, queue, emulator = rate_setup
    start_worker(env, queues=queue, pool="gevent", concurrency=20)
    assert mail.get_connection().send_messages(mixed_messages(60)) == 60
    emulator.wait_for(60, timeout=60)
    assert emulator.stats()["throttled"] == 0
    assert emulator.stats()["recipients_accepted"] == 120
    assert 0.85 * RATE <= steady_rate(emulator) <= 1.02 * RATE


def test_spent_daily_quota_holds_sends_until_it_frees(rate_setup, start_worker):
    env, queue, emulator = rate_setup
    emulator.configure(daily_quota=3)
    worker = start_worker({**env, "SEACUCUMBER_QUOTA_HOLD": "2"}, queues=queue,
                          concurrency=2)
    assert mail.get_connection().send_messages(mixed_messages(12)[::2]) == 6  # 1 recipient each
    emulator.wait_for(3, timeout=30)
    deadline = time.monotonic() + 10
    while "daily sending quota used up" not in worker.log():
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.1)
    time.sleep(1.0)
    assert emulator.stats()["accepted"] == 3
    refused = emulator.stats()["quota_exceeded"]
    assert refused <= 2  # held, not spun on: at most one refusal per busy worker slot
    emulator.configure(daily_quota=100)
    emulator.wait_for(6, timeout=30)
    assert emulator.stats()["quota_exceeded"] == refused
    assert "held: the SES daily quota is used up" in worker.log()


def test_throttling_from_another_sender_slows_the_workers(rate_setup, start_worker):
    env, queue, emulator = rate_setup
    emulator.configure(rate=10)
    worker = start_worker(env, queues=queue, concurrency=4)
    other_app = boto3.client("ses", endpoint_url=emulator.url, region_name="us-east-1",
                             config=Config(retries={"total_max_attempts": 1}))
    assert mail.get_connection().send_messages(mixed_messages(30)[::2]) == 15
    # another application on the same account, sending as fast as it can, so the bucket is
    # empty whenever a worker's send arrives; it stops once a worker has been throttled
    deadline = time.monotonic() + 20
    while "SES throttled a send: shared rate slowed" not in worker.log():
        assert time.monotonic() < deadline, worker.log()[-3000:]
        for _ in range(10):
            try:
                other_app.send_raw_email(Source=SENDER, Destinations=["x@example.com"],
                                         RawMessage={"Data": b"Subject: other\r\n\r\nx"})
            except other_app.exceptions.ClientError:
                pass
    ours = [m for m in emulator.wait_for(15, timeout=60) if m.destinations != ["x@example.com"]]
    deadline = time.monotonic() + 60
    while len(ours) < 15:
        assert time.monotonic() < deadline, f"{len(ours)} of 15 sent"
        time.sleep(0.2)
        ours = [m for m in emulator.messages() if m.destinations != ["x@example.com"]]
