"""The broker queues mail goes to, and the workers that consume them.

Why: mail queued where no worker consumes waits for ever, with nothing saying so. So:

- ``mail_queues`` names every queue a send task can go to (each lane's, each ``MAILERS``
  entry's ``queue``), with who sends there;
- a worker started without ``-Q`` consumes all of them besides its default queue
  (``consume_mail_queues``, at Celery's ``celeryd_after_setup``), and one whose ``-Q`` leaves
  one out says so at start, naming the lane and the queue;
- each worker publishes the queues it consumes to the shared-state Redis every
  ``HEARTBEAT_INTERVAL`` seconds (``Heartbeat``: hash ``<prefix>:workers``, node name -> JSON
  ``{"queues", "seen", "pid"}``); one not seen for ``HEARTBEAT_TTL`` seconds is gone;
- ``send_messages`` warns (``warn_unconsumed``, at most once a minute per queue) when it
  queued to a queue no live worker consumes, and ``queue_states`` gives ``ses_usage``, the
  dashboard, the metrics and ``ses_doctor`` each queue's depth, oldest waiting send and live
  consumers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from celery import current_app
from django.conf import settings

from ..conf import conf, lanes
from . import outbox, store

logger = logging.getLogger(__name__)

#: The send task's name (``seacucumber.tasks.send_email``).
SEND_TASK = "seacucumber.send_email"
#: Seconds between a worker's heartbeats.
HEARTBEAT_INTERVAL = 10.0
#: Seconds after its last heartbeat a worker counts as gone: three beats missed.
HEARTBEAT_TTL = 3 * HEARTBEAT_INTERVAL
#: Seconds ``send_messages`` trusts what it last read of the live consumers.
CONSUMERS_CACHE_SECONDS = 15.0
#: Seconds between two warnings about the same queue nobody consumes.
WARN_EVERY = 60.0


#: (Celery's router, the queue it gives the send task): Celery makes an app's router once
#: (``app.amqp.router``), so its answer holds as long as that router does.
_routed: tuple[Any, str] | None = None


def routed_queue() -> str:
    """The queue Celery's routing gives the send task (``task_routes``, or the default)."""
    global _routed
    router = current_app.amqp.router
    if _routed is not None and _routed[0] is router:
        return _routed[1]
    queue = router.route({}, SEND_TASK, args=(), kwargs={}).get("queue")
    name = getattr(queue, "name", None) or current_app.conf.task_default_queue
    _routed = (router, name)
    return str(name)


def default_queue() -> str:
    """The queue of mail that names none: ``SEACUCUMBER_QUEUE``, else Celery's routing."""
    return str(conf.SEACUCUMBER_QUEUE or routed_queue())


def _mailer_entries() -> Iterable[tuple[str, dict[str, Any]]]:
    """(alias, OPTIONS) of each Django 6.1 ``MAILERS`` entry that sends with Sea Cucumber."""
    mailers = getattr(settings, "MAILERS", None) or {}
    for alias, entry in mailers.items() if isinstance(mailers, dict) else ():
        backend = str(entry.get("BACKEND", "")) if isinstance(entry, dict) else ""
        options = entry.get("OPTIONS") if isinstance(entry, dict) else None
        if backend.startswith("seacucumber.") and isinstance(options, dict):
            yield str(alias), options


def mail_queues() -> dict[str, list[str]]:
    """Each broker queue a send task can go to -> who sends there (``"lane bulk"``,
    ``"mailer newsletter"``), the first lane's queue first. Options given at run time
    (``get_connection(queue=...)``) cannot be known here."""
    default = default_queue()
    found: dict[str, list[str]] = {}
    declared = lanes()
    for declared_lane in declared:
        found.setdefault(declared_lane.queue or default, []).append(
            f"lane {declared_lane.name}")
    by_name = {found_lane.name: found_lane for found_lane in declared}
    for alias, options in _mailer_entries():
        lane = by_name.get(str(options.get("lane"))) if options.get("lane") else None
        queue = options.get("queue") or (lane.queue if lane is not None else None)
        if isinstance(queue, str) and queue:
            found.setdefault(queue, []).append(f"mailer {alias}")
    return found


# --- the worker's side ------------------------------------------------------------------------

#: What ``-Q`` and ``-X`` said (``celeryd_init``), for ``consume_mail_queues``.
_worker_options: dict[str, Any] = {}


def note_worker_options(sender: Any = None, options: Any = None, **_: Any) -> None:
    """``celeryd_init``: remember the worker's ``-Q`` and ``-X``."""
    if isinstance(options, dict):
        _worker_options.update(queues=options.get("queues"),
                               exclude=options.get("exclude_queues"))


def _names(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(name).strip() for name in value if str(name).strip()]


