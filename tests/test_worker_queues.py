"""Nothing waits unseen: a worker with no ``-Q`` consumes every lane's queue, one whose ``-Q``
leaves one out says so, each worker's heartbeat names the queues it consumes, and
``send_messages``, ``ses_usage`` and the metrics say when mail waits where nobody consumes
(``seacucumber/shared/workers.py``). Real workers on a real Redis broker."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.core.management import call_command

from seacucumber.operations import metrics
from seacucumber.shared import workers
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER, point_app_at, point_at_emulator


def test_mail_queues_names_every_lane_and_mailer(settings):
    settings.SEACUCUMBER_QUEUE = "mail"
    settings.SEACUCUMBER_LANES = {"transactional": {}, "bulk": {"queue": "news"}}
    settings.MAILERS = {
        "default": {"BACKEND": "seacucumber.backend.SESBackend"},
        "newsletter": {"BACKEND": "seacucumber.backend.SESBackend",
                       "OPTIONS": {"lane": "bulk"}},
        "receipts": {"BACKEND": "seacucumber.backend.EmailBackend",
                     "OPTIONS": {"queue": "receipts"}},
        "console": {"BACKEND": "django.core.mail.backends.console.EmailBackend",
                    "OPTIONS": {"queue": "not-ours"}},
    }
    assert workers.mail_queues() == {
        "mail": ["lane transactional"],
        "news": ["lane bulk", "mailer newsletter"],
        "receipts": ["mailer receipts"],
    }


def test_the_default_queue_follows_celerys_routing(settings):
    from celery import Celery, current_app

    settings.SEACUCUMBER_QUEUE = None
    previous = current_app._get_current_object()
    routed = Celery("routing-test", set_as_current=True)  # routes are read as an app starts
    routed.conf.task_routes = {workers.SEND_TASK: {"queue": "routed-mail"}}
    try:
        assert workers.default_queue() == "routed-mail"
        assert "routed-mail" in workers.mail_queues()
    finally:
        previous.set_current()


def test_a_stale_or_malformed_heartbeat_is_not_a_live_worker():
    now = time.time()
    live = json.dumps({"queues": ["a"], "seen": now, "pid": 1})
    stale = json.dumps({"queues": ["a"], "seen": now - workers.HEARTBEAT_TTL - 1, "pid": 1})
    assert workers._parse(b"w1", live) == workers.Beat("w1", 1, ("a",), json.loads(live)["seen"])
    assert workers._parse(b"w2", stale) is None
    assert workers._parse(b"w3", "{not json") is None
    assert workers._parse(b"w4", json.dumps({"queues": ["a"]})) is None


@pytest.fixture
def two_lanes(redis_url, settings):
    """Workers' environment on a Redis broker, each lane on a queue of this test's own, and an
    emulator; the warnings' memory and the consumers' cache forgotten."""
    tag = uuid.uuid4().hex[:8]
    queue, bulk_queue = f"sc-q-{tag}", f"sc-q-{tag}-bulk"
    declared = {"transactional": {"queue": queue},
                "bulk": {"queue": bulk_queue, "min_share": 0.1}}
    emulator = SESEmulator(rate=50).start()
    settings.SEACUCUMBER_LANES = declared
    settings.SEACUCUMBER_RATE_LIMIT = 50
    env = point_at_emulator(settings, f"{redis_url}/1", emulator.url, f"{redis_url}/3", tag,
                            queue, SEACUCUMBER_RATE_LIMIT="50",
                            SEACUCUMBER_TEST_LANES=json.dumps(declared))
    workers._warned.clear()
    workers._seen.update(at=float("-inf"), consumers=None)
    try:
        yield env, queue, bulk_queue, emulator
    finally:
        point_app_at("memory://", None)
        emulator.stop()
        workers._warned.clear()
        workers._seen.update(at=float("-inf"), consumers=None)


def _wait(condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_mail_nobody_consumes_is_said_everywhere_until_a_worker_without_q_takes_it(
        two_lanes, start_worker, caplog):
    env, queue, bulk_queue, emulator = two_lanes
    # a worker whose -Q leaves the bulk lane out says so as it starts
    only_transactional = start_worker(env, queues=queue, pool="threads", concurrency=2)
    assert (f"does not consume queue '{bulk_queue}' (lane bulk)"
            in only_transactional.log())
    assert _wait(lambda: workers.consumers()) == {queue: [only_transactional.hostname]}

    # a newsletter to the bulk lane: queued, and send_messages says nobody will take it
    bulk = mail.get_connection(lane="bulk")
    with caplog.at_level(logging.WARNING, logger="seacucumber"):
        assert bulk.send_messages([EmailMessage("News 1", "B", SENDER, ["a@example.com"])]) == 1
        assert bulk.send_messages([EmailMessage("News 2", "B", SENDER, ["b@example.com"])]) == 1
    warnings = [r.getMessage() for r in caplog.records if "no live worker consumes" in
                r.getMessage()]
    assert len(warnings) == 1 and repr(bulk_queue) in warnings[0]  # once a minute per queue

    states = {state.name: state for state in workers.queue_states()[0]}
    stranded = states[bulk_queue]
    assert stranded.depth == 2 and stranded.consumers == () and stranded.stranded
    assert stranded.oldest_age is not None and stranded.oldest_age >= 0
    assert states[queue].consumers == (only_transactional.hostname,)
    out = io.StringIO()
    call_command("ses_usage", stdout=out)
    line = next(found for found in out.getvalue().splitlines() if bulk_queue in found)
    assert "NONE: no live worker consumes it" in line and "lane bulk" in line
    scrape = metrics.exposition().decode()
    assert f'seacucumber_queue_consumers{{queue="{bulk_queue}"}} 0.0' in scrape
    assert f'seacucumber_queue_depth{{queue="{bulk_queue}"}} 2.0' in scrape

    # a worker started without -Q consumes every lane's queue: the newsletter goes out
    everything = start_worker(env, queues=None, pool="threads", concurrency=2)
    assert "also consumes" in everything.log() and bulk_queue in everything.log()
    assert "does not consume" not in everything.log()
    accepted = emulator.wait_for(2, timeout=60)
    assert {m.tags.get("seacucumber-lane") for m in accepted} == {"bulk"}
    live = _wait(lambda: (found := workers.consumers()) and bulk_queue in found and found)
    assert live[bulk_queue] == [everything.hostname]
    assert sorted(live[queue]) == sorted([only_transactional.hostname, everything.hostname])

    # a worker that stops takes its heartbeat with it at once
    everything.stop()
    assert bulk_queue not in (workers.consumers() or {})

    # a worker for other tasks (its -Q names no mail queue) is told so, not warned
    other = start_worker(env, queues=f"{queue}-other", pool="threads", concurrency=1)
    assert "consumes none of the queues mail goes to" in other.log()
    assert "does not consume" not in other.log()
