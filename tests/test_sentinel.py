"""The shared state through Redis Sentinel, on a real set (a master, a replica, three
sentinels on loopback): a ``sentinel://`` URL works as kombu's does for the broker,
``ses_doctor`` names the master the sentinels point at, and a failover mid-run, with real
workers sending, loses nothing and keeps the account's rate."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes

import pytest
from django.core import mail
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage

from seacucumber import clients
from seacucumber.operations import doctor
from seacucumber.send import attempt
from seacucumber.shared import store
from seacucumber.testing.emulator import SESEmulator
from seacucumber.testing.processes import SentinelSet
from tests.conftest import (
    SENDER,
    max_over_rate,
    point_app_at,
    point_at_emulator,
    service_missing,
)


def start_set() -> SentinelSet:
    if not SentinelSet.available():
        service_missing("redis-sentinel (Debian's redis-sentinel, or redis-server)")
    return SentinelSet().start()


@pytest.fixture(scope="session")
def sentinel_set() -> Iterator[SentinelSet]:
    """One set for the tests that do not fail it over."""
    sentinels = start_set()
    try:
        yield sentinels
    finally:
        sentinels.stop()


@pytest.fixture
def through_sentinel(sentinel_set, settings) -> Iterator[SentinelSet]:
    """This process's shared state through ``sentinel_set``, under a key prefix of its own."""
    settings.SEACUCUMBER_REDIS_URL = sentinel_set.url
    settings.SEACUCUMBER_REDIS_SENTINEL = {"master_name": sentinel_set.master_name}
    settings.SEACUCUMBER_REDIS_PREFIX = f"sc-sentinel-{uuid.uuid4().hex[:8]}"
    clients.clear()
    yield sentinel_set
    clients.clear()


def test_the_url_is_read_as_kombu_reads_a_sentinel_broker():
    sentinels, master = store.parse_sentinel_url(
        "sentinel://:s%40cret@h1:26380/2;sentinel://h2;sentinel://h3:26381")
    assert sentinels == [("h1", 26380), ("h2", 26379), ("h3", 26381)]
    assert master == {"db": 2, "password": "s@cret"}
    with pytest.raises(ImproperlyConfigured, match="each ';'-separated part"):
        store.parse_sentinel_url("sentinel://h1:26379;redis://h2:6379")


def test_the_shared_state_works_through_the_sentinels(through_sentinel):
    client = store.redis_client()
    host, port = client.connection_pool.get_master_address()
    assert (host, port) == ("127.0.0.1", through_sentinel.master_port())
    token = uuid.uuid4().hex
    first = attempt.claim(f"<{token}@example.com>", "one")
    assert first.token == "claim:one"  # the send log's claim went to the master...
    again = attempt.claim(f"<{token}@example.com>", "two")
    assert again.busy_for is not None  # ...and a second attempt sees it there
    decision = attempt.reserve(1, rate=5.0)
    assert decision.admitted and decision.rate == pytest.approx(5.0)


def test_doctor_names_the_master_the_sentinels_give(through_sentinel):
    [finding] = doctor.check_shared_state(timeout=5)
    assert finding.status == doctor.OK, finding
    assert f"Sentinel master 'scmaster', now 127.0.0.1:{through_sentinel.master_port()}" \
        in finding.found
    assert through_sentinel.url.split(";")[0] in finding.found


def test_a_sentinel_url_without_a_master_name_is_a_check_error(settings):
    settings.SEACUCUMBER_REDIS_URL = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380"
    settings.SEACUCUMBER_REDIS_SENTINEL = None
    errors = [m for m in run_checks() if m.id == "seacucumber.E044"]
    assert len(errors) == 1 and "SEACUCUMBER_REDIS_SENTINEL" in errors[0].msg
    settings.SEACUCUMBER_REDIS_SENTINEL = {"master_name": "mymaster"}
    assert not [m for m in run_checks() if m.id == "seacucumber.E044"]


