"""The outbox on a private Redis: a record follows its task, the sweeper queues again a task
taken off the queue and never started (what kombu's Redis transport loses when a worker is
SIGKILLed between BRPOP and recording the task), and leaves alone tasks still waiting."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
import redis
from django.core import mail
from django.core.mail import EmailMessage

from seacucumber.payload import build_sends
from seacucumber.send import attempt
from seacucumber.shared import outbox, store
from seacucumber.shared.sweeper import Sweeper
from seacucumber.shared.workers import routed_queue
from seacucumber.tasks import publish
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER, point_app_at

GRACE = 0.3


@pytest.fixture
def redis_broker(redis_url, settings):
    """This process on a Redis broker (db 7) with a queue of its own, shared state in db 8."""
    from tests.proj.celery import app

    queue = f"sc-outbox-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/8"
    settings.SEACUCUMBER_REDIS_PREFIX = queue
    settings.SEACUCUMBER_OUTBOX_GRACE = GRACE
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    point_app_at(f"{redis_url}/7", None)
    broker = redis.Redis.from_url(f"{redis_url}/7")
    try:
        yield app, broker, queue
    finally:
        broker.delete(queue)
        point_app_at("memory://", None)


def state(message_id: str) -> dict[str, float | bool | None]:
    from django.conf import settings

    keys = outbox.key_names()
    client = store.redis_client()
    return {"task": client.hexists(keys["task"], message_id),
            "published": client.zscore(outbox.published(settings.SEACUCUMBER_QUEUE),
                                       message_id),
            **{name: client.zscore(keys[name], message_id) for name in ("queued", "running")}}


def queued_ids(broker: redis.Redis, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in broker.lrange(queue, 0, -1)]


def worker_env(redis_url: str, queue: str, emulator: SESEmulator, **extra: str) -> dict:
    """A worker's environment on ``redis_broker``'s broker and shared state."""
    return {"DJANGO_SETTINGS_MODULE": "tests.settings", "CELERY_BROKER_URL": f"{redis_url}/7",
            "SEACUCUMBER_ENDPOINT_URL": emulator.url, "SEACUCUMBER_REDIS_URL": f"{redis_url}/8",
            "SEACUCUMBER_REDIS_PREFIX": queue, **extra}


def message(n: int = 0) -> EmailMessage:
    return EmailMessage(f"Outbox {n}", "Body", SENDER, [f"to{n}@example.com"])


def test_on_by_default_with_a_redis_or_sqs_broker(redis_url, settings):
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/8"
    point_app_at("amqp://guest:guest@127.0.0.1:5672//", None)
    try:
        assert not outbox.enabled()  # RabbitMQ loses nothing between delivery and ack
        settings.SEACUCUMBER_OUTBOX = True
        assert outbox.enabled()
        settings.SEACUCUMBER_REDIS_URL = None
        assert not outbox.enabled()  # nowhere to keep it
        point_app_at(f"{redis_url}/7", None)
        settings.SEACUCUMBER_OUTBOX = None
        assert outbox.enabled()  # the broker is the shared-state Redis
        settings.SEACUCUMBER_OUTBOX = False
        assert not outbox.enabled()
        settings.SEACUCUMBER_OUTBOX = None
        settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/8"
        point_app_at("sqs://testing:testing@127.0.0.1:1", None)
        assert outbox.enabled()  # SQS hands a dead worker's tasks back after its visibility
    finally:
        point_app_at("memory://", None)


def test_a_record_follows_its_task_and_never_comes_back(redis_broker):
    app, broker, queue = redis_broker
    [outbound] = build_sends(message())
    mid = outbound.message_id
    assert outbox.record([outbound.to_json()], queue, queue, timeout=1.0)
    now = time.time()
    first = state(mid)
    assert first["task"] and first["running"] is None
    assert first["published"] == pytest.approx(now, abs=1)
    assert first["queued"] == pytest.approx(now + GRACE, abs=1)
    attempt.started(mid)
    running = state(mid)
    assert running["published"] is None and running["queued"] is None
    assert running["running"] > time.time()
    outbox.requeued(mid, countdown=60)
    again = state(mid)
    assert again["running"] is None
    assert again["queued"] == pytest.approx(time.time() + 60 + GRACE, abs=1)
    outbox.settled(mid)
    gone = {"task": False, "published": None, "queued": None, "running": None}
    assert state(mid) == gone
    attempt.started(mid)  # a late copy of the task: does not bring the record back
    outbox.requeued(mid, countdown=1)
    assert state(mid) == gone


def test_send_messages_records_each_send_under_its_task_id(redis_broker):
    app, broker, queue = redis_broker
    assert mail.get_connection().send_messages([message(1), message(2)]) == 2
    ids = queued_ids(broker, queue)
    assert len(ids) == 2
    for mid in ids:
        assert state(mid)["task"] and state(mid)["published"] is not None
    assert outbox.counts() == {"queued": 2, "running": 0}


def test_a_task_taken_off_the_queue_and_never_started_is_queued_again(redis_broker):
    app, broker, queue = redis_broker
    mail.get_connection().send_messages([message()])
    [mid] = queued_ids(broker, queue)
    assert broker.brpop(queue, 5)  # a worker took it off the queue ... and was killed
    sweeper = Sweeper(app, publish)
    time.sleep(GRACE + 0.1)
    assert sweeper.sweep() == []  # the first look only notes the queue is empty
    assert sweeper.sweep() == [mid]
    assert queued_ids(broker, queue) == [mid]  # the same task, under the same id
    assert sweeper.sweep() == []  # queued again just now: not claimed twice


def test_a_task_a_live_worker_holds_reserved_is_not_lost_and_is_once_it_dies(
        redis_broker, settings, monkeypatch):
    """A worker stamps what it prefetched (``holders``): its task is left alone past the
    grace while its heartbeat lives, and taken over as soon as it lapses."""
    from seacucumber.shared import holders

    app, broker, queue = redis_broker
    settings.SEACUCUMBER_HOLDER_TTL = 0.6
    mail.get_connection().send_messages([message()])
    [mid] = queued_ids(broker, queue)
    assert broker.brpop(queue, 5)  # prefetched by a live worker
    beat = holders.HolderBeat(lambda: [mid], holder="consumer:1")
    beat.beat()
    sweeper = Sweeper(app, publish)
    time.sleep(GRACE + 0.1)
    assert sweeper.sweep() == []
    beat.beat()
    assert sweeper.sweep() == [] and sweeper.take_over() == []  # held by a live worker
    time.sleep(0.7)  # the worker died: its beat lapsed
    assert sweeper.take_over() == [mid]
    assert queued_ids(broker, queue) == [mid]


def test_a_task_a_worker_let_go_unstarted_is_swept_again(redis_broker, settings):
    """A reserved task the worker dropped without running it (revoked, expired) is released
    by its next beat, so the sweep finds it although the worker lives."""
    from seacucumber.shared import holders

    app, broker, queue = redis_broker
    settings.SEACUCUMBER_HOLDER_TTL = 5.0
    mail.get_connection().send_messages([message()])
    [mid] = queued_ids(broker, queue)
    assert broker.brpop(queue, 5)
    held = [mid]
    beat = holders.HolderBeat(lambda: held, holder="consumer:1")
    beat.beat()
    held.clear()
    beat.beat()
    sweeper = Sweeper(app, publish)
    time.sleep(GRACE + 0.1)
    assert sweeper.sweep() == []
    assert sweeper.sweep() == [mid]


def test_tasks_still_waiting_in_the_queue_are_left_alone(redis_broker):
    app, broker, queue = redis_broker
    mail.get_connection().send_messages([message(1), message(2)])
    time.sleep(GRACE + 0.1)
    sweeper = Sweeper(app, publish)
    for _ in range(3):
        assert sweeper.sweep() == []
        time.sleep(0.1)
    assert len(queued_ids(broker, queue)) == 2


def test_a_lost_task_behind_a_busy_queue_is_found_by_the_head(redis_broker):
    """The queue never empties: the oldest task of ours at its head shows how far it went."""
    app, broker, queue = redis_broker
    mail.get_connection().send_messages([message(1)])
    [lost] = queued_ids(broker, queue)
    time.sleep(GRACE + 0.2)
    mail.get_connection().send_messages([message(2)])
    broker.brpop(queue, 5)  # the older one is taken, and its worker killed
    [waiting] = queued_ids(broker, queue)
    sweeper = Sweeper(app, publish)
    assert sweeper.sweep() == []
    assert sweeper.sweep() == [lost]
    assert queued_ids(broker, queue) == [lost, waiting]  # at the back, the waiting one first


def test_a_queue_nobody_takes_from_holds_back_only_its_own(redis_broker, settings):
    app, broker, queue = redis_broker
    settings.SEACUCUMBER_QUEUE = f"{queue}-abandoned"
    mail.get_connection().send_messages([message(1)])  # waits there for ever
    settings.SEACUCUMBER_QUEUE = queue
    mail.get_connection().send_messages([message(2)])
    [lost] = queued_ids(broker, queue)
    broker.brpop(queue, 5)
    time.sleep(GRACE + 0.1)
    sweeper = Sweeper(app, publish)
    try:
        assert sweeper.sweep() == []
        assert sweeper.sweep() == [lost]
        assert len(queued_ids(broker, f"{queue}-abandoned")) == 1  # left alone
    finally:
        broker.delete(f"{queue}-abandoned")


def test_a_head_of_other_tasks_tells_nothing(redis_broker):
    app, broker, queue = redis_broker
    mail.get_connection().send_messages([message(1)])
    broker.brpop(queue, 5)
    broker.lpush(queue, json.dumps({"headers": {"id": "someone-else"}, "body": ""}))
    time.sleep(GRACE + 0.1)
    sweeper = Sweeper(app, publish)
    assert sweeper.sweep() == [] and sweeper.sweep() == []  # cannot tell: waits
    broker.delete(queue)  # the other task was taken: an empty queue tells
    assert sweeper.sweep() == []
    assert len(sweeper.sweep()) == 1


def test_an_attempt_that_never_ended_is_queued_again(redis_broker, settings):
    """A worker died mid-task and kombu's hand-back of the task was lost too."""
    app, broker, queue = redis_broker
    settings.SEACUCUMBER_RATE_MAX_WAIT = 0
    settings.SEACUCUMBER_CONNECT_TIMEOUT = 0
    settings.SEACUCUMBER_READ_TIMEOUT = -4.9  # an attempt lasts at most 0.1 s
    mail.get_connection().send_messages([message()])
    [mid] = queued_ids(broker, queue)
    broker.brpop(queue, 5)
    attempt.started(mid)
    sweeper = Sweeper(app, publish)
    assert sweeper.sweep() == []  # still running by its clock
    time.sleep(0.1 + GRACE + 0.1)
    assert sweeper.sweep() == []  # past its end: counts as published now
    assert state(mid)["queued"] is not None
    time.sleep(GRACE + 0.1)
    assert sweeper.sweep() == []  # the empty queue moved past it at the last look
    assert sweeper.sweep() == [mid]


