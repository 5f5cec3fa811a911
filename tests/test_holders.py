"""Worker processes' heartbeats on a private Redis (``shared.holders``): a send names the
process that holds it, reserved or running; once that process's heartbeat lapses the sweeper
claims its sends to publish again and another attempt takes over its send-log claim, and
nothing of a live process is touched."""

from __future__ import annotations

import time
import uuid

import pytest

from seacucumber.payload import build_sends
from seacucumber.send import attempt
from seacucumber.shared import holders, outbox, sendlog, store
from tests.test_outbox import message

TTL = 0.5


@pytest.fixture
def shared(redis_url, settings, monkeypatch):
    """A shared-state Redis of the test's own, the outbox on, holders lapsing in ``TTL``;
    yields ``be(name)``: make this process the holder ``name`` (its beat, not started)."""
    queue = f"sc-holders-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/9"
    settings.SEACUCUMBER_REDIS_PREFIX = queue
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_OUTBOX = True
    settings.SEACUCUMBER_HOLDER_TTL = TTL

    def be(name: str | None, reserved: list[str] | None = None) -> holders.HolderBeat | None:
        beat = None if name is None else holders.HolderBeat(
            (lambda: reserved) if reserved is not None else None, holder=name)
        monkeypatch.setattr(holders, "_beat", beat)
        if beat is not None:
            beat.beat()
        return beat

    yield queue, be


def recorded(queue: str, count: int) -> list[str]:
    sends = [build_sends(message(n))[0] for n in range(count)]
    assert outbox.record([s.to_json() for s in sends], queue, queue, timeout=1.0)
    return [s.message_id for s in sends]


def holder_of(task_id: str) -> str | None:
    found = store.redis_client().hget(outbox.key_names()["holder"], task_id)
    return found.decode() if found else None


def held_by(name: str) -> set[str]:
    return {i.decode() for i in store.redis_client().smembers(outbox.held_prefix() + name)}


def test_a_dead_holders_reserved_and_running_sends_are_taken_over_a_live_ones_are_not(shared):
    queue, be = shared
    reserved, running_dead, running_live = recorded(queue, 3)
    dead = be("host-a:1", reserved=[reserved])  # the consumer stamps what it prefetched
    attempt.started(running_dead)  # begin names the holder in its own round trip
    assert holder_of(reserved) == holder_of(running_dead) == "host-a:1"
    assert held_by("host-a:1") == {reserved, running_dead}
    live = be("host-b:2")
    attempt.started(running_live)
    assert holders.take_over() == []  # everyone alive
    time.sleep(TTL * 0.6)
    live.beat()
    time.sleep(TTL * 0.6)  # host-a's beat lapsed, host-b's has not
    live.beat()
    assert sorted(holders.take_over()) == sorted([reserved, running_dead])
    client, keys = store.redis_client(), outbox.key_names()
    for task_id in (reserved, running_dead):  # claimed: queued again as published now
        assert client.zscore(keys["queued"], task_id) is not None
        assert client.zscore(keys["running"], task_id) is None
        assert holder_of(task_id) is None
    assert held_by("host-a:1") == set()
    assert holder_of(running_live) == "host-b:2"
    assert client.zscore(keys["running"], running_live) is not None
    assert holders.take_over() == []  # claimed once: no second sweeper publishes them too
    assert dead is not None


def test_the_beat_stamps_only_queued_records(shared):
    """A reserved task whose attempt already started is its attempt's (a prefork child)."""
    queue, be = shared
    waiting, started = recorded(queue, 2)
    be("child:3")
    attempt.started(started)
    be("consumer:2", reserved=[waiting, started])
    assert holder_of(waiting) == "consumer:2" and holder_of(started) == "child:3"


def test_settled_and_requeued_records_forget_their_holder(shared):
    queue, be = shared
    settled, requeued = recorded(queue, 2)
    be("host-a:1")
    attempt.started(settled)
    attempt.started(requeued)
    outbox.settled(settled)
    outbox.requeued(requeued, 5.0)
    assert holder_of(settled) is None and holder_of(requeued) is None
    assert held_by("host-a:1") == set()


def test_a_claim_is_taken_over_once_its_holder_is_dead_and_waited_for_while_it_lives(shared):
    _, be = shared
    be("host-a:1")
    first = attempt.claim("m-1", "a")
    assert first.token == "claim:a/host-a:1"
    be("host-b:2")
    busy = attempt.claim("m-1", "b")  # host-a lives: look again when its beat would lapse
    assert busy.token is None and 0 < busy.busy_for <= TTL + 0.2
    time.sleep(TTL + 0.1)
    holders.HolderBeat(holder="host-b:2").beat()
    taken = attempt.claim("m-1", "b")
    assert taken.token == "claim:b/host-b:2"
    assert store.redis_client().get(sendlog.key("m-1")) == b"claim:b/host-b:2"
    taken.release()  # the claim is ours to give back
    assert store.redis_client().get(sendlog.key("m-1")) is None


def test_a_claim_naming_no_holder_is_waited_out(shared):
    """A worker of an older version (or with no heartbeat) names none: its claim lives on."""
    _, be = shared
    be(None)
    assert attempt.claim("m-2", "old").token == "claim:old"
    be("host-b:2")
    busy = attempt.claim("m-2", "b")
    assert busy.token is None and busy.busy_for > TTL * 4  # the claim's own expiry


def test_a_dead_holder_is_forgotten_once_its_claims_have_expired(shared, settings):
    _, be = shared
    be("host-a:1")
    client = store.redis_client()
    assert client.zscore(holders.holders_key(), "host-a:1") is not None
    settings.SEACUCUMBER_CONNECT_TIMEOUT = 0.0  # claims last claim_seconds(): 5 s here
    settings.SEACUCUMBER_READ_TIMEOUT = 0.0
    client.zadd(holders.holders_key(), {"host-a:1": time.time() - sendlog.claim_seconds() - 2})
    holders.take_over()
    assert client.zscore(holders.holders_key(), "host-a:1") is None


def test_a_holder_that_stops_cleanly_lets_go_of_what_it_held(shared):
    """A warm shutdown hands its unfinished tasks back to the broker: nothing is taken over
    from it, and it is no longer named alive or dead."""
    queue, be = shared
    [reserved] = recorded(queue, 1)
    beat = be("host-a:1", reserved=[reserved])
    assert beat is not None and holder_of(reserved) == "host-a:1"
    beat.stop()
    assert holder_of(reserved) is None and held_by("host-a:1") == set()
    assert store.redis_client().zscore(holders.holders_key(), "host-a:1") is None
    time.sleep(TTL + 0.1)
    assert holders.take_over() == []
