"""Who holds a send: each worker process's heartbeat, so a dead process's sends are taken
over within seconds instead of after fixed deadlines.

Why: a worker SIGKILLed (the OOM killer, a host gone) dies holding sends reserved (prefetched,
not started), running before the SES call, and inside it. With no sign of life the others
can only wait out deadlines long enough for the slowest live worker: the outbox's grace, the
longest attempt, the send log's claim, the broker's visibility timeout.

So every worker process (each prefork child, the threads pool's process, the consumer that
prefetches) is a *holder*, ``<host>:<pid>:<random>``. It keeps its entry in
``<prefix>:holders`` (a sorted set, holder -> when it counts dead: its last beat plus
``SEACUCUMBER_HOLDER_TTL``) from a thread of its own, every fifth of the TTL: one command a
beat, none per send.

A send names its holder (the outbox's ``holder`` hash and ``held:<holder>`` sets):

- running: ``attempt.begin`` stamps the record with its process in the round trip it makes
  anyway, and writes the holder into the send log's claim (``claim:<attempt>/<holder>``);
- reserved: the consumer's beat stamps the queued records of the send tasks Celery holds for
  this worker (``celery.worker.state.requests``: reserved, and waiting for a countdown), each
  once: it looks every ``STAMP_INTERVAL`` and writes, in the beat's own script, only when
  something changed. A task taken in the last moment before a crash may go unnamed: the
  outbox's sweep finds it (``sweeper``: the grace, two sweeps).

When a holder's entry is past, the sweeper (``sweeper``, every beat) publishes again the
sends it held, and ``attempt.begin`` takes over a claim whose holder is dead rather than
wait for the claim to expire. A dead holder's entry is kept ``sendlog.claim_seconds()`` more
(every claim it took has expired by then), so a holder not in the set is unknown (a worker
of an older version) and its claim is waited out as before.

Duplicates stay bounded as before: only a send inside the SES call when its holder died can
go out twice (the broker's own redelivery of the same task finds it sent in the send log).
A process alive but silent for the whole TTL (stopped, cut off from Redis) is taken for
dead, with the same bound for the sends it had inside the SES call.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from ..conf import conf
from . import outbox, sendlog, store
from .store import run_script
from .workers import SEND_TASK

logger = logging.getLogger(__name__)

#: ``reserved()``: the ids of the send tasks this process holds but has not started.
Reserved = Callable[[], Iterable[str]]
#: Seconds between the consumer's looks at what it reserved: a round trip only when
#: something changed (or at the beat), so a task taken just before a crash is rarely unnamed.
STAMP_INTERVAL = 0.2


def ttl() -> float:
    """Seconds after its last beat a holder counts as dead."""
    return float(conf.SEACUCUMBER_HOLDER_TTL)


def beat_interval() -> float:
    return ttl() / 5


def holders_key() -> str:
    return store.key("holders")


def name() -> str:
    """A holder name for this process: ``<host>:<pid>:<random>`` (containers may share a
    host name and a pid; no ``/``, which ends a claim's token)."""
    return f"{socket.gethostname().replace('/', '_')}:{os.getpid()}:{secrets.token_hex(3)}"


def current() -> str | None:
    """This process's holder name while its heartbeat runs, else None (not a worker process,
    or eager mode): a send names no holder it cannot vouch for."""
    beat = _beat
    return beat.holder if beat is not None and beat.pid == os.getpid() else None


#: Redis's clock, so hosts' clocks need not agree on when a holder is dead.
_NOW_LUA = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

#: KEYS: holders, outbox task, outbox queued, outbox holder; ARGV: this holder, the TTL, the
#: held:<holder> prefix, how many ids are new, then the reserved task ids not stamped yet,
#: then those this process no longer holds. A record is stamped only while queued (a running
#: one is its attempt's); one this process let go unstarted (revoked, expired) is released,
#: so the outbox's sweep may find it.
_BEAT = outbox.DROP_RECORD_LUA + _NOW_LUA + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local last_new = 4 + tonumber(ARGV[4])
for i = 5, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[3], id) then
    if i <= last_new and redis.call('HEXISTS', KEYS[2], id) == 1 then
      set_holder(KEYS[4], ARGV[3], id, ARGV[1])
    elseif i > last_new and redis.call('HGET', KEYS[4], id) == ARGV[1] then
      release_holder(KEYS[4], ARGV[3], id)
    end
  end
end
return 1
"""


#: KEYS: holders, outbox holder; ARGV: this holder, the held:<holder> prefix. A holder that
#: stops cleanly names nothing any more, and its entry goes.
_LET_GO = """
local held = ARGV[2] .. ARGV[1]
for _, id in ipairs(redis.call('SMEMBERS', held)) do
  if redis.call('HGET', KEYS[2], id) == ARGV[1] then redis.call('HDEL', KEYS[2], id) end
end
redis.call('DEL', held)
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""