def test_a_task_lost_by_a_killed_worker_is_sent_by_another(redis_broker, redis_url,
                                                            start_worker):
    """End to end: the task is taken off the queue and its taker dies; a real worker's
    sweeper queues it again and the worker sends it, once."""
    app, broker, queue = redis_broker
    emulator = SESEmulator().start()
    try:
        mail.get_connection().send_messages([message(7)])
        [mid] = queued_ids(broker, queue)
        assert broker.brpop(queue, 5)
        start_worker(worker_env(redis_url, queue, emulator,
                                SEACUCUMBER_OUTBOX_GRACE=str(GRACE),
                                SEACUCUMBER_OUTBOX_SWEEP_INTERVAL="0.5"),
                     queues=queue, pool="threads", concurrency=2)
        deadline = time.monotonic() + 30
        while not emulator.messages():
            assert time.monotonic() < deadline, "the lost task was never sent"
            time.sleep(0.2)
        time.sleep(1.5)  # three more sweeps: nothing is sent twice
        [sent] = emulator.messages()
        assert b"Subject: Outbox 7" in sent.raw
        assert state(mid)["task"] is False  # settled: the record is gone
    finally:
        emulator.stop()


def reroute(app) -> None:
    """Make Celery read task_routes again (its router is built once)."""
    app.amqp.flush_routes()
    app.amqp.__dict__.pop("router", None)


