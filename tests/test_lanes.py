"""Lanes under one account rate, per-message SES controls and the ids given back.

The limiter's lane rules on a private Redis; then real workers (one pool for every lane, and
a worker per lane) on Redis and RabbitMQ draining a bulk backlog while transactional mail
goes past it; the options and our ids as the SES emulator receives them."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from django.core import checks, mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage

from seacucumber.backend import SESBackend
from seacucumber.conf import lane, lanes
from seacucumber.exceptions import InvalidMessage, InvalidOption
from seacucumber.payload import OutboundSend, build_sends
from seacucumber.send import attempt
from seacucumber.shared import quota
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER, point_app_at, point_at_emulator

TWO_LANES = {"transactional": {}, "bulk": {"queue": "bulk-q", "min_share": 0.1}}


@pytest.fixture
def shared_redis(redis_url, settings):
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/4"
    settings.SEACUCUMBER_REDIS_PREFIX = f"t-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_LANES = TWO_LANES
    quota.forget()
    yield settings
    quota.forget()


# --- the setting ---------------------------------------------------------------------------

def test_default_lanes_and_a_bad_setting_named(settings):
    assert [(found.name, found.rank, found.queue) for found in lanes()] == [
        ("transactional", 0, None), ("bulk", 1, "seacucumber-bulk")]
    assert lane().name == "transactional" and lane("bulk").min_share == 0.1
    for bad, words in [
        ({"a b": {}}, "lane name"),
        ({"t": {}, "b": {"share": 0.1}}, "keys among"),
        ({"t": {"min_share": 0.2}}, "first lane"),
        ({"t": {}, "b": {"min_share": 1.0}}, "min_share"),
        ({"t": {}, "b": {"min_share": 0.6}, "c": {"min_share": 0.5}}, "add up"),
    ]:
        settings.SEACUCUMBER_LANES = bad
        with pytest.raises(ImproperlyConfigured, match=words):
            lanes()
        [error] = [m for m in checks.run_checks() if m.id == "seacucumber.E012"]
        assert words in error.msg


# --- the limiter, per lane -------------------------------------------------------------------

def test_a_lower_lane_books_only_within_its_lookahead(shared_redis):
    shared_redis.SEACUCUMBER_LANES = {"transactional": {}, "bulk": {"min_share": 0}}
    bulk = lane("bulk")
    decisions = [attempt.reserve(1, 10, lane=bulk, burst=0, attempt=f"b{n}") for n in range(6)]
    admitted = [d for d in decisions if d.admitted]
    # idle: the first books at once; then slots 0.1 s apart while within 0.2 s of now
    assert 2 <= len(admitted) <= 3
    assert all(d.wait <= 0.2 + 0.01 for d in admitted)
    refused = [d for d in decisions if not d.admitted]
    assert refused and refused[-1].waiters == len(refused)  # each counted once
    # the first lane is not kept waiting behind what the lower lane could not book
    first = attempt.reserve(1, 10, burst=0)
    assert first.admitted and first.wait <= 0.35


def test_a_flood_on_the_first_lane_leaves_the_lower_lane_its_share(shared_redis):
    for n in range(50):  # the first lane books 5 s ahead at 10/s
        assert attempt.reserve(1, 10, burst=0, attempt=f"t{n}").admitted
    bulk = lane("bulk")
    share = attempt.reserve(1, 10, lane=bulk, burst=0, attempt="b1")
    assert share.admitted and 4.5 < share.wait < 5.5  # its share: a slot, behind the flood
    again = attempt.reserve(1, 10, lane=bulk, burst=0, attempt="b2")
    assert not again.admitted  # its share is used for the next 1 / (0.1 x 10) = 1 s
    time.sleep(1.05)
    assert attempt.reserve(1, 10, lane=bulk, burst=0, attempt="b3").admitted


def test_lanes_together_hold_the_rate_and_the_first_is_served_first(shared_redis):
    """Both lanes flooding for 3 s at 50/s: the first lane books as far ahead as it may (a
    0.5 s horizon here) as fast as it can, the lower lane's two threads wait for each slot
    they get, like workers. The slots due inside the window add up to the rate (plus the
    burst), not more; the first lane gets most, the lower lane about its 10% share, never
    nothing."""
    shared_redis.SEACUCUMBER_RATE_HORIZON = 0.5
    rate, seconds, granted = 50.0, 3.0, {"transactional": 0, "bulk": 0}
    lock = threading.Lock()
    start = time.monotonic()

    def ask(lane_name: str, n: int) -> None:
        found = lane(lane_name)
        while time.monotonic() - start < seconds:
            decision = attempt.reserve(1, rate, lane=found, burst=0.2,
                                       attempt=f"{lane_name}{n}")
            due = time.monotonic() + decision.wait - start
            if decision.admitted and due <= seconds:
                with lock:
                    granted[lane_name] += 1
                if found.rank > 0:
                    time.sleep(decision.wait)
            elif decision.admitted:
                return  # booked past the window
            else:
                time.sleep(0.01)

    threads = [threading.Thread(target=ask, args=(name, n))
               for name in ("transactional", "bulk") for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = granted["transactional"] + granted["bulk"]
    assert 0.85 * rate * seconds <= total <= rate * (seconds + 0.2) + 2, granted
    assert granted["bulk"] >= 0.1 * rate * seconds * 0.5, granted  # its min share, about
    assert granted["transactional"] >= 0.75 * total, granted


# --- options, ids and tags ---------------------------------------------------------------

def test_options_are_checked_at_the_earliest_point(settings):
    with pytest.raises(InvalidOption, match="no such lane"):
        SESBackend(lane="newsletters")
    with pytest.raises(InvalidOption, match="tag 'bad tag'"):
        SESBackend(tags={"bad tag": "x"})
    with pytest.raises(InvalidOption, match="Sea Cucumber's own"):
        SESBackend(tags={"seacucumber-id": "x"})
    with pytest.raises(InvalidOption, match="USE_SES_V2"):
        SESBackend(tenant="acme")
    settings.USE_SES_V2 = True
    with pytest.raises(InvalidOption, match="ListManagementOptions"):
        SESBackend(list_management={"TopicName": "news"})
    message = EmailMessage("Hi", "B", SENDER, ["a@example.com"])
    message.seacucumber_options = {"lane": "nope"}
    with pytest.raises(InvalidMessage, match="seacucumber_options.*no such lane"):
        SESBackend().send_messages([message])
    message.seacucumber_options = {"colour": "red"}
    with pytest.raises(InvalidMessage, match="unknown option"):
        SESBackend().send_messages([message])
    assert SESBackend(fail_silently=True).send_messages([message]) == 0


def test_the_payload_carries_lane_and_controls_at_version_3(settings):
    settings.USE_SES_V2 = True
    plain = build_sends(EmailMessage("Hi", "B", SENDER, ["a@example.com"]))[0].to_json()
    assert plain["v"] == 1 and "lane" not in plain["options"]  # first lane: an old payload
    backend = SESBackend(lane="bulk", tags={"campaign": "spring-2026"}, tenant="acme",
                         list_management={"ContactListName": "news", "TopicName": "weekly"})
    message = EmailMessage("Hi", "B", SENDER, ["a@example.com"])
    message.seacucumber_options = {"tags": {"campaign": "override"}}
    [send] = build_sends(message, backend.options)
    data = send.to_json()
    assert data["v"] == 3
    assert data["options"]["lane"] == "bulk"
    assert data["options"]["tags"] == {"campaign": "override"}  # the message's own wins
    assert data["options"]["list_management"] == {"ContactListName": "news",
                                                  "TopicName": "weekly"}
    assert OutboundSend.from_json(json.loads(json.dumps(data))) == send
    data["v"] = 2
    with pytest.raises(Exception, match="version 2's options"):
        OutboundSend.from_json(data)


def test_ids_tags_tenant_and_list_options_reach_ses(ses_emulator, eager, settings):
    settings.USE_SES_V2 = True
    connection = mail.get_connection(lane="bulk", tags={"campaign": "spring"}, tenant="acme",
                                     list_management={"ContactListName": "news"})
    many = [f"r{n}@example.com" for n in range(60)]  # two sends: 50 + 10 recipients
    messages = [EmailMessage("One", "B", SENDER, ["a@example.com"]),
                EmailMessage("Many", "B", SENDER, many)]
    assert connection.send_messages(messages) == 2
    assert len(messages[0].seacucumber_ids) == 1 and len(messages[1].seacucumber_ids) == 2
    accepted = {m.tags["seacucumber-id"]: m for m in ses_emulator.messages()}
    assert set(accepted) == {*messages[0].seacucumber_ids, *messages[1].seacucumber_ids}
    first = accepted[messages[0].seacucumber_ids[0]]
    assert first.tags == {"campaign": "spring", "seacucumber-id": messages[0].seacucumber_ids[0],
                          "seacucumber-lane": "bulk"}
    assert first.options == {"TenantName": "acme",
                             "ListManagementOptions": {"ContactListName": "news"}}


def test_v1_sends_carry_tags_too(ses_emulator, eager):
    message = EmailMessage("Hi", "B", SENDER, ["a@example.com"])
    assert mail.get_connection(tags={"kind": "reset"}).send_messages([message]) == 1
    [accepted] = ses_emulator.messages()
    assert accepted.tags == {"kind": "reset", "seacucumber-id": message.seacucumber_ids[0],
                             "seacucumber-lane": "transactional"}


# --- real workers: a backlog on the bulk lane, transactional mail past it ------------------

@pytest.fixture
def lanes_setup(request, redis_url, settings):
    """Workers' environment, the two queues and an emulator at 40 recipients/s, on the broker
    the test asks for; lanes of this test's own (a bulk queue of its own)."""
    broker_kind = getattr(request, "param", "redis")
    broker = f"{redis_url}/1" if broker_kind == "redis" else request.getfixturevalue("amqp_url")
    tag = uuid.uuid4().hex[:8]
    queue, bulk_queue = f"sc-lane-{tag}", f"sc-lane-{tag}-bulk"
    declared = {"transactional": {}, "bulk": {"queue": bulk_queue, "min_share": 0.1}}
    emulator = SESEmulator(rate=40).start()
    settings.SEACUCUMBER_LANES = declared
    env = point_at_emulator(settings, broker, emulator.url, f"{redis_url}/3", tag, queue,
                            SEACUCUMBER_RATE_LIMIT="40",
                            SEACUCUMBER_TEST_LANES=json.dumps(declared))
    try:
        yield env, queue, bulk_queue, emulator
    finally:
        point_app_at("memory://", None)
        emulator.stop()