class HolderBeat(threading.Thread):
    """One process's heartbeat (see the module docstring); ``reserved`` gives the consumer's
    reserved send tasks, stamped with this holder (``holder``: this process's ``name()``)."""

    def __init__(self, reserved: Reserved | None = None, holder: str | None = None) -> None:
        super().__init__(name="seacucumber-holder", daemon=True)
        self.pid, self.holder = os.getpid(), holder or name()
        self.reserved = reserved
        self.stamped: set[str] = set()
        self.stopping = threading.Event()

    def beat(self) -> None:
        """Renew this holder's entry, stamp the reserved sends new since the last beat and
        release those let go unstarted: one round trip."""
        held = set(self.reserved()) if self.reserved is not None else set()
        fresh, gone = sorted(held - self.stamped), sorted(self.stamped - held)
        keys = outbox.key_names()
        run_script(_BEAT, [holders_key(), keys["task"], keys["queued"], keys["holder"]],
                   [self.holder, ttl(), outbox.held_prefix(), len(fresh), *fresh, *gone],
                   timeout=max(1.0, ttl() / 2))
        self.stamped = held

    def run(self) -> None:
        look = beat_interval() if self.reserved is None else min(STAMP_INTERVAL,
                                                                 beat_interval())
        last = time.monotonic()
        while not self.stopping.wait(look):
            if time.monotonic() - last < beat_interval() and not self.changed():
                continue
            try:
                self.beat()
                last = time.monotonic()
            except (redis.RedisError, OSError) as exc:
                logger.warning("Sea Cucumber: holder heartbeat not written (%s)", exc)

    def changed(self) -> bool:
        """Whether the reserved sends differ from those last stamped."""
        return self.reserved is not None and set(self.reserved()) != self.stamped

    def stop(self) -> None:
        """Stop beating and let go of what this process held (a warm shutdown: the broker
        has, or will have, its unfinished tasks back), so nothing is taken over from it."""
        self.stopping.set()
        keys = outbox.key_names()
        try:
            run_script(_LET_GO, [holders_key(), keys["holder"]],
                       [self.holder, outbox.held_prefix()], timeout=2.0)
        except (redis.RedisError, OSError) as exc:
            logger.info("Sea Cucumber: holder %s not let go (%s); it lapses in %.0fs",
                        self.holder, exc, ttl())


_beat: HolderBeat | None = None


def reserved_sends() -> list[str]:
    """The ids of the send tasks this worker process holds (reserved, waiting for their
    countdown, or running: a running one's record is left to its attempt), from Celery's
    own bookkeeping of the worker's requests."""
    from celery.worker import state

    requests = list(state.requests.values())  # a copy, taken at once: the consumer adds
    return [request.id for request in requests if getattr(request, "name", None) == SEND_TASK]


def start(reserved: Reserved | None = None) -> None:
    """Start this process's heartbeat (with a shared-state Redis); at once, so the first
    send it begins names a live holder. A process forked from one that beats starts its own."""
    global _beat
    if store.redis_url() is None or current() is not None:
        return
    beat = HolderBeat(reserved)
    try:
        beat.beat()
    except (redis.RedisError, OSError) as exc:
        logger.warning("Sea Cucumber: holder heartbeat not written (%s)", exc)
    beat.start()
    _beat = beat


def stop(**_: Any) -> None:
    """``worker_shutdown``, ``worker_process_shutdown``: stop this process's heartbeat and
    let go of what it held."""
    global _beat
    if _beat is not None and _beat.pid == os.getpid():
        _beat.stop()
        _beat = None


# --- taking over from dead holders --------------------------------------------------------

#: KEYS: holders, outbox task, queue, queued, running, holder; ARGV: this host's time, the
#: outbox grace, the published:<queue> prefix, the held:<holder> prefix, how long a dead
#: holder is kept, most dead holders taken at once. Each dead holder's sends, reserved or
#: running, are claimed as published now (queued, due after the grace: the outbox's times
#: are the hosts') and returned to publish again; its held set goes, its entry stays until
#: it is forgotten (claims name it).
_TAKE_OVER = outbox.DROP_RECORD_LUA + _NOW_LUA + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now, 'LIMIT', 0, ARGV[6])
local taken = {}
for _, holder in ipairs(dead) do
  local held = ARGV[4] .. holder
  for _, id in ipairs(redis.call('SMEMBERS', held)) do
    if redis.call('HGET', KEYS[6], id) == holder and redis.call('HEXISTS', KEYS[2], id) == 1 then
      redis.call('HDEL', KEYS[6], id)
      redis.call('ZREM', KEYS[5], id)
      redis.call('ZADD', KEYS[4], ARGV[1] + ARGV[2], id)
      local queue = redis.call('HGET', KEYS[3], id)
      if queue then redis.call('ZADD', ARGV[3] .. queue, ARGV[1], id) end
      taken[#taken + 1] = id
    end
  end
  redis.call('DEL', held)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[5])))
return taken
"""

#: Most dead holders one look takes over (the rest wait for the next look).
TAKE_OVER_LIMIT = 100


def take_over() -> list[str]:
    """The task ids whose holder died, claimed (so no other worker claims them too) for the
    caller to publish again (outbox on)."""
    keys, now = outbox.key_names(), time.time()
    taken = run_script(_TAKE_OVER, [holders_key(), keys["task"], keys["queue"], keys["queued"],
                                    keys["running"], keys["holder"]],
                       [now, outbox.grace(), outbox.published_prefix(), outbox.held_prefix(),
                        sendlog.claim_seconds() + ttl(), TAKE_OVER_LIMIT])
    return [i.decode() if isinstance(i, bytes) else str(i) for i in taken]
