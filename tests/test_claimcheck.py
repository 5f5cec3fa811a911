"""The claim check on real parts: large messages stored once (the shared Redis, or S3 at
moto's server) at ``send_messages``, the task and the outbox carrying only a version-3
reference with its sha256; a real worker on a Redis broker fetching, checking and deleting
it; missing or corrupt stored messages failing their send for good; a store that fails
refusing the call. Also the longest countdown each broker allows (the hops)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import boto3
import pytest
import redis
from django.core import mail
from django.core.mail import EmailMessage

from seacucumber.exceptions import ClaimCheckError, ClaimCheckFailed, MalformedPayload
from seacucumber.payload import OutboundSend, build_sends
from seacucumber.shared import claimcheck, outbox, store
from seacucumber.tasks import max_countdown
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER, point_app_at

THRESHOLD = 64 * 1024


def large(subject: str = "Large", size: int = 200_000) -> EmailMessage:
    """A message over the test threshold (its attachment alone is)."""
    message = EmailMessage(subject, "Body", SENDER, ["big@example.com"])
    message.attach("data.bin", bytes(range(256)) * (size // 256), "application/octet-stream")
    return message


@pytest.fixture
def redis_broker(redis_url, settings):
    """This process on a Redis broker (db 9) with a queue of its own, shared state (and the
    claim check's store) in db 10, the outbox on, a 64 KiB threshold."""
    queue = f"sc-claim-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/10"
    settings.SEACUCUMBER_REDIS_PREFIX = queue
    settings.SEACUCUMBER_CLAIM_CHECK_THRESHOLD = THRESHOLD
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    point_app_at(f"{redis_url}/9", None)
    broker = redis.Redis.from_url(f"{redis_url}/9")
    try:
        yield broker, queue
    finally:
        broker.delete(queue)
        point_app_at("memory://", None)


def queued_payloads(broker: redis.Redis, queue: str) -> list[dict]:
    """The send tasks' payloads on the Redis broker's queue, oldest first."""
    bodies = [json.loads(raw) for raw in reversed(broker.lrange(queue, 0, -1))]
    return [json.loads(base64.b64decode(body["body"]))[0][0] for body in bodies]


# --- the payload ------------------------------------------------------------------------------

def test_a_claim_checked_send_is_a_version_3_payload_without_its_raw_message():
    [outbound] = build_sends(large())
    claim = {"store": "redis", "key": "sc:claim:x", "size": len(outbound.raw),
             "sha256": hashlib.sha256(outbound.raw).hexdigest()}
    payload = OutboundSend(**{**outbound.__dict__, "claim": claim}).to_json()
    assert payload["v"] == 3 and payload["claim"] == claim and "raw" not in payload
    assert len(json.dumps(payload)) < 1000
    back = OutboundSend.from_json(payload)
    assert (back.claim, back.raw, back.recipients) == (claim, b"", outbound.recipients)
    assert outbound.to_json()["v"] == 1  # no claim: the version old workers read


@pytest.mark.parametrize("change", [
    {"v": 2},  # a claim needs version 3
    {"raw": "aGk="},  # a claim or a raw message, not both
    {"claim": {"store": "disk", "key": "k", "sha256": "0" * 64, "size": 1}},
    {"claim": {"store": "s3", "key": "k", "sha256": "not-hex", "size": 1}},
    {"claim": {"store": "s3", "key": "", "sha256": "0" * 64, "size": 1}},
    {"claim": {"store": "s3", "key": "k", "sha256": "0" * 64, "size": True}},
    {"claim": {"store": "s3", "key": "k", "sha256": "0" * 64, "size": 1, "more": 1}},
])
def test_a_bad_claim_is_a_malformed_payload(change):
    payload = {"v": 3, "id": "abc", "from": SENDER, "to": ["a@example.com"], "created": 1.0,
               "options": {}, "claim": {"store": "s3", "key": "k", "sha256": "0" * 64,
                                        "size": 1}}
    with pytest.raises(MalformedPayload):
        OutboundSend.from_json({**payload, **change})


# --- storing at send_messages -------------------------------------------------------------------

def test_large_messages_are_stored_once_and_the_broker_and_outbox_carry_a_reference(
        redis_broker, settings):
    broker, queue = redis_broker
    settings.SEACUCUMBER_OUTBOX = True
    small = EmailMessage("Small", "Body", SENDER, ["small@example.com"])
    assert mail.get_connection().send_messages([large("One"), small, large("Two")]) == 3
    payloads = queued_payloads(broker, queue)
    assert [("claim" in p, "raw" in p, p["v"]) for p in payloads] == [
        (True, False, 3), (False, True, 1), (True, False, 3)]
    client = store.redis_client()
    for payload in (payloads[0], payloads[2]):
        claim = payload["claim"]
        assert claim["store"] == "redis" and claim["key"] == store.key("claim", payload["id"])
        stored = client.get(claim["key"])
        assert len(stored) == claim["size"] > THRESHOLD
        assert hashlib.sha256(stored).hexdigest() == claim["sha256"]
        assert 0 < client.ttl(claim["key"]) <= claimcheck.ttl()
        record = client.hget(outbox.key_names()["task"], payload["id"])
        assert len(record) < 2000 and b'"claim"' in record  # the outbox: the reference only
    assert broker.memory_usage(queue) < 40_000  # three tasks, no large message among them


def test_fetch_checks_size_and_sha256_and_a_gone_or_changed_message_fails(redis_broker):
    [[outbound]] = claimcheck.check_in([build_sends(large())], timeout=5)
    received = OutboundSend.from_json(outbound.to_json())
    assert claimcheck.fetch(received).raw == outbound.raw
    client, key = store.redis_client(), outbound.claim["key"]
    client.set(key, outbound.raw[:-1] + b"X")
    with pytest.raises(ClaimCheckFailed) as corrupt:
        claimcheck.fetch(received)
    assert corrupt.value.code == "ClaimCheckCorrupt" and outbound.claim["sha256"] in str(
        corrupt.value)
    client.delete(key)
    with pytest.raises(ClaimCheckFailed) as missing:
        claimcheck.fetch(received)
    assert missing.value.code == "ClaimCheckMissing"


def test_s3_store_on_moto(redis_broker, moto_server, settings):
    broker, queue = redis_broker
    bucket = f"sc-claims-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    settings.SEACUCUMBER_CLAIM_CHECK_BUCKET = bucket
    settings.SEACUCUMBER_S3_ENDPOINT_URL = moto_server.url
    assert mail.get_connection().send_messages([large()]) == 1
    [payload] = queued_payloads(broker, queue)
    claim = payload["claim"]
    assert claim["store"] == "s3" and claim["key"] == f"{queue}/claim/{payload['id']}"
    stored = s3.get_object(Bucket=bucket, Key=claim["key"])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == claim["sha256"]
    assert claimcheck.fetch(OutboundSend.from_json(payload)).raw == stored
    claimcheck.release(payload)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_release_deletes_only_the_sends_own_key(redis_broker):
    client = store.redis_client()
    client.set("precious", b"x")
    sha = hashlib.sha256(b"x").hexdigest()
    claimcheck.release({"v": 3, "id": "abc", "from": SENDER, "to": ["a@example.com"],
                        "created": 1.0, "options": {},
                        "claim": {"store": "redis", "key": "precious", "sha256": sha,
                                  "size": 1}})
    assert client.get("precious") == b"x"


@pytest.mark.parametrize("setting, error", [
    ({"SEACUCUMBER_CLAIM_CHECK_BUCKET": "no-such-bucket"}, "claim check's s3 store"),
    ({"SEACUCUMBER_CLAIM_CHECK_STORE": "s3"}, "SEACUCUMBER_CLAIM_CHECK_BUCKET"),
    ({"SEACUCUMBER_CLAIM_CHECK_STORE": "disk"}, "SEACUCUMBER_CLAIM_CHECK_STORE='disk'"),
    ({"SEACUCUMBER_REDIS_URL": "redis://127.0.0.1:1/0"}, "claim check's redis store"),
])
def test_a_store_that_fails_refuses_the_call_at_send_messages(
        redis_broker, moto_server, settings, setting, error):
    broker, queue = redis_broker
    settings.SEACUCUMBER_S3_ENDPOINT_URL = moto_server.url
    settings.SEACUCUMBER_OUTBOX = False
    for name, value in setting.items():
        setattr(settings, name, value)
    small = EmailMessage("Small", "Body", SENDER, ["small@example.com"])
    with pytest.raises(ClaimCheckError, match=error):
        mail.get_connection().send_messages([small, large()])
    assert broker.llen(queue) == 0  # nothing of the call was queued
    assert mail.get_connection(fail_silently=True).send_messages([large()]) == 0


@pytest.mark.parametrize("setting, expected", [
    ({}, []),
    ({"SEACUCUMBER_CLAIM_CHECK_STORE": "disk"}, ["seacucumber.E033"]),
    ({"SEACUCUMBER_CLAIM_CHECK_STORE": "s3"}, ["seacucumber.E033"]),
    ({"SEACUCUMBER_CLAIM_CHECK_BUCKET": "claims"}, []),
    ({"SEACUCUMBER_CLAIM_CHECK_STORE": "off"}, ["seacucumber.W033"]),
])
def test_system_check_of_the_claim_check_on_sqs(settings, redis_url, setting, expected):
    from seacucumber.checks import check_claim_check
    from tests.proj.celery import app

    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/10"
    for name, value in setting.items():
        setattr(settings, name, value)
    saved = app.conf.broker_url
    app.conf.broker_url = "sqs://"
    try:
        assert [m.id for m in check_claim_check()] == expected
    finally:
        app.conf.broker_url = saved


# --- the longest countdown --------------------------------------------------------------------

@pytest.mark.parametrize("broker, options, expected", [
    ("sqs://", {}, 900.0),
    ("sqs://", {"visibility_timeout": 60}, 30.0),
    ("redis://127.0.0.1:6390/0", {}, 1800.0),
    ("redis://127.0.0.1:6390/0", {"visibility_timeout": 10}, 5.0),
    ("amqp://guest@127.0.0.1//", {}, None),
])
def test_max_countdown_follows_the_broker(broker, options, expected, settings):
    from tests.proj.celery import app

    saved = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url, app.conf.broker_transport_options = broker, options
    try:
        assert max_countdown() == expected
        settings.SEACUCUMBER_MAX_COUNTDOWN = 7
        assert max_countdown() == 7.0
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = saved


# --- a real worker on the Redis broker ----------------------------------------------------------

def worker_env(redis_url: str, queue: str, emulator: SESEmulator) -> dict[str, str]:
    return {"DJANGO_SETTINGS_MODULE": "tests.settings", "CELERY_BROKER_URL": f"{redis_url}/9",
            "SEACUCUMBER_ENDPOINT_URL": emulator.url,
            "SEACUCUMBER_REDIS_URL": f"{redis_url}/10", "SEACUCUMBER_REDIS_PREFIX": queue}


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_worker_sends_large_messages_intact_and_deletes_them_once_sent(
        redis_broker, redis_url, start_worker, settings):
    broker, queue = redis_broker
    with SESEmulator(rate=0) as emulator:
        settings.SEACUCUMBER_ENDPOINT_URL = emulator.url
        messages = [large("One", 3_000_000), EmailMessage("Small", "B", SENDER, ["s@example.com"])]
        assert mail.get_connection().send_messages(messages) == 2
        claimed, small = queued_payloads(broker, queue)
        start_worker(worker_env(redis_url, queue, emulator), queues=queue)
        wait_until(lambda: len(emulator.messages()) == 2, 30, "both messages sent")
        got = {hashlib.sha256(m.raw).hexdigest() for m in emulator.messages()}
        assert got == {claimed["claim"]["sha256"],
                       hashlib.sha256(base64.b64decode(small["raw"])).hexdigest()}
        key = claimed["claim"]["key"]
        wait_until(lambda: not store.redis_client().exists(key), 10, "stored copy deleted")


def test_a_missing_or_corrupt_stored_message_fails_its_send_for_good(
        redis_broker, redis_url, start_worker, settings):
    broker, queue = redis_broker
    with SESEmulator(rate=0) as emulator:
        settings.SEACUCUMBER_ENDPOINT_URL = emulator.url
        assert mail.get_connection().send_messages([large("Gone"), large("Changed")]) == 2
        gone, changed = queued_payloads(broker, queue)
        client = store.redis_client()
        client.delete(gone["claim"]["key"])
        client.append(changed["claim"]["key"], b"!")
        worker = start_worker(worker_env(redis_url, queue, emulator), queues=queue)
        wait_until(lambda: worker.log().count("PermanentSendError") >= 2, 30, worker.log())
        log = worker.log()
        assert f"message {gone['id']} failed: ClaimCheckMissing" in log
        assert f"message {changed['id']} failed: ClaimCheckCorrupt" in log
        assert "retry" not in log.lower() and emulator.messages() == []
        wait_until(lambda: not client.exists(changed["claim"]["key"]), 10, "deleted")


@pytest.mark.parametrize("pipeline", ["amqp"], indirect=True)
def test_the_claim_check_works_on_rabbitmq_too(pipeline, start_worker, moto_ses, redis_url,
                                               settings):
    """The same on RabbitMQ (the store: the shared-state Redis beside it)."""
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/10"
    settings.SEACUCUMBER_REDIS_PREFIX = pipeline.queue
    settings.SEACUCUMBER_CLAIM_CHECK_THRESHOLD = THRESHOLD
    assert mail.get_connection().send_messages([large("Rabbit")]) == 1
    client = store.redis_client()
    [key] = client.scan_iter(store.key("claim", "*"))  # stored, before any worker runs
    start_worker(pipeline.worker_env(SEACUCUMBER_REDIS_URL=f"{redis_url}/10",
                                     SEACUCUMBER_REDIS_PREFIX=pipeline.queue),
                 queues=pipeline.queue)
    [sent] = moto_ses.wait_for(1)
    body = sent.raw_data if isinstance(sent.raw_data, str) else sent.raw_data.decode()
    attachment = bytes(range(256)) * (200_000 // 256)
    assert base64.b64encode(attachment).decode() in body.replace("\r\n", "")
    wait_until(lambda: not list(client.scan_iter(store.key("claim", "*"))), 10,
               "stored copy deleted")