def consume_mail_queues(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """``celeryd_after_setup``: with no ``-Q``, consume every queue mail can go to as well
    (so ``celery -A proj worker`` sends everything); with one that names some of them, warn
    for each it leaves out (one that names none is a worker for other tasks)."""
    app = instance.app if instance is not None else current_app
    queues = app.amqp.queues
    wanted = mail_queues()
    excluded = set(_names(_worker_options.get("exclude")))
    if not _names(_worker_options.get("queues")):
        added = [name for name in wanted if name not in excluded and name not in
                 queues.consume_from]
        for name in added:
            queues.select_add(name)
        if added:
            logger.info("Sea Cucumber: this worker also consumes %s (no -Q given: every "
                        "queue mail can go to)", ", ".join(repr(name) for name in added))
    consumed = set(queues.consume_from)
    if not consumed & set(wanted):  # a worker for other tasks: not a mail worker's mistake
        logger.info("Sea Cucumber: this worker consumes none of the queues mail goes to (%s)",
                    ", ".join(repr(name) for name in wanted))
        return
    for name, senders in wanted.items():
        if name not in consumed:
            logger.warning(
                "Sea Cucumber: this worker does not consume queue %r (%s): mail sent there "
                "waits until a worker that does runs. Unless another worker consumes it, add it "
                "to -Q (-Q %s), or start workers without -Q to consume every lane's queue.",
                name, ", ".join(senders), ",".join(sorted(consumed | {name})))


class Heartbeat(threading.Thread):
    """A worker's heartbeat: its node name, pid and the queues it consumes, written to the
    shared state every ``HEARTBEAT_INTERVAL`` seconds and removed when it stops."""

    def __init__(self, app: Any, hostname: str) -> None:
        super().__init__(name="seacucumber-heartbeat", daemon=True)
        self.app, self.hostname = app, hostname
        self.stopping = threading.Event()

    def consumed(self) -> list[str]:
        return sorted(self.app.amqp.queues.consume_from)

    def beat(self) -> None:
        """Write this worker's beat and drop those of workers gone (one round trip each)."""
        client = store.redis_client(timeout=5.0)
        now = time.time()
        record = json.dumps({"queues": self.consumed(), "seen": now, "pid": os.getpid()})
        with client.pipeline(transaction=False) as pipe:
            pipe.hset(beats_key(), self.hostname, record)
            pipe.hgetall(beats_key())
            _, everyone = pipe.execute()
        gone = [name for name, beat in everyone.items() if _parse(name, beat) is None]
        if gone:
            client.hdel(beats_key(), *gone)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.beat()
            except (redis.RedisError, OSError) as exc:
                logger.warning("Sea Cucumber: heartbeat not written (%s)", exc)
            self.stopping.wait(HEARTBEAT_INTERVAL)

    def stop(self) -> None:
        self.stopping.set()
        try:
            store.redis_client(timeout=2.0).hdel(beats_key(), self.hostname)
        except (redis.RedisError, OSError) as exc:
            logger.info("Sea Cucumber: heartbeat not removed (%s); it lapses in %.0fs",
                        exc, HEARTBEAT_TTL)


_heartbeat: Heartbeat | None = None


def start_heartbeat(sender: Any = None, **_: Any) -> None:
    """``worker_ready``: start this worker's heartbeat (with a shared-state Redis)."""
    global _heartbeat
    if store.redis_url() is None or _heartbeat is not None or sender is None:
        return
    _heartbeat = Heartbeat(sender.app, str(sender.hostname))
    _heartbeat.beat()  # at once: send_messages may look right after the worker is ready
    _heartbeat.start()


def stop_heartbeat(**_: Any) -> None:
    """``worker_shutdown``: remove this worker's heartbeat at once."""
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None


# --- reading the heartbeats ------------------------------------------------------------------

def beats_key() -> str:
    return store.key("workers")


@dataclass(frozen=True)
class Beat:
    """One live worker: its node name, pid, the queues it consumes and when it was seen."""

    hostname: str
    pid: int
    queues: tuple[str, ...]
    seen: float


def _parse(name: bytes | str, value: bytes | str, now: float | None = None) -> Beat | None:
    """The beat stored under ``name``; None when it is malformed or older than the TTL."""
    try:
        data = json.loads(value)
        beat = Beat(name.decode() if isinstance(name, bytes) else name, int(data["pid"]),
                    tuple(str(q) for q in data["queues"]), float(data["seen"]))
    except (ValueError, KeyError, TypeError):
        return None
    return beat if beat.seen >= (now or time.time()) - HEARTBEAT_TTL else None


def live_workers() -> list[Beat] | None:
    """The workers whose heartbeat is live, by node name; None without a shared-state
    Redis. Raises ``redis.RedisError`` when it cannot be read."""
    if store.redis_url() is None:
        return None
    now = time.time()
    everyone = store.redis_client(timeout=5.0).hgetall(beats_key())
    found = (_parse(name, value, now) for name, value in everyone.items())
    return sorted((beat for beat in found if beat is not None), key=lambda b: b.hostname)


def consumers() -> dict[str, list[str]] | None:
    """Each queue a live worker consumes -> those workers' node names; None without a
    shared-state Redis."""
    workers = live_workers()
    if workers is None:
        return None
    found: dict[str, list[str]] = {}
    for beat in workers:
        for queue in beat.queues:
            found.setdefault(queue, []).append(beat.hostname)
    return found


_seen_lock = threading.Lock()
_seen: dict[str, Any] = {"at": -math.inf, "consumers": None}
_warned: dict[str, float] = {}


def _cached_consumers() -> dict[str, list[str]] | None:
    """``consumers()``, read at most once per ``CONSUMERS_CACHE_SECONDS``; None in eager
    mode (no worker is involved) or when it cannot be read."""
    now = time.monotonic()
    with _seen_lock:
        if now - _seen["at"] < CONSUMERS_CACHE_SECONDS:
            return _seen["consumers"]
        _seen["at"] = now  # one reader at a time; the others use what was there
    try:
        found = None if current_app.conf.task_always_eager else consumers()
    except (redis.RedisError, OSError) as exc:
        logger.debug("live consumers not read (%s)", exc)
        found = None
    with _seen_lock:
        _seen["consumers"] = found
    return found


def warn_unconsumed(queues: Iterable[str | None]) -> None:
    """Log a WARNING, at most once a minute per queue, for each of ``queues`` (None: the
    default) that no live worker consumes. Reads the heartbeats at most once per
    ``CONSUMERS_CACHE_SECONDS``; says nothing without a shared-state Redis or in eager mode."""
    live = _cached_consumers()
    if live is None:
        return
    given = set(queues)
    names = {name for name in given if name is not None}
    if None in given:
        names.add(default_queue())
    now = time.monotonic()
    for queue in names:
        if queue in live:
            continue
        with _seen_lock:
            if now - _warned.get(queue, -math.inf) < WARN_EVERY:
                continue
            _warned[queue] = now
        logger.warning(
            "Sea Cucumber queued mail to queue %r, which no live worker consumes: it waits "
            "there until one does. Start a worker without -Q (it consumes every lane's queue) "
            "or with -Q naming %r; manage.py ses_doctor checks the whole path.", queue, queue)


# --- each queue's state -------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueState:
    """One queue mail goes to: who sends there, the tasks waiting in it, how long the oldest
    send has waited (None: unknown, the outbox is off), and its live consumers (None:
    unknown, no shared-state Redis)."""

    name: str
    senders: tuple[str, ...]
    depth: int | None
    oldest_age: float | None
    consumers: tuple[str, ...] | None

    @property
    def stranded(self) -> bool:
        """Mail waits here and no live worker consumes it."""
        return self.consumers is not None and not self.consumers and bool(self.depth)

    def to_json(self) -> dict[str, Any]:
        return {"queue": self.name, "senders": list(self.senders), "depth": self.depth,
                "oldest_age_seconds": self.oldest_age,
                "consumers": None if self.consumers is None else list(self.consumers)}


def queue_depths(names: Iterable[str]) -> dict[str, int]:
    """Tasks waiting in each broker queue, by a passive declare (Redis and RabbitMQ alike). A
    queue the broker does not have holds nothing: 0 (kombu's Redis transport drops a queue's
    key once it is empty)."""
    depths: dict[str, int] = {}
    with current_app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)
        for name in names:
            channel = connection.channel()
            try:
                depths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
            except connection.channel_errors:  # not found (RabbitMQ closes the channel)
                depths[name] = 0
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001,S110 - already closed by the broker
                    pass
    return depths


