"""The outbox: a record of every send the backend queued that no worker has settled yet, so
a task the broker lost is queued again.

Why: kombu's Redis transport takes a task off the queue (BRPOP) before it records the task
as unacknowledged; a worker killed between the two loses the task (kombu #305, celery
#7950). And Redis and SQS hand a dead worker's tasks back only after their visibility
timeout; the outbox publishes them again once their holder's heartbeat lapses (``holders``).
RabbitMQ does neither, so the outbox is on by default with a Redis or SQS broker
(``SEACUCUMBER_OUTBOX``). It lives in the shared-state Redis, keyed by task id, which is our
message id.

Keys, under ``<prefix>:outbox:``:

- ``task``: hash, task id -> the task to publish again (payload and queue).
- ``queue``: hash, task id -> the broker queue it went to; ``queues``: set of those queues.
- ``published:<queue>``: sorted set, task id -> when the task was last published to that
  queue. Queued records only.
- ``queued``: sorted set, task id -> when a worker that took the task off the queue should
  have started it: publish time (plus a retry's countdown) plus ``SEACUCUMBER_OUTBOX_GRACE``.
- ``running``: sorted set, task id -> when an attempt that started should have ended.
- ``holder``: hash, task id -> the worker process that holds it, reserved or running
  (``holders``); ``held:<holder>``: set, the task ids that process holds.

A record moves: ``record`` (the backend, before publishing; ``record_with``: first in the
publish's own pipeline, one round trip, when the broker is this Redis server) -> queued;
started (the task begins: ``attempt.begin``, in the same round trip as the send log's claim
and the rate) -> running; ``requeued`` (a retry, before it is published) -> queued;
``settled`` (sent, failed for good, or suppressed; for a send, in ``attempt.settle``'s round
trip) -> gone.
None brings back a record that is gone.

The sweeper (``sweeper``) finds the records whose task the broker lost, and those whose
holder died (its heartbeat lapsed: ``holders``), and publishes them again. A task published
again while its first copy still lives (a slow prefetch, a clock far out, a broker handing
back a dead worker's task later) sends nothing twice: the send log (``sendlog``) lets one
copy send and the other return.

The Lua scripts name the ``published:<queue>`` and ``held:<holder>`` keys they touch from
the record: on a Redis Cluster those keys share the hash tag of every other (``store.key``),
so they are in their slot.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from ..conf import conf
from . import sendlog, store
from .store import run_script

logger = logging.getLogger(__name__)


def enabled() -> bool:
    """Whether sends are recorded: ``SEACUCUMBER_OUTBOX``, or by default with a Redis or SQS
    broker (both hand a dead worker's tasks back only after their visibility timeout; the
    outbox republishes them once their holder's heartbeat lapses); always needs the
    shared-state Redis."""
    return conf.derived("outbox_enabled", _enabled)


def _enabled() -> bool:
    setting = conf.SEACUCUMBER_OUTBOX
    if setting is None:
        setting = store.broker_is_redis() or store.broker_scheme() == "sqs"
    return bool(setting) and store.redis_url() is not None


def key_names() -> dict[str, str]:
    return {name: store.key("outbox", name)
            for name in ("task", "queue", "queues", "queued", "running", "holder")}


def published_prefix() -> str:
    return store.key("outbox", "published", "")


def published(queue: str) -> str:
    return published_prefix() + queue


def held_prefix() -> str:
    """The prefix of ``held:<holder>``, the task ids one worker process holds."""
    return store.key("outbox", "held", "")


def grace() -> float:
    return float(conf.SEACUCUMBER_OUTBOX_GRACE)


def attempt_seconds() -> float:
    """The longest one started attempt should take: its rate wait and one SES call."""
    return float(conf.SEACUCUMBER_RATE_MAX_WAIT) + sendlog.claim_seconds()


# --- the record's steps --------------------------------------------------------------------

#: KEYS: task, queue, queues, queued, published:<queue>; ARGV: the shared-state Redis's
#: database (empty: the caller's), now, not before, the queue, then a task id and its record
#: for each send. The ``SELECT`` is the script's own (since Redis 2.8.12 it never changes the
#: caller's database), so the script records through the broker's connection too
#: (``record_with``).
_RECORD = """
if ARGV[1] ~= '' then redis.call('SELECT', ARGV[1]) end
redis.call('SADD', KEYS[3], ARGV[4])
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[4])
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[i])
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[i])
end
return 1
"""


def _record_fixed() -> tuple[bytes, bytes, bytes, bytes, str, float]:
    """What every record takes from settings alone: the task, queue, queues and queued keys
    (as bytes: redis-py passes them as they are), the ``published:`` prefix and the grace."""
    keys = key_names()
    return (store.wire(keys["task"]), store.wire(keys["queue"]), store.wire(keys["queues"]),
            store.wire(keys["queued"]), published_prefix(), grace())


def _record_call(payloads: Sequence[dict[str, Any]], queue: str | None, broker_queue: str,
                 database: int | str, texts: Sequence[str] | None = None
                 ) -> tuple[list[Any], list[Any]]:
    """The keys and arguments of ``_RECORD`` for ``payloads``; ``texts``, when given, are
    their JSON as ``json.dumps`` writes it (kombu's encoder writes the same of a payload),
    made once for the record and the task's body. The record is the same text either way,
    ``json.dumps({"payload": payload, "queue": queue})``: old and new processes read each
    other's records."""
    task, queue_key, queues, queued, prefix, grace_seconds = conf.kept(
        "outbox:record", _record_fixed)
    now = time.time()
    args: list[Any] = [database, now, now + grace_seconds, broker_queue]
    after = ', "queue": ' + json.dumps(queue) + "}"
    for n, payload in enumerate(payloads):
        text = json.dumps(payload) if texts is None else texts[n]
        args += [payload["id"], '{"payload": ' + text + after]
    return [task, queue_key, queues, queued, prefix + broker_queue], args


def record(payloads: Sequence[dict[str, Any]], queue: str | None, broker_queue: str,
           timeout: float, texts: Sequence[str] | None = None) -> bool:
    """Record the sends of ``payloads`` (``OutboundSend.to_json``; ``texts``: their JSON, when
    made already) as queued, before they are
    published with ``queue`` (the publish option; None: Celery's routing) to the broker
    queue ``broker_queue`` (its name, which the sweeper watches): one Redis call, given up
    after ``timeout`` seconds. Whether they were."""
    if not payloads or not enabled():
        return False
    keys, args = _record_call(payloads, queue, broker_queue, "", texts)
    try:
        run_script(_RECORD, keys, args, timeout)
    except redis.RedisError as exc:  # sent all the same; only a lost task would not return
        logger.warning("outbox: could not record %d send(s): %s", len(payloads), exc)
        return False
    return True


#: One group of sends to record: (payloads, their JSON or None, the publish option's queue,
#: the broker queue), as ``record`` takes them.
Group = tuple[Sequence[dict[str, Any]], Sequence[str] | None, str | None, str]


#: What makes two redis-py clients talk to the same Redis server (the database aside).
_SERVER_KWARGS = ("host", "port", "path", "username", "password")


def record_with(pipeline: Any, broker: redis.Redis, sends: Sequence[Group]) -> bool:
    """Put the records of ``sends`` (``Group``s) first in ``pipeline``, a pipeline of the
    broker's client ``broker`` (kombu's
    Redis channel's), so the records and the publish that follows them in it cost one round
    trip, when the shared-state Redis is that same server (any database of it: the script
    selects its own); False, adding nothing, when it is not (another server, Sentinel, a
    kombu ``global_keyprefix`` that would rename the keys): then ``record`` is a call of its
    own. Redis runs a pipeline's commands in order, so each record is written before its
    task is on the queue, as ``record`` before a publish guarantees."""
    database = _database_on(broker, store.redis_client())
    if getattr(pipeline, "global_keyprefix", "") or database is None:
        return False
    for payloads, texts, queue, broker_queue in sends:
        if payloads:
            keys, args = _record_call(payloads, queue, broker_queue, database, texts)
            # EVAL, not EVALSHA: a script missing from the server (its first use, a restart)
            # would fail inside the pipeline after the publish had gone
            pipeline.execute_command("EVAL", _RECORD_BYTES, len(keys), *keys, *args)
    return True


_RECORD_BYTES = _RECORD.encode()

#: The last (broker pool, shared-state pool, ``_database_on``'s answer): the pools of a
#: process's clients live as long as it does, and what a pool connects to never changes.
_last_pair: tuple[Any, Any, int | None] | None = None


def _database_on(broker: redis.Redis, state: redis.Redis) -> int | None:
    """The shared-state client's database when it is on the broker's server (``_database``,
    ``_same_server``), else None."""
    global _last_pair
    pools = (broker.connection_pool, getattr(state, "connection_pool", None))
    last = _last_pair
    if last is not None and last[0] is pools[0] and last[1] is pools[1]:
        return last[2]
    database = _database(state)
    if database is not None and not _same_server(broker, state):
        database = None
    _last_pair = (*pools, database)
    return database


def _database(client: Any) -> int | None:
    """The database a client of a plain connection pool selects (None for Sentinel's, or
    a client without one, as Redis Cluster's)."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    return int(kwargs.get("db") or 0) if "host" in kwargs or "path" in kwargs else None


def _same_server(one: redis.Redis, other: redis.Redis) -> bool:
    """Whether two clients reach the same server the same way (kombu subclasses redis-py's
    connection classes, so the kind of socket is compared, not the class)."""
    first, second = one.connection_pool, other.connection_pool
    if type(first) is not type(second) or \
            _socket_kind(first.connection_class) != _socket_kind(second.connection_class):
        return False
    return all(first.connection_kwargs.get(name) == second.connection_kwargs.get(name)
               for name in _SERVER_KWARGS)


def _socket_kind(connection_class: type) -> str:
    for kind in (redis.UnixDomainSocketConnection, redis.SSLConnection, redis.Connection):
        if issubclass(connection_class, kind):
            return kind.__name__
    return connection_class.__qualname__


def discard(message_ids: Iterable[str], timeout: float) -> None:
    """Drop the records of sends the broker did not take (``send_messages`` reported them)."""
    ids = list(message_ids)
    if ids and enabled():
        _drop(ids, timeout)


def settled(task_id: str | None) -> None:
    """The task settled (sent, failed for good, suppressed): forget it."""
    if task_id and enabled():
        _drop([task_id])


# The scripts' keys: KEYS[1] task, KEYS[2] queue, KEYS[3] queued, KEYS[4] running,
# KEYS[5] holder; ARGV[1] the published:<queue> prefix (the queue is read from the record),
# ARGV[2] the held:<holder> prefix, ARGV[3] the id.

#: A Lua fragment (``drop_record``, ``release_holder``, ``set_holder``: one outbox record's
#: steps) other scripts include; ``outbox_drop_record.lua`` says which keys and arguments
#: they read.
DROP_RECORD_LUA = store.lua_fragment(__file__, "outbox_drop_record.lua")

_SETTLED = DROP_RECORD_LUA + """
for i = 3, #ARGV do
  drop_record(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[i])
end
return 1
"""

_REQUEUED = DROP_RECORD_LUA + """
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 0 then return 0 end
local queue = redis.call('HGET', KEYS[2], ARGV[3])
if queue then redis.call('ZADD', ARGV[1] .. queue, ARGV[4], ARGV[3]) end
release_holder(KEYS[5], ARGV[2], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
return 1
"""


def _script(script: str, *args: Any, timeout: float = 10.0) -> None:
    try:
        run_script(script, record_keys(), [published_prefix(), held_prefix(), *args], timeout)
    except redis.RedisError as exc:  # a record left behind is swept; the send log guards
        logger.warning("outbox: could not update %s: %s", args[0], exc)


def _drop(ids: list[str], timeout: float = 10.0) -> None:
    _script(_SETTLED, *ids, timeout=timeout)


def record_keys() -> list[str]:
    """The keys ``DROP_RECORD_LUA`` takes, in its order."""
    keys = key_names()
    return [keys["task"], keys["queue"], keys["queued"], keys["running"], keys["holder"]]


def requeued(task_id: str | None, countdown: float) -> None:
    """The task is about to be published again, to run ``countdown`` seconds from now."""
    if task_id and enabled():
        now = time.time()
        _script(_REQUEUED, task_id, now, now + countdown + grace())


def counts() -> dict[str, int]:
    """How many records are queued and running (for ``ses_usage``)."""
    keys = key_names()
    pipe = store.redis_client().pipeline(transaction=False)
    pipe.zcard(keys["queued"])
    pipe.zcard(keys["running"])
    queued, running = pipe.execute()
    return {"queued": queued, "running": running}
