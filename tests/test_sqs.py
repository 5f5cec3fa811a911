"""Amazon SQS as the Celery broker, on real parts: kombu's SQS transport against moto's SQS
server (the session's moto server), real ``celery worker`` processes, the shared state in a
private Redis, SES at the project's emulator (faults, throttling, arrival times). Sends,
retries and throttling; a 9 MB message through the S3 claim check (moto's S3); a worker
SIGKILLed mid-run; long waits taken in hops shorter than the visibility timeout."""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections import Counter
from email import message_from_bytes
from urllib.parse import urlsplit

import boto3
import pytest
from django.core import mail
from django.core.mail import EmailMessage

from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER, point_app_at, service_missing
from tests.test_chaos import tagged_messages, wait_all

SQS_OPTIONS = {"region": "us-east-1", "is_secure": False, "wait_time_seconds": 0,
               "polling_interval": 0.1}


@pytest.fixture
def sqs_env(moto_server, redis_url, settings):
    """This process publishes to moto's SQS; returns (worker env, queue, emulator). The
    emulator answers 1 send in 5 with a 503 and throttles above 6/s (the workers' shared
    rate is 30/s): the retries and throttling the tests meet."""
    try:
        import pycurl  # noqa: F401 - kombu's SQS transport needs it (kombu[sqs])
    except ImportError:
        service_missing("kombu[sqs] (pycurl) for the SQS transport")
    from tests.proj.celery import app

    port = urlsplit(moto_server.url).port
    broker = f"sqs://testing:testing@127.0.0.1:{port}"
    queue = f"sc-sqs-{uuid.uuid4().hex[:8]}"
    emulator = SESEmulator(rate=6, fail_5xx=0.2, seed=5).start()
    shared = f"{redis_url}/5"
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_ENDPOINT_URL = emulator.url
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_REDIS_URL = shared
    settings.SEACUCUMBER_REDIS_PREFIX = queue
    point_app_at(broker, None)
    saved = app.conf.broker_transport_options
    app.conf.broker_transport_options = {**SQS_OPTIONS, "visibility_timeout": 4}
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CELERY_BROKER_URL": broker,
        "SEACUCUMBER_ENDPOINT_URL": emulator.url,
        "SEACUCUMBER_REDIS_URL": shared,
        "SEACUCUMBER_REDIS_PREFIX": queue,
        "SEACUCUMBER_RATE_LIMIT": "30",
        "SEACUCUMBER_TEST_VISIBILITY": "4",  # a killed worker's tasks come back in 4 s
        "SEACUCUMBER_READ_TIMEOUT": "3",
    }
    try:
        yield env, queue, emulator
    finally:
        app.conf.broker_transport_options = saved
        point_app_at("memory://", None)
        emulator.stop()


def test_sends_retries_throttling_and_a_9mb_message_through_sqs(
        sqs_env, start_worker, moto_server, settings):
    """Thirty messages and one of 9 MB: every one arrives once, through 503s and throttling;
    the large one travels by S3 claim check (a task over SQS's 256 KiB could not be queued),
    arrives intact, and its stored copy is deleted once sent."""
    env, queue, emulator = sqs_env
    bucket = f"sc-claims-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    settings.SEACUCUMBER_CLAIM_CHECK_BUCKET = bucket
    settings.SEACUCUMBER_S3_ENDPOINT_URL = moto_server.url
    env = {**env, "SEACUCUMBER_CLAIM_CHECK_BUCKET": bucket,
           "SEACUCUMBER_S3_ENDPOINT_URL": moto_server.url}
    start_worker(env, queues=queue, pool="threads", concurrency=4)
    big = EmailMessage("Large", "See attached", SENDER, ["big@example.com"],
                       headers={"X-Chaos-Id": "big"})
    big.attach("data.bin", os.urandom(6_700_000), "application/octet-stream")
    from seacucumber.payload import build_sends

    big_raw = build_sends(big)[0].raw  # as send_messages builds it, on any Django
    assert len(big_raw) > 9_000_000
    assert mail.get_connection().send_messages([*tagged_messages(30), big]) == 31
    seen = wait_all(emulator, 31, timeout=60)
    assert set(seen.values()) == {1}, seen.most_common(3)
    stats = emulator.stats()
    assert stats["failed_5xx"] > 0 and stats["throttled"] > 0  # retried through both
    [received] = [m for m in emulator.messages()
                  if message_from_bytes(m.raw)["X-Chaos-Id"] == "big"]
    sent_part = message_from_bytes(received.raw).get_payload()[1].get_payload(decode=True)
    original = message_from_bytes(big_raw).get_payload()[1].get_payload(decode=True)
    assert hashlib.sha256(sent_part).digest() == hashlib.sha256(original).digest()
    deadline = time.monotonic() + 10  # deleted once settled (just after the send)
    while s3.list_objects_v2(Bucket=bucket).get("KeyCount") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_sigkilled_worker_on_sqs_loses_nothing(sqs_env, start_worker):
    """A prefork worker is SIGKILLed mid-run: SQS hands its unacknowledged tasks (prefetched
    and running) to the other worker once their visibility timeout passes; nothing is lost,
    and the send log keeps duplicates to at most one per process killed."""
    env, queue, emulator = sqs_env
    emulator.configure(rate=30)
    start_worker({**env, "AWS_SDK_UA_APP_ID": "steady"}, queues=queue, pool="threads",
                 concurrency=2)
    victim = start_worker({**env, "AWS_SDK_UA_APP_ID": "victim"}, queues=queue,
                          pool="prefork", concurrency=3)
    count = 60
    assert mail.get_connection().send_messages(tagged_messages(count)) == count
    time.sleep(1.0)
    victim.kill()  # the worker and its pool: each of 3 processes may die after SES accepted
    killed = 3
    seen = wait_all(emulator, count, timeout=60)
    duplicates = sum(n - 1 for n in seen.values())
    assert duplicates <= killed, seen.most_common(5)
    by_app = Counter(m.app for m in emulator.messages())
    assert by_app["victim"] > 0 and by_app["steady"] > 0, by_app
    # the victim died holding tasks it had received and not finished: all arrived all the
    # same, so SQS handed them to the steady worker
    log = victim.log()
    held = set(re.findall(r"send_email\[(\w+)\] received", log)) - set(
        re.findall(r"send_email\[(\w+)\] succeeded", log))
    assert held, "the victim held no task when it was killed"