def oldest_ages(names: Iterable[str]) -> dict[str, float]:
    """Seconds the oldest queued send of each queue has waited since it was published, from
    the outbox (empty when it is off); a queue with nothing queued is left out."""
    if not outbox.enabled():
        return {}
    names = list(names)
    client = store.redis_client()
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zrange(outbox.published(name), 0, 0, withscores=True)
        found = pipe.execute()
    now = time.time()
    return {name: max(0.0, now - first[0][1]) for name, first in zip(names, found, strict=True)
            if first}


def queue_names() -> list[str]:
    """Every queue mail goes to (``mail_queues``) and any the outbox has seen."""
    names = set(mail_queues())
    if outbox.enabled():
        names.update(q.decode() if isinstance(q, bytes) else str(q) for q in
                     store.redis_client().smembers(outbox.key_names()["queues"]))
    return sorted(names)


def queue_states() -> tuple[list[QueueState], dict[str, str]]:
    """Each queue's state, and what could not be read (part -> error): a report must not fail
    on one part."""
    errors: dict[str, str] = {}
    senders = mail_queues()
    try:
        names = queue_names()
    except (redis.RedisError, OSError) as exc:
        names, errors["outbox"] = sorted(senders), str(exc)
    depths: dict[str, int] = {}
    try:
        depths = queue_depths(names)
    except Exception as exc:  # noqa: BLE001 - broker down: the other parts still show
        errors["queues"] = f"{type(exc).__name__}: {exc}"
    ages: dict[str, float] = {}
    live: dict[str, list[str]] | None = None
    try:
        ages = oldest_ages(names)
        live = consumers()
    except (redis.RedisError, OSError) as exc:
        errors["workers"] = f"{type(exc).__name__}: {exc}"
    states = [QueueState(
        name, tuple(senders.get(name, ())),
        None if "queues" in errors else depths.get(name, 0), ages.get(name),
        None if live is None else tuple(live.get(name, ()))) for name in names]
    return states, errors
