"""Nothing lost, nothing sent twice (beyond the crash window), on real parts: workers
SIGKILLed mid-run while SES fails calls and throttles; Redis restarted mid-run."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from email import message_from_bytes

import pytest
from django.core import mail
from django.core.mail import EmailMessage

from seacucumber.shared import outbox, store
from seacucumber.testing.emulator import SESEmulator
from seacucumber.testing.processes import RedisServer
from tests.conftest import SENDER, point_app_at, service_missing

pytestmark = pytest.mark.chaos


def tagged_messages(count: int) -> list[EmailMessage]:
    return [EmailMessage(f"Chaos {i}", "Body", SENDER, [f"to{i}@example.com"],
                         headers={"X-Chaos-Id": str(i)}) for i in range(count)]


def arrived(emulator: SESEmulator) -> Counter:
    return Counter(message_from_bytes(m.raw)["X-Chaos-Id"] for m in emulator.messages())


def wait_all(emulator: SESEmulator, count: int, timeout: float) -> Counter:
    deadline = time.monotonic() + timeout
    while len(seen := arrived(emulator)) < count:
        assert time.monotonic() < deadline, f"{len(seen)} of {count} arrived; {outbox_state()}"
        time.sleep(0.25)
    return seen


def outbox_state() -> str:
    """What the outbox holds (for a failure message)."""
    if not outbox.enabled():
        return "outbox off"
    from django.conf import settings

    client, keys = store.redis_client(), outbox.key_names()
    held = {name: client.zrange(keys[name], 0, -1, withscores=True)
            for name in ("queued", "running")}
    published = outbox.published(settings.SEACUCUMBER_QUEUE)
    held["published"] = client.zrange(published, 0, -1, withscores=True)
    return f"outbox at {time.time():.2f}: {held}"


@pytest.fixture(params=["amqp", "redis", "redis-pool"])
def chaos_env(request, redis_url, settings):
    """Broker: RabbitMQ, then Redis; the shared state in Redis either way. "-pool": the
    pool processes are killed, not the whole worker."""
    queue = f"sc-chaos-{uuid.uuid4().hex[:8]}"
    broker = (request.getfixturevalue("amqp_url") if request.param == "amqp"
              else f"{redis_url}/1")
    emulator = SESEmulator(rate=25, fail_5xx=0.15, seed=11).start()
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_ENDPOINT_URL = emulator.url
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/3"
    settings.SEACUCUMBER_REDIS_PREFIX = queue
    point_app_at(broker, None)
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CELERY_BROKER_URL": broker,
        "SEACUCUMBER_ENDPOINT_URL": emulator.url,
        "SEACUCUMBER_REDIS_URL": f"{redis_url}/3",
        "SEACUCUMBER_REDIS_PREFIX": queue,
        "SEACUCUMBER_RATE_LIMIT": "35",  # above the emulator's 25/s: SES throttles too
        "SEACUCUMBER_TEST_VISIBILITY": "4",
        "SEACUCUMBER_READ_TIMEOUT": "3",  # a killed attempt's claim lasts 5 + 3 + 5 s
        # Redis: the outbox looks for tasks a killed worker took off the queue every second
        "SEACUCUMBER_OUTBOX_GRACE": "3",
        "SEACUCUMBER_OUTBOX_SWEEP_INTERVAL": "1",
    }
    try:
        yield request.param, env, queue, emulator
    finally:
        point_app_at("memory://", None)
        emulator.stop()


def test_sigkilled_workers_lose_nothing_and_duplicate_at_most_once_per_kill(
        chaos_env, start_worker):
    """Whole workers are SIGKILLed, three times, on either broker. RabbitMQ redelivers their
    unacknowledged tasks at once; Redis hands them back after the visibility timeout, and
    the outbox queues again a task a worker had taken off the queue but not yet recorded as
    unacknowledged when it died (kombu #305, celery #7950). "redis-pool": the pool processes
    are SIGKILLed mid-task instead, and the worker hands their tasks back."""
    kind, env, queue, emulator = chaos_env
    start_worker({**env, "AWS_SDK_UA_APP_ID": "steady"}, queues=queue, pool="threads",
                 concurrency=4)
    count, kills = 150, 3

    def victim(n: int):  # each generation tells SES who it is (the User-Agent app id)
        return start_worker({**env, "AWS_SDK_UA_APP_ID": f"victim{n}"}, queues=queue,
                            pool="prefork", concurrency=3)

    current = victim(0)
    assert mail.get_connection().send_messages(tagged_messages(count)) == count
    killed = 0  # processes killed: each may die after SES accepted its message
    for n in range(kills):
        time.sleep(1.5)
        if kind == "redis-pool":
            killed += current.kill_pool()
        else:
            current.kill()
            killed += 1
            current = victim(n + 1)
    seen = wait_all(emulator, count, timeout=150)
    duplicates = sum(n - 1 for n in seen.values())
    stats = emulator.stats()
    assert stats["failed_5xx"] > 0 and stats["throttled"] > 0  # the faults did happen
    assert duplicates <= killed, seen.most_common(5)
    by_app = Counter(m.app for m in emulator.messages())
    # a killed worker (or pool) was sending, so held unacknowledged tasks, when it died
    assert any(by_app[f"victim{n}"] for n in range(kills)), by_app


def test_redis_restart_mid_run_loses_nothing(start_worker, settings):
    if not RedisServer.available():
        service_missing("redis-server")
    redis = RedisServer(appendonly=True).start()
    queue = f"sc-restart-{uuid.uuid4().hex[:8]}"
    emulator = SESEmulator(rate=30).start()
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_ENDPOINT_URL = emulator.url
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_REDIS_URL = f"{redis.url}/3"  # the workers' shared state (outbox)
    point_app_at(f"{redis.url}/1", None)
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "CELERY_BROKER_URL": f"{redis.url}/1",
           "SEACUCUMBER_ENDPOINT_URL": emulator.url, "SEACUCUMBER_REDIS_URL": f"{redis.url}/3",
           "SEACUCUMBER_RATE_LIMIT": "25", "SEACUCUMBER_TEST_VISIBILITY": "5",
           # a task kombu lost in the restart (taken off the queue, not yet unacknowledged)
           # is queued again by the outbox within seconds, not after the 30 s default grace
           "SEACUCUMBER_OUTBOX_GRACE": "3", "SEACUCUMBER_OUTBOX_SWEEP_INTERVAL": "1",
           # an attempt whose begin ran but whose answer the restart cut holds its claim
           # until it lapses (connect + read + 5 s): 13 s here, not the default 40
           "SEACUCUMBER_READ_TIMEOUT": "3"}
    try:
        worker = start_worker(env, queues=queue, pool="threads", concurrency=4)
        count = 100  # four seconds of sending at 25/s
        assert mail.get_connection().send_messages(tagged_messages(count)) == count
        time.sleep(1.0)
        redis.restart()  # the queue and the send log come back from the append-only file
        # kombu's Redis transport can end the worker ("Unrecoverable error" while it restores
        # unacknowledged tasks on a connection already gone; celery/celery#10205 and kin), in
        # about one run of five on a busy machine. A process supervisor starts it again
        # (docker-compose's restart:, contrib/systemd's Restart=); so does this test.
        deadline, workers = time.monotonic() + 90, 1
        while len(arrived(emulator)) < count and time.monotonic() < deadline:
            if worker.process is None or worker.process.poll() is not None:
                worker = start_worker(env, queues=queue, pool="threads", concurrency=4)
                workers += 1
            time.sleep(0.25)
        seen = wait_all(emulator, count, timeout=1)
        time.sleep(1)  # a send made twice arrives by now
        seen = arrived(emulator)
        # Nothing lost; sent twice at most a send whose SES call was under way at a fault:
        # its "sent" mark could not be written (Redis gone, or the worker ending), so a
        # redelivery sends it again. One per thread (4) of each worker that saw the fault.
        duplicates = sum(n - 1 for n in seen.values())
        print(f"redis restart: {duplicates} duplicates, {workers} worker(s)")
        assert duplicates <= 4 * workers, (duplicates, workers, seen.most_common(5))
    finally:
        point_app_at("memory://", None)
        emulator.stop()
        redis.stop()


def test_a_sigkilled_workers_mail_resumes_within_seconds(redis_url, start_worker, settings):
    """Heartbeats, not deadlines (``shared.holders``): a prefork worker is SIGKILLed with
    most of the mail left, on a Redis broker whose visibility timeout (an hour here) is far
    longer than the test; the package's defaults otherwise. The other worker takes over the
    dead one's reserved and running sends once their holders' heartbeats lapse (TTL 5 s,
    looked at every second: 6 s); a task the victim took in its last 0.2 s, not yet named,
    comes back by the outbox's sweep (two sweeps of 2 s once the queue has moved past it,
    and no sooner than the grace, 10 s, after it was published). With more mail left than
    the take-over needs (6 s), the rest reaches SES within 4 s (or the grace) of what the
    rate needs; the bound is the issue's target, 15 s (the margin is for a loaded machine).
    Nothing is lost; a duplicate only for a send inside the SES call at the kill (3
    processes)."""
    queue = f"sc-resume-{uuid.uuid4().hex[:8]}"
    rate, count, processes = 20.0, 200, 3
    emulator = SESEmulator(rate=rate * 1.25).start()
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_ENDPOINT_URL = emulator.url
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/3"
    settings.SEACUCUMBER_REDIS_PREFIX = queue
    settings.SEACUCUMBER_OUTBOX_GRACE = 10.0  # the package's default, as the workers'
    point_app_at(f"{redis_url}/2", None)
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "CELERY_BROKER_URL": f"{redis_url}/2",
           "SEACUCUMBER_ENDPOINT_URL": emulator.url, "SEACUCUMBER_REDIS_URL": f"{redis_url}/3",
           "SEACUCUMBER_REDIS_PREFIX": queue, "SEACUCUMBER_RATE_LIMIT": f"{rate:g}",
           "SEACUCUMBER_HOLDER_TTL": "5", "SEACUCUMBER_OUTBOX_GRACE": "10",
           "SEACUCUMBER_OUTBOX_SWEEP_INTERVAL": "2", "SEACUCUMBER_TEST_VISIBILITY": "3600"}
    try:
        victim = start_worker({**env, "AWS_SDK_UA_APP_ID": "victim"}, queues=queue,
                              pool="prefork", concurrency=processes)
        steady = start_worker({**env, "AWS_SDK_UA_APP_ID": "steady"}, queues=queue,
                              pool="threads", concurrency=4)
        assert mail.get_connection().send_messages(tagged_messages(count)) == count
        while len(arrived(emulator)) < count * 0.2:
            time.sleep(0.05)
        victim.kill()
        killed_at, left = time.time(), count - len(arrived(emulator))
        assert left / rate > 6.0, left  # the take-over's need: the setup gave it, by design
        seen = wait_all(emulator, count, timeout=60)
        tail = max(m.time for m in emulator.messages()) - killed_at
        assert tail - left / rate <= 15.0, (tail, left)
        assert sum(n - 1 for n in seen.values()) <= processes, seen.most_common(5)
        log = victim.log()
        held = set(re.findall(r"send_email\[(\w+)\] received", log)) - set(
            re.findall(r"send_email\[(\w+)\] succeeded", log))
        assert held, "the victim held no task when it was killed"
        assert "its worker process died holding it" in steady.log()
    finally:
        point_app_at("memory://", None)
        emulator.stop()