def test_long_waits_are_taken_in_hops_within_the_visibility_timeout(sqs_env, start_worker):
    """The shared rate books sends seconds ahead (2/s, no waiting in the task); with
    SEACUCUMBER_MAX_COUNTDOWN=1 each re-queue is at most 1 s and a task back before its slot
    hops again without sending. All arrive once, none before its slot: the rate holds."""
    env, queue, emulator = sqs_env
    emulator.configure(fail_5xx=0.0, rate=0)
    worker = start_worker({**env, "SEACUCUMBER_RATE_LIMIT": "2",
                           "SEACUCUMBER_RATE_MAX_WAIT": "0.05",
                           "SEACUCUMBER_MAX_COUNTDOWN": "1"},
                          queues=queue, pool="threads", concurrency=4)
    count = 10
    assert mail.get_connection().send_messages(tagged_messages(count)) == count
    seen = wait_all(emulator, count, timeout=40)
    assert set(seen.values()) == {1}
    times = sorted(m.time for m in emulator.messages())
    # 2/s with a burst of half a second's worth: ten sends take at least 4 s
    assert times[-1] - times[0] >= 3.5, times
    assert "hop, due in" in worker.log()


def test_without_a_shared_redis_sqs_sends_with_the_documented_degradation(
        sqs_env, start_worker, settings):
    """No SEACUCUMBER_REDIS_URL: no shared rate and no send log (the worker says so once),
    no claim check store; mail is sent all the same."""
    env, queue, emulator = sqs_env
    emulator.configure(fail_5xx=0.0, rate=0)
    settings.SEACUCUMBER_REDIS_URL = None
    env = {name: value for name, value in env.items() if name != "SEACUCUMBER_REDIS_URL"}
    worker = start_worker(env, queues=queue, pool="threads", concurrency=2)
    assert mail.get_connection().send_messages(tagged_messages(5)) == 5
    assert set(wait_all(emulator, 5, timeout=30).values()) == {1}
    assert "no shared-state Redis" in worker.log()


def test_a_message_just_under_the_threshold_fits_in_one_sqs_message(sqs_env):
    """SQS takes a message body of at most 256 KiB (262,144 bytes), and a task's raw message
    is base64-encoded three times on its way (the payload, kombu's body, the SQS transport):
    a send just under ``SEACUCUMBER_CLAIM_CHECK_THRESHOLD`` is queued whole and fits; one
    just over travels as a claim. Read back from the queue as SQS holds it, no worker."""
    from seacucumber.conf import conf
    from seacucumber.payload import build_sends
    from tests.proj.celery import app

    _, queue, _ = sqs_env
    threshold = int(conf.SEACUCUMBER_CLAIM_CHECK_THRESHOLD)

    def raw_size(length: int) -> int:
        message = EmailMessage("s", "x" * length, SENDER, ["to@example.com"])
        return len(build_sends(message)[0].raw)

    low, high = 0, threshold  # about the longest body whose raw message fits the threshold
    while low < high:  # (quoted-printable's soft line breaks make it only nearly monotonic)
        middle = (low + high + 1) // 2
        low, high = (middle, high) if raw_size(middle) <= threshold else (low, middle - 1)
    # each build differs by a few bytes (Message-ID, Date): keep 16 bytes from the line
    under = next(n for n in range(low, low - 400, -1) if raw_size(n) <= threshold - 16)
    over = next(n for n in range(low, low + 400) if raw_size(n) > threshold + 16)
    assert threshold - 96 <= raw_size(under) <= threshold < raw_size(over)
    messages = [EmailMessage("s", "x" * length, SENDER, ["to@example.com"])
                for length in (under, over)]
    assert mail.get_connection().send_messages(messages) == 2
    port = urlsplit("//" + app.conf.broker_url.rpartition("@")[2]).port
    sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    bodies: list[str] = []
    for _ in range(5):
        found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        bodies += [m["Body"] for m in found]
        if len(bodies) >= 2:
            break
    big, small = sorted((len(b.encode()) for b in bodies), reverse=True)
    assert big <= 262_144, f"a whole message just under the threshold is {big} bytes"
    assert small < 8_000  # the one over it carries only its claim