def test_without_a_queue_setting_the_record_names_celerys_route(redis_broker, settings):
    app, broker, queue = redis_broker
    settings.SEACUCUMBER_QUEUE = None
    saved = app.conf.task_routes
    app.conf.task_routes = {"seacucumber.send_email": {"queue": f"{queue}-routed"}}
    reroute(app)
    try:
        [outbound] = build_sends(message())
        assert outbox.record([outbound.to_json()], None, routed_queue(), timeout=1.0)
        client = store.redis_client()
        assert client.hget(outbox.key_names()["queue"], outbound.message_id) == \
            f"{queue}-routed".encode()
        assert f"{queue}-routed".encode() in client.smembers(outbox.key_names()["queues"])
    finally:
        app.conf.task_routes = saved
        reroute(app)


def test_forced_on_with_rabbitmq_an_empty_queue_tells(redis_url, amqp_url, settings):
    """RabbitMQ loses nothing between delivery and ack, but SEACUCUMBER_OUTBOX = True works
    there too: the sweeper asks RabbitMQ how many tasks wait."""
    from kombu import Connection, Queue

    from tests.proj.celery import app

    queue = f"sc-outbox-amqp-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_OUTBOX = True
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/8"
    settings.SEACUCUMBER_REDIS_PREFIX = queue
    settings.SEACUCUMBER_OUTBOX_GRACE = GRACE
    point_app_at(amqp_url, None)
    with Connection(amqp_url) as connection:
        bound = Queue(queue, auto_delete=False).bind(connection.default_channel)
        bound.declare()
        try:
            [outbound] = build_sends(message())  # recorded, never published: lost
            assert outbox.record([outbound.to_json()], queue, queue, timeout=1.0)
            time.sleep(GRACE + 0.1)
            sweeper = Sweeper(app, publish)
            assert sweeper.sweep() == []
            assert sweeper.sweep() == [outbound.message_id]
            got = None
            for _ in range(50):  # published again: RabbitMQ routes it within moments
                if (got := bound.get(no_ack=True)) is not None:
                    break
                time.sleep(0.1)
            assert got is not None and got.headers["id"] == outbound.message_id
        finally:
            bound.delete()
            point_app_at("memory://", None)