def _transactional_passes_the_backlog(emulator) -> None:
    """A bulk backlog of 160 (4 s at 40/s); once 20 are out, three password resets: each
    reaches SES while most of the backlog that waited when it was sent still waits."""
    bulk = mail.get_connection(lane="bulk", tags={"campaign": "spring"})
    newsletter = [EmailMessage(f"News {n}", "B", SENDER, [f"reader{n}@example.com"])
                  for n in range(160)]
    newsletter[0].seacucumber_options = {"tags": {"campaign": "first"}}
    assert bulk.send_messages(newsletter) == 160
    emulator.wait_for(20, timeout=60)
    resets, waiting_at_send = [], []
    for n in range(3):
        reset = EmailMessage(f"Reset {n}", "B", SENDER, [f"user{n}@example.com"])
        bulk_out = sum(m.tags.get("seacucumber-lane") == "bulk" for m in emulator.messages())
        assert mail.get_connection().send_messages([reset]) == 1
        resets.append(reset.seacucumber_ids[0])
        waiting_at_send.append(160 - bulk_out)
        time.sleep(0.3)
    accepted = emulator.wait_for(163, timeout=90)
    order = [m.tags["seacucumber-id"] for m in accepted]
    lanes_seen = [m.tags["seacucumber-lane"] for m in accepted]
    assert lanes_seen.count("bulk") == 160 and lanes_seen.count("transactional") == 3
    # our ids came back to the caller and reached SES; the controls too, the message's own
    # over its connection's
    assert set(order) == {*resets, *(m.seacucumber_ids[0] for m in newsletter)}
    campaigns = {m.tags["seacucumber-id"]: m.tags.get("campaign") for m in accepted}
    assert campaigns[newsletter[0].seacucumber_ids[0]] == "first"
    assert campaigns[newsletter[1].seacucumber_ids[0]] == "spring"
    assert campaigns[resets[0]] is None
    # FIFO would put each after every bulk send still waiting when it was sent; lanes put it
    # ahead of most of them (how far ahead depends on the pool: one pool for both lanes
    # waits for a slot, README "Lanes")
    still_waiting = [160 - lanes_seen[:order.index(found)].count("bulk") for found in resets]
    assert all(2 * left > waited for left, waited in zip(still_waiting, waiting_at_send,
                                                          strict=True)), \
        (still_waiting, waiting_at_send)
    assert emulator.stats()["throttled"] == 0


