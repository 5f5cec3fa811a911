"""The outbox's sweeper: publishes again the tasks the broker lost (see ``outbox``).

Each worker runs a sweeper thread (``Sweeper``). Every ``SEACUCUMBER_OUTBOX_SWEEP_INTERVAL``
seconds it looks at the head of each broker queue. A Redis list is first in, first out, so
every task published before the oldest of ours still waiting there has been taken off it (an
empty queue: everything published before the look): that time, less the grace where it
compares the publish times of different hosts (the clock skew allowed), is the queue's
watermark. A queued record published to that queue before it whose task has not started by
its due time, and that no live worker process holds reserved, was lost, and the sweeper
publishes it again. (A worker stamps what
it prefetched within one heartbeat, ``holders``, so the grace need not cover a long
prefetch.) Queues are swept apart, so a queue nobody consumes holds back only its
own records. A running record past its end (the worker died) counts as published at that
moment, and goes the same way. The sweeper judges by the watermark of the sweep before, so a
task just taken off the queue has a full sweep to start.

Between sweeps, every heartbeat (``holders``: a fifth of ``SEACUCUMBER_HOLDER_TTL``), the
sweeper publishes again the sends, reserved or running, of worker processes whose heartbeat
lapsed (``take_over``): a dead worker's mail resumes within seconds, not after the grace,
the longest attempt or the broker's visibility timeout.

The sweeper publishes with the function the worker gives it (``tasks.publish``), so this
package never imports the task or the backend above it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from ..conf import conf
from . import holders, outbox, store
from .store import run_script

logger = logging.getLogger(__name__)

#: How many messages nearest the head of each broker list the sweeper reads to find one of ours.
HEAD_SCAN = 20
#: Most records one sweep moves or claims (the rest wait for the next sweep).
SWEEP_LIMIT = 5000

#: ``publish(payload, task_id, queue)``: puts one send task on the broker.
Publish = Callable[[dict[str, Any], str, str | None], None]

#: Running records past their end count as published now (their worker died: kombu hands
#: the task back to the queue, or it was lost), held by no one.
_RUNNING_OVERDUE = outbox.DROP_RECORD_LUA + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[2], 'LIMIT', 0, ARGV[4])
for _, id in ipairs(ids) do
  release_holder(KEYS[5], ARGV[5], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZADD', KEYS[3], ARGV[2] + ARGV[3], id)
  local queue = redis.call('HGET', KEYS[2], id)
  if queue then redis.call('ZADD', ARGV[1] .. queue, ARGV[2], id) end
end
return #ids
"""

#: Queued records published before the watermark (so taken off the queue) and not started
#: by their time, which no live worker process holds reserved (``holders``): lost. Claimed
#: as published now, so no other sweeper claims them too.
_CLAIM_LOST = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local redis_now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function held_alive(id)
  local holder = redis.call('HGET', KEYS[4], id)
  local alive = holder and tonumber(redis.call('ZSCORE', KEYS[5], holder))
  return alive and alive >= redis_now
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[4])
local lost = {}
for _, id in ipairs(ids) do
  local due = redis.call('ZSCORE', KEYS[2], id)
  if due and tonumber(due) < tonumber(ARGV[1]) and redis.call('HEXISTS', KEYS[1], id) == 1
      and not held_alive(id) then
    redis.call('ZADD', KEYS[3], ARGV[1], id)
    redis.call('ZADD', KEYS[2], ARGV[1] + ARGV[3], id)
    lost[#lost + 1] = id
  end
end
return lost
"""


def watermarks(app: Any, now: float) -> dict[str, float | None]:
    """Per queue sends went to, the publish time before which every task has been taken
    off it: ``now`` when it is empty, else the publish time of the oldest send of ours near
    its head less the grace (publishers' clocks may differ); None when that cannot be told
    (only other tasks near its head)."""
    client = store.redis_client()
    queues = sorted(q.decode() if isinstance(q, bytes) else q
                    for q in client.smembers(outbox.key_names()["queues"]))
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
        first = next((s for s in client.zmscore(outbox.published(queue), ids) if s is not None),
                     None)
        if first is None:
            return None  # only other tasks near this list's head: cannot tell how far it is
        mark = min(mark, first - outbox.grace())
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

    def __init__(self, app: Any, publish: Publish) -> None:
        self.app = app
        self.publish = publish
        self.previous: dict[str, float | None] = {}  # the watermarks one sweep back
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> list[str]:
        """One look: the task ids published again."""
        keys, now = outbox.key_names(), time.time()
        run_script(_RUNNING_OVERDUE,
                   [keys["task"], keys["queue"], keys["queued"], keys["running"], keys["holder"]],
                   [outbox.published_prefix(), now, outbox.grace(), SWEEP_LIMIT,
                    outbox.held_prefix()])
        lost: list[str] = []
        for queue, mark in self.previous.items():
            if mark is not None:
                lost += [i.decode() for i in run_script(
                    _CLAIM_LOST, [keys["task"], keys["queued"], outbox.published(queue),
                                  keys["holder"], holders.holders_key()],
                    [now, mark, outbox.grace(), SWEEP_LIMIT])]
        self.previous = watermarks(self.app, now)
        if lost:
            self._publish(lost, "its task was lost by the broker (a worker killed while "
                                "taking it?)")
        return lost

    def take_over(self) -> list[str]:
        """Publish again the sends of worker processes whose heartbeat lapsed; their ids."""
        taken = holders.take_over()
        if taken:
            self._publish(taken, "its worker process died holding it (heartbeat lapsed)")
        return taken

    def _publish(self, task_ids: list[str], why: str) -> None:
        records = store.redis_client().hmget(outbox.key_names()["task"], task_ids)
        for task_id, raw in zip(task_ids, records, strict=True):
            if raw is None:
                continue  # settled in the meantime
            saved = json.loads(raw)
            logger.warning("message %s: %s: queued again", task_id, why)
            self.publish(saved["payload"], task_id, saved["queue"])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="seacucumber-outbox",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = float(conf.SEACUCUMBER_OUTBOX_SWEEP_INTERVAL)
        tick = min(interval, holders.beat_interval())
        next_sweep = time.monotonic() + interval
        while not self._stop.wait(tick):
            self._step("take-over", self.take_over)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + interval
                if not self._step("sweep", self.sweep):
                    self.previous = {}

    @staticmethod
    def _step(what: str, step: Callable[[], Any]) -> bool:
        """Run one step; a failed one is logged and retried at the next tick."""
        try:
            step()
        except Exception:  # noqa: BLE001 - retried at the next tick
            logger.warning("outbox: %s failed", what, exc_info=True)
            return False
        return True


_sweeper: Sweeper | None = None


def start(app: Any, publish: Publish) -> None:
    """Start this worker's sweeper when the outbox is on (the send task's module calls this
    on ``worker_ready``)."""
    global _sweeper
    if _sweeper is None and outbox.enabled():
        _sweeper = Sweeper(app, publish)
        _sweeper.start()
        logger.info("outbox: sweeping for lost tasks every %ss",
                    conf.SEACUCUMBER_OUTBOX_SWEEP_INTERVAL)


def stop(**_: Any) -> None:
    """``worker_shutdown``: stop the sweeper."""
    global _sweeper
    if _sweeper is not None:
        _sweeper.stop()
        _sweeper = None
