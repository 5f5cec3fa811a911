"""The outbox: a record of every send the backend queued that no worker has settled yet, so
a task the broker lost is queued again.

Why: kombu's Redis transport takes a task off the queue (BRPOP) before it records the task
as unacknowledged; a worker killed between the two loses the task (kombu #305, celery
#7950). RabbitMQ loses nothing there, so the outbox is on by default only with a Redis broker
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

A record moves: ``record`` (the backend, before publishing) -> queued; ``started`` (the task
begins) -> running; ``requeued`` (a retry, before it is published) -> queued;
``settled`` (sent, failed for good, or suppressed) -> gone. Each step is one Redis call, and
none brings back a record that is gone.

Each worker runs a sweeper thread (``Sweeper``). Every ``SEACUCUMBER_OUTBOX_SWEEP_INTERVAL``
seconds it looks at the head of each broker queue. A Redis list is first in, first out, so
every task published before the oldest of ours still waiting there has been taken off it (an
empty queue: everything published before the look): that time is the queue's watermark. A
queued record published to that queue before it (by more than the grace, which also covers
clock skew between hosts) whose task has not started by now was lost, and the sweeper
publishes it again. Queues are swept apart, so a queue nobody consumes holds back only its
own records. A running record past its end (the worker died) counts as published at that
moment, and goes the same way. The sweeper judges by the watermark of the sweep before, so a
task just taken off the queue has a full sweep to start.

A task published again while its first copy still lives (a slow prefetch, a clock far out)
sends nothing twice: the send log (``sendlog``) lets one copy send and the other return.

The Lua scripts name the ``published:<queue>`` key they touch from the record, so the outbox
needs a standalone (or Sentinel) Redis, as kombu's Redis transport does, not Redis Cluster.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from . import shared_state
from .conf import conf
from .shared_state import run_script

logger = logging.getLogger(__name__)

#: How many messages nearest the head of each broker list the sweeper reads to find one of ours.
HEAD_SCAN = 20
#: Most records one sweep moves or claims (the rest wait for the next sweep).
SWEEP_LIMIT = 5000


def enabled() -> bool:
    """Whether sends are recorded: ``SEACUCUMBER_OUTBOX``, or by default with a Redis broker;
    always needs the shared-state Redis."""
    setting = conf.SEACUCUMBER_OUTBOX
    if setting is None:
        setting = shared_state.broker_is_redis()
    return bool(setting) and shared_state.redis_url() is not None


def _keys() -> dict[str, str]:
    return {name: shared_state.key("outbox", name)
            for name in ("task", "queue", "queues", "queued", "running")}


def _published_prefix() -> str:
    return shared_state.key("outbox", "published", "")


def _published(queue: str) -> str:
    return _published_prefix() + queue


def grace() -> float:
    return float(conf.SEACUCUMBER_OUTBOX_GRACE)


def _attempt_seconds() -> float:
    """The longest one started attempt should take: its rate wait and one SES call."""
    from . import sendlog

    return float(conf.SEACUCUMBER_RATE_MAX_WAIT) + sendlog.claim_seconds()


# --- the record's steps --------------------------------------------------------------------

#: KEYS: task, queue, queues, queued, published:<queue>; ARGV: now, not before, the queue,
#: then a task id and its record for each send.
_RECORD = """
redis.call('SADD', KEYS[3], ARGV[3])
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[3])
  redis.call('ZADD', KEYS[5], ARGV[1], ARGV[i])
  redis.call('ZADD', KEYS[4], ARGV[2], ARGV[i])