# --- one round trip per send_messages: the records ride in the publish's pipeline ------------

@pytest.fixture
def round_trips(monkeypatch):
    """A context manager that collects every write redis-py makes while it is open (a
    pipeline is one write: one round trip), as ``test_lanes`` counts the worker's."""
    import contextlib

    writes: list[bytes] = []
    real = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        writes.append(command)
        return real(self, command, check_health)

    @contextlib.contextmanager
    def counting():
        writes.clear()
        with monkeypatch.context() as patched:
            patched.setattr(redis.connection.AbstractConnection, "send_packed_command",
                            counted)
            yield writes

    return counting


def test_the_records_and_the_publish_are_one_round_trip(redis_broker, round_trips, settings):
    """The shared state in another database of the broker's server (db 8 and db 7): one
    write per call, for one message and for 20 and 10 on two queues; each record in the
    shared-state database, each task on its queue."""
    app, broker, queue = redis_broker
    connection = mail.get_connection()
    connection.send_messages([message(0)])  # warm up: the broker's connection, the queue
    other = f"{queue}-other"
    lane = mail.get_connection(queue=other)
    lane.send_messages([message(0)])
    broker.delete(queue, other)
    with round_trips() as writes:
        assert connection.send_messages([message(1)]) == 1
    assert len(writes) == 1, writes
    with round_trips() as writes:
        assert connection.send_messages([message(n) for n in range(2, 22)]) == 20
        assert lane.send_messages([message(n) for n in range(22, 32)]) == 10
    assert len(writes) == 2, writes
    ids = queued_ids(broker, queue)
    other_ids = queued_ids(broker, other)
    assert (len(ids), len(other_ids)) == (21, 10)
    for mid in ids + other_ids:
        assert state(mid)["task"]
    client = store.redis_client()
    assert {client.hget(outbox.key_names()["queue"], mid) for mid in other_ids} == \
        {other.encode()}
    assert not broker.exists(outbox.key_names()["task"])  # nothing in the broker's db
    broker.delete(other)


