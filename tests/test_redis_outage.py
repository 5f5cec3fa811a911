"""A send SES accepted while the shared-state Redis restarts: its "sent" mark still lands
(``attempt.settle`` rides out a few seconds without Redis), and written twice (an answer
lost) it counts once. Without the mark, a redelivery would send the message again."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.core.mail import EmailMessage

from seacucumber import clients
from seacucumber.operations import metrics
from seacucumber.payload import build_sends
from seacucumber.send import attempt
from seacucumber.shared import sendlog, store
from seacucumber.testing.processes import RedisServer
from tests.conftest import SENDER, service_missing


@pytest.fixture
def private_redis(settings):
    if not RedisServer.available():
        service_missing("redis-server")
    server = RedisServer(appendonly=True).start()
    settings.SEACUCUMBER_REDIS_URL = f"{server.url}/0"
    settings.SEACUCUMBER_REDIS_PREFIX = f"outage-{uuid.uuid4().hex[:8]}"
    clients.clear()
    try:
        yield server
    finally:
        server.stop()
        clients.clear()


def test_settle_rides_out_a_redis_restart_and_counts_once(private_redis):
    [send] = build_sends(EmailMessage("Hi", "Body", SENDER, ["to@example.com"]))
    client = store.redis_client()
    client.ping()  # connected before the restart, as a busy worker is
    private_redis.stop()
    restarted = threading.Timer(1.5, private_redis.start)
    restarted.start()
    attempt.settle(send, "ses-1", "transactional", None)  # SES accepted it; Redis is down
    restarted.join()
    assert client.get(sendlog.key(send.message_id)) == sendlog.sent_mark("ses-1").encode()
    attempt.settle(send, "ses-1", "transactional", None)  # the same settle, run again
    field = metrics.counter_field("sends", "sent", "transactional")
    assert client.hget(metrics.counters_key(), field) == b"1"