@pytest.mark.parametrize("lanes_setup", ["redis", "amqp"], indirect=True)
def test_one_pool_for_every_lane(lanes_setup, start_worker):
    env, queue, bulk_queue, emulator = lanes_setup
    start_worker(env, queues=f"{queue},{bulk_queue}", pool="threads", concurrency=4)
    start_worker(env, queues=f"{queue},{bulk_queue}", pool="prefork", concurrency=2)
    _transactional_passes_the_backlog(emulator)


def test_a_worker_per_lane(lanes_setup, start_worker):
    env, queue, bulk_queue, emulator = lanes_setup
    start_worker(env, queues=bulk_queue, pool="threads", concurrency=4)
    start_worker(env, queues=queue, pool="threads", concurrency=2)
    _transactional_passes_the_backlog(emulator)


# --- the worker's hot path: two round trips to the shared-state Redis -----------------------

@pytest.mark.django_db
def test_a_send_costs_two_round_trips_to_the_shared_state(shared_redis, ses_emulator,
                                                          monkeypatch):
    """Every write redis-py makes to the shared-state Redis while the task runs (a pipeline
    is one write): the attempt's begin and its settle, with the outbox, the send log, the
    rate, the lane hold, the counters and the reputation guard all on. The first send of
    each lane warms up (connection, scripts loaded); the second is counted."""
    import redis as redis_py

    from seacucumber.operations import metrics
    from seacucumber.shared import outbox, reputation, store
    from seacucumber.tasks import send_email

    shared_redis.SEACUCUMBER_OUTBOX = True
    shared_redis.SEACUCUMBER_RATE_LIMIT = 1000
    shared_redis.SEACUCUMBER_REPUTATION_GUARD = True
    counted_sends: list[int] = []
    for lane_name in ("transactional", "transactional", "bulk", "bulk"):
        message = EmailMessage("Hi", "B", SENDER, ["a@example.com", "b@example.com"])
        [send] = build_sends(message, SESBackend(lane=lane_name).options)
        outbox.record([send.to_json()], None, "mail", 5.0)
        writes = []
        real = redis_py.connection.AbstractConnection.send_packed_command

        def counted(self, command, check_health=True, _real=real, writes=writes):
            writes.append(command)
            return _real(self, command, check_health)

        monkeypatch.setattr(redis_py.connection.AbstractConnection, "send_packed_command",
                            counted)
        result = send_email.apply(args=[send.to_json()], task_id=send.message_id)
        monkeypatch.undo()
        assert result.successful(), result.traceback
        counted_sends.append(len(writes))
    assert counted_sends[1::2] == [2, 2], counted_sends
    assert len(ses_emulator.messages()) == 4
    # what settle's one script wrote: records dropped, sends counted, recipients counted
    assert outbox.counts() == {"queued": 0, "running": 0}
    counters = store.redis_client().hgetall(metrics.counters_key())
    for lane_name in ("transactional", "bulk"):
        assert counters[metrics.counter_field("sends", "sent", lane_name).encode()] == b"2"
        assert reputation.window_counts("lane", lane_name)[0].sent == 4