def test_a_shared_state_on_another_server_costs_a_call_of_its_own(redis_broker, round_trips,
                                                                   settings):
    from seacucumber.testing.processes import RedisServer

    app, broker, queue = redis_broker
    other = RedisServer().start()
    try:
        settings.SEACUCUMBER_REDIS_URL = f"{other.url}/0"
        connection = mail.get_connection()
        connection.send_messages([message(0)])
        with round_trips() as writes:
            assert connection.send_messages([message(1)]) == 1
        assert len(writes) == 2, writes  # the record, then the publish
        ids = queued_ids(broker, queue)
        assert len(ids) == 2 and all(state(mid)["task"] for mid in ids)
    finally:
        other.stop()


def test_the_task_on_the_wire_is_the_one_apply_async_publishes(redis_broker):
    """kombu's Redis message of a send published with its record (one pipeline) against
    Celery's ``apply_async`` of the same payload (``publish``): the same fields, encoding,
    routing and task headers, only the ids told apart."""
    app, broker, queue = redis_broker
    [outbound] = build_sends(message(1))
    payload = outbound.to_json()
    publish(payload, outbound.message_id, queue)
    mail.get_connection().send_messages([message(2)])
    by_apply_async, ours = (json.loads(raw) for raw in reversed(broker.lrange(queue, 0, -1)))

    def shape(found: dict) -> dict:
        properties = found["properties"]
        return {
            "fields": sorted(found), "content": (found["content-type"],
                                                  found["content-encoding"]),
            "properties": sorted(properties),
            "routing": (properties["body_encoding"], properties["delivery_info"],
                        properties["priority"], properties["delivery_mode"]),
            "headers": sorted(found["headers"]),
            "task": {name: found["headers"][name] for name in (
                "lang", "task", "shadow", "eta", "expires", "retries", "timelimit",
                "ignore_result", "replaced_task_nesting", "stamped_headers", "kwargsrepr")
                if name in found["headers"]},
        }

    assert shape(ours) == shape(by_apply_async)
    assert ours["properties"]["correlation_id"] == ours["headers"]["id"] != payload["id"]
    assert ours["headers"]["argsrepr"] == f"[<message {ours['headers']['id']}>]"
    assert ours["properties"]["delivery_tag"] != by_apply_async["properties"]["delivery_tag"]
    assert state(ours["headers"]["id"])["task"]


def test_the_record_and_the_body_are_the_texts_each_made_alone(redis_broker):
    """The payload's JSON is made once for its record and its task's body (issue 27's fourth
    round); each is still the text made alone before: the record
    ``json.dumps({"payload", "queue"})`` (old and new workers and sweepers read each other's
    records), the body kombu's JSON of Celery's (args, kwargs, embed), non-ASCII included."""
    from kombu.utils.json import dumps as kombu_dumps

    app, broker, queue = redis_broker
    message = EmailMessage("Été — naïve 😀", "Body", "Zoë <sender@example.com>",
                           ["Ünïcode <to@example.com>"])
    assert mail.get_connection().send_messages([message]) == 1
    [raw] = broker.lrange(queue, 0, -1)
    found = json.loads(raw)
    assert found["properties"]["body_encoding"] == "base64"
    body = base64.b64decode(found["body"]).decode()
    args, kwargs, embed = json.loads(body)
    assert body == kombu_dumps((args, kwargs, embed))
    [payload] = args
    assert payload["id"] == found["headers"]["id"] == message.seacucumber_ids[0]
    record = store.redis_client().hget(outbox.key_names()["task"], payload["id"])
    assert record.decode() == json.dumps({"payload": payload, "queue": queue})