end
return 1
"""


def record(payloads: Sequence[dict[str, Any]], queue: str | None, timeout: float) -> bool:
    """Record the sends of ``payloads`` (``OutboundSend.to_json``) as queued, before they are
    published to ``queue`` (None: Celery's routing): one Redis call, given up after
    ``timeout`` seconds. Whether they were."""
    if not payloads or not enabled():
        return False
    keys, now, broker_queue = _keys(), time.time(), queue or routed_queue()
    args: list[Any] = [now, now + grace(), broker_queue]
    for payload in payloads:
        args += [payload["id"], json.dumps({"payload": payload, "queue": queue})]
    try:
        run_script(_RECORD, [keys["task"], keys["queue"], keys["queues"], keys["queued"],
                             _published(broker_queue)], args, timeout)
    except redis.RedisError as exc:  # sent all the same; only a lost task would not return
        logger.warning("outbox: could not record %d send(s): %s", len(payloads), exc)
        return False
    return True


def discard(message_ids: Iterable[str], timeout: float) -> None:
    """Drop the records of sends the broker did not take (``send_messages`` reported them)."""
    ids = list(message_ids)
    if ids and enabled():
        _drop(ids, timeout)


def settled(task_id: str | None) -> None:
    """The task settled (sent, failed for good, suppressed): forget it."""
    if task_id and enabled():
        _drop([task_id])


# The scripts' keys: KEYS[1] task, KEYS[2] queue, KEYS[3] queued, KEYS[4] running;
# ARGV[1] the published:<queue> prefix (the queue is read from the record), ARGV[2] the id.

_SETTLED = """
for i = 2, #ARGV do
  local queue = redis.call('HGET', KEYS[2], ARGV[i])
  if queue then redis.call('ZREM', ARGV[1] .. queue, ARGV[i]) end
  redis.call('HDEL', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
  redis.call('ZREM', KEYS[4], ARGV[i])
end
return 1
"""

_STARTED = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
local queue = redis.call('HGET', KEYS[2], ARGV[2])
if queue then redis.call('ZREM', ARGV[1] .. queue, ARGV[2]) end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2])
return 1
"""

_REQUEUED = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
local queue = redis.call('HGET', KEYS[2], ARGV[2])
if queue then redis.call('ZADD', ARGV[1] .. queue, ARGV[3], ARGV[2]) end
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
return 1
"""


def _script(script: str, *args: Any, timeout: float = 10.0) -> None:
    keys = _keys()
    try:
        run_script(script, [keys["task"], keys["queue"], keys["queued"], keys["running"]],
                   [_published_prefix(), *args], timeout)
    except redis.RedisError as exc:  # a record left behind is swept; the send log guards
        logger.warning("outbox: could not update %s: %s", args[0], exc)


def _drop(ids: list[str], timeout: float = 10.0) -> None:
    _script(_SETTLED, *ids, timeout=timeout)


def started(task_id: str | None) -> None:
    """An attempt began: the record is running until the attempt should have ended."""
    if task_id and enabled():
        _script(_STARTED, task_id, time.time() + _attempt_seconds() + grace())


def requeued(task_id: str | None, countdown: float) -> None:
    """The task is about to be published again, to run ``countdown`` seconds from now."""
    if task_id and enabled():
        now = time.time()
        _script(_REQUEUED, task_id, now, now + countdown + grace())


def counts() -> dict[str, int]:
    """How many records are queued and running (for ``ses_usage``)."""
    keys = _keys()
    pipe = shared_state.redis_client().pipeline(transaction=False)
    pipe.zcard(keys["queued"])
    pipe.zcard(keys["running"])
    queued, running = pipe.execute()
    return {"queued": queued, "running": running}


# --- the sweeper ---------------------------------------------------------------------------

#: Running records past their end count as published now (their worker died: kombu hands
#: the task back to the queue, or it was lost).
_RUNNING_OVERDUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[2], 'LIMIT', 0, ARGV[4])
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZADD', KEYS[3], ARGV[2] + ARGV[3], id)
  local queue = redis.call('HGET', KEYS[2], id)
  if queue then redis.call('ZADD', ARGV[1] .. queue, ARGV[2], id) end
end
return #ids
"""

#: Queued records published before the watermark (so taken off the queue) and not started
#: by their time: lost. Claimed as published now, so no other sweeper claims them too.
_CLAIM_LOST = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[4])
local lost = {}
for _, id in ipairs(ids) do
  local due = redis.call('ZSCORE', KEYS[2], id)
  if due and tonumber(due) < tonumber(ARGV[1]) and redis.call('HEXISTS', KEYS[1], id) == 1 then
    redis.call('ZADD', KEYS[3], ARGV[1], id)
    redis.call('ZADD', KEYS[2], ARGV[1] + ARGV[3], id)
    lost[#lost + 1] = id
  end
end
return lost
"""


def routed_queue() -> str:
    """The queue Celery's routing gives the send task (``task_routes``, or the default)."""
    from celery import current_app

    from .tasks import TASK_NAME

    queue = current_app.amqp.router.route({}, TASK_NAME, args=(), kwargs={}).get("queue")
    return getattr(queue, "name", None) or current_app.conf.task_default_queue


def watermarks(app: Any, now: float) -> dict[str, float | None]:
    """Per queue sends went to, the publish time before which every task has been taken
    off it: ``now`` when it is empty, else the publish time of the oldest send of ours near
    its head; None when that cannot be told (only other tasks near its head)."""
    client = shared_state.redis_client()
    queues = sorted(q.decode() for q in client.smembers(_keys()["queues"]))
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        if not hasattr(channel, "_q_for_pri"):  # not kombu's Redis transport (outbox forced on)
            return {queue: now if _empty(channel, queue) else None for queue in queues}
        pipe = channel.client.pipeline(transaction=False)
        for queue in queues:
            for pri in channel.priority_steps:  # BRPOP takes from the right: the head is last
                pipe.lrange(channel._q_for_pri(queue, pri), -HEAD_SCAN, -1)
        heads = pipe.execute()
    steps = len(heads) // max(1, len(queues))
    return {queue: _watermark(client, queue, heads[n * steps:(n + 1) * steps], now)
            for n, queue in enumerate(queues)}


def _watermark(client: redis.Redis, queue: str, heads: list[list[bytes]],
               now: float) -> float | None:
    mark = now
    for head in heads:
        if not head:
            continue
        ids = [_task_id(raw) or "-" for raw in reversed(head)]
        first = next((s for s in client.zmscore(_published(queue), ids) if s is not None),
                     None)
        if first is None:
            return None  # only other tasks near this list's head: cannot tell how far it is
        mark = min(mark, first)
    return mark


def _empty(channel: Any, queue: str) -> bool:
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count == 0
    except Exception:  # noqa: BLE001 - no such queue (yet), or the broker refused: cannot tell
        return False


def _task_id(raw: bytes) -> str | None:
    try:
        return json.loads(raw)["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None


class Sweeper:
    """Publishes again the tasks the broker lost (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.previous: dict[str, float | None] = {}  # the watermarks one sweep back
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> list[str]:
        """One look: the task ids published again."""
        keys, now = _keys(), time.time()
        run_script(_RUNNING_OVERDUE,
                   [keys["task"], keys["queue"], keys["queued"], keys["running"]],
                   [_published_prefix(), now, grace(), SWEEP_LIMIT])
        lost: list[str] = []
        for queue, mark in self.previous.items():
            if mark is not None:
                lost += [i.decode() for i in run_script(
                    _CLAIM_LOST, [keys["task"], keys["queued"], _published(queue)],
                    [now, mark - grace(), grace(), SWEEP_LIMIT])]
        self.previous = watermarks(self.app, now)
        if lost:
            self._publish(lost)
        return lost

    def _publish(self, task_ids: list[str]) -> None:
        from .backend import publish

        records = shared_state.redis_client().hmget(_keys()["task"], task_ids)
        for task_id, raw in zip(task_ids, records, strict=True):
            if raw is None:
                continue  # settled in the meantime
            saved = json.loads(raw)
            logger.warning("message %s: its task was lost by the broker (a worker killed "
                           "while taking it?): queued again", task_id)
            publish(saved["payload"], task_id, saved["queue"])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="seacucumber-outbox",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = float(conf.SEACUCUMBER_OUTBOX_SWEEP_INTERVAL)
        while not self._stop.wait(interval):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next one
                logger.warning("outbox: sweep failed", exc_info=True)
                self.previous = {}


_sweeper: Sweeper | None = None


def start_sweeper(sender: Any = None, **_: Any) -> None:
    """``worker_ready``: start this worker's sweeper when the outbox is on."""
    global _sweeper
    if _sweeper is None and enabled():
        _sweeper = Sweeper(sender.app if sender is not None else _current_app())
        _sweeper.start()
        logger.info("outbox: sweeping for lost tasks every %ss",
                    conf.SEACUCUMBER_OUTBOX_SWEEP_INTERVAL)


def stop_sweeper(**_: Any) -> None:
    """``worker_shutdown``: stop the sweeper."""
    global _sweeper
    if _sweeper is not None:
        _sweeper.stop()
        _sweeper = None


def _current_app() -> Any:
    from celery import current_app

    return current_app