def test_a_sentinel_broker_is_the_shared_state_with_its_transport_options(settings):
    """No SEACUCUMBER_REDIS_URL: the sentinel:// broker is the shared state, its master
    named by Celery's broker_transport_options, as kombu names it."""
    from celery import current_app

    broker = "sentinel://127.0.0.1:26379;sentinel://127.0.0.1:26380/1"
    settings.SEACUCUMBER_REDIS_URL = None
    settings.SEACUCUMBER_REDIS_SENTINEL = None
    point_app_at(broker, None)
    saved = current_app.conf.broker_transport_options
    current_app.conf.broker_transport_options = {"master_name": "brokermaster"}
    try:
        assert store.redis_url() == broker
        assert store.sentinel_options(broker)["master_name"] == "brokermaster"
    finally:
        current_app.conf.broker_transport_options = saved
        point_app_at("memory://", None)


RATE = 20.0  # recipients per second, the account's rate the workers hold


@pytest.mark.chaos
def test_a_failover_mid_run_loses_nothing_and_keeps_the_rate(redis_url, settings,
                                                             start_worker):
    """The master is SIGKILLed while two workers send through the emulator (which enforces
    no rate: the workers' shared limiter alone paces them). The sentinels promote the
    replica within seconds; meanwhile attempts that cannot reach the shared state are
    re-queued, and afterwards go on through the new master.

    Duplicates: none by design but one case, a send whose SES call was under way when the
    master died, so its "sent" mark could not be written (or was written and not yet
    replicated); it may go again. So at most one per worker thread (8). Rate: the limiter's
    state lost with the old master is at most its last unreplicated writes, so beyond the
    0.5 s burst the limiter allows, at most about another: one second of burst in all."""
    sentinels = start_set()
    queue = f"sc-failover-{uuid.uuid4().hex[:8]}"
    emulator = SESEmulator(rate=0).start()
    settings.SEACUCUMBER_REDIS_SENTINEL = {"master_name": sentinels.master_name}
    env = point_at_emulator(settings, f"{redis_url}/1", emulator.url, sentinels.url, queue,
                            queue, SEACUCUMBER_RATE_LIMIT=str(RATE),
                            SEACUCUMBER_TEST_SENTINEL_MASTER=sentinels.master_name,
                            SEACUCUMBER_READ_TIMEOUT="3", SEACUCUMBER_OUTBOX_GRACE="3",
                            SEACUCUMBER_OUTBOX_SWEEP_INTERVAL="1")
    clients.clear()
    count, threads = 200, 8
    try:
        for name in ("a", "b"):
            start_worker({**env, "AWS_SDK_UA_APP_ID": name}, queues=queue, pool="threads",
                         concurrency=threads // 2)
        messages = [EmailMessage(f"Failover {i}", "Body", SENDER, [f"to{i}@example.com"],
                                 headers={"X-Failover-Id": str(i)}) for i in range(count)]
        assert mail.get_connection().send_messages(messages) == count
        deadline = time.monotonic() + 30
        while len(emulator.messages()) < count // 4:  # a quarter sent: a steady run
            assert time.monotonic() < deadline, "the workers did not start sending"
            time.sleep(0.1)
        old = sentinels.kill_master()
        killed_at = time.time()
        sentinels.wait_until(lambda: sentinels.master_port() != old, "the failover")
        accepted = emulator.wait_for(count, timeout=90)
        time.sleep(2)  # anything sent twice arrives by now
        seen = Counter(message_from_bytes(m.raw)["X-Failover-Id"] for m in emulator.messages())
    finally:
        point_app_at("memory://", None)
        emulator.stop()
        sentinels.stop()
        clients.clear()
    duplicates = sum(n - 1 for n in seen.values())
    times = sorted(m.time for m in emulator.messages() for _ in m.destinations)
    burst = max_over_rate(times, RATE)
    print(f"failover: {duplicates} duplicates, {burst:.2f} s of burst at most")
    assert len(seen) == count
    assert duplicates <= threads, seen.most_common(5)
    assert any(m.time > killed_at + 1 for m in accepted)  # sent after the failover too
    assert burst <= 1.0