@pytest.mark.worker
def test_tasks_published_with_their_records_are_sent_by_a_stock_worker(redis_broker, redis_url,
                                                                       start_worker):
    """Messages put on the queue in the records' pipeline (lanes' two queues among them)
    are read, sent and settled by a real worker: each sent once, no record left."""
    app, broker, queue = redis_broker
    emulator = SESEmulator().start()
    try:
        sent = mail.get_connection().send_messages([message(n) for n in range(5)])
        sent += mail.get_connection(queue=f"{queue}-b").send_messages([message(5)])
        assert sent == 6
        start_worker(worker_env(redis_url, queue, emulator), queues=f"{queue},{queue}-b",
                     pool="threads", concurrency=2)
        deadline = time.monotonic() + 30
        while len(emulator.messages()) < 6 or outbox.counts() != {"queued": 0, "running": 0}:
            assert time.monotonic() < deadline, (len(emulator.messages()), outbox.counts())
            time.sleep(0.2)
        subjects = sorted(m.raw.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]
                          for m in emulator.messages())
        assert subjects == [f"Outbox {n}".encode() for n in range(6)]
    finally:
        emulator.stop()


def test_a_broker_key_prefix_keeps_the_records_apart(redis_broker, round_trips, settings):
    """kombu's ``global_keyprefix`` would rename the records' keys in the broker's
    pipeline: they are then a call of their own, where the sweeper reads them."""
    app, broker, queue = redis_broker
    saved = app.conf.broker_transport_options
    app.conf.broker_transport_options = {**(saved or {}), "global_keyprefix": "pfx:"}
    point_app_at(app.conf.broker_url, None)
    try:
        connection = mail.get_connection()
        connection.send_messages([message(0)])
        with round_trips() as writes:
            assert connection.send_messages([message(1)]) == 1
        assert len(writes) == 2, writes
        ids = [json.loads(raw)["headers"]["id"] for raw in broker.lrange(f"pfx:{queue}", 0, -1)]
        assert len(ids) == 2 and all(state(mid)["task"] for mid in ids)
    finally:
        broker.delete(f"pfx:{queue}")
        app.conf.broker_transport_options = saved


@pytest.mark.django_db(transaction=True)
def test_on_commit_the_record_and_the_task_go_together_after_the_commit(redis_broker, settings,
                                                                        round_trips):
    from django.db import transaction

    app, broker, queue = redis_broker
    settings.SEACUCUMBER_ENQUEUE_ON_COMMIT = True
    connection = mail.get_connection()
    connection.send_messages([message(0)])  # warm up, outside a transaction: at once
    broker.delete(queue)
    with round_trips() as writes, transaction.atomic():
        assert connection.send_messages([message(1)]) == 1
        assert queued_ids(broker, queue) == [] and outbox.counts()["queued"] == 1
        writes.clear()  # the warm-up's record is the one counted above
    assert len(writes) == 1, writes  # at the commit: the record and the task, one write
    [mid] = queued_ids(broker, queue)
    assert state(mid)["task"] and outbox.counts()["queued"] == 2


def test_on_rabbitmq_the_records_come_first_then_the_tasks_one_by_one(redis_url, amqp_url,
                                                                      settings):
    """RabbitMQ's transport has no pipeline: the records are their own call, then each
    task is published as ``apply_async`` publishes it."""
    from kombu import Connection, Queue

    queue = f"sc-outbox-amqp-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_OUTBOX = True
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/8"
    settings.SEACUCUMBER_REDIS_PREFIX = queue
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    point_app_at(amqp_url, None)
    with Connection(amqp_url) as connection:
        bound = Queue(queue, auto_delete=False).bind(connection.default_channel)
        bound.declare()
        try:
            assert mail.get_connection().send_messages([message(1), message(2)]) == 2
            ids = []
            for _ in range(50):
                if (got := bound.get(no_ack=True)) is not None:
                    ids.append(got.headers["id"])
                    if len(ids) == 2:
                        break
                else:
                    time.sleep(0.1)
            assert len(ids) == 2 and all(state(mid)["task"] for mid in ids)
        finally:
            bound.delete()
            point_app_at("memory://", None)
