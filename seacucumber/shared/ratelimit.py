"""One send rate for the whole account, shared in Redis by every worker process and host.

SES limits the account to N recipients per second, so each send reserves as many tokens as
it has recipients before it calls SES. The limiter is GCRA (the generic cell rate
algorithm, a token bucket kept as one "theoretical arrival time") in a short Lua script:
one key, one round trip per send, atomic across hosts, and timed by Redis's own clock so
hosts' clocks do not matter. It answers "reserved: wait w seconds, then send", which lets a
task sleep exactly as long as needed without polling. The ``limits`` library (already used
by many Django projects) was considered: its Redis strategies take a weighted ``hit`` but
only answer yes or no, so a refused send would have to poll, and they cannot reserve ahead;
``pyrate-limiter`` has the same shape. Hence the 30 lines of Lua.

Behaviour:

- Bursts of ``SEACUCUMBER_RATE_BURST`` seconds' worth go at once; after that, sends are
  spaced at the rate in force (``quota.base_rate()`` times a slow-down factor).
- A wait up to ``SEACUCUMBER_RATE_MAX_WAIT`` seconds is slept in the task; for a longer
  one the task is re-queued with a countdown to its reserved slot and sends at once when it
  comes back, so a worker slot is never held long and other task types are not starved.
  Slots are booked at most ``SEACUCUMBER_RATE_HORIZON`` seconds ahead (well inside the
  broker's visibility timeout); past that, a task is re-queued unbooked and asks again.
- ``Throttling`` from SES anyway (another sender on the account): ``slow_down`` cuts the
  shared rate by ``SLOW_DOWN`` (at most once a second), and it recovers linearly over
  ``RECOVERY_SECONDS``.
- Daily quota spent: ``hold_for_quota`` holds every send for ``SEACUCUMBER_QUOTA_HOLD``
  seconds; held tasks are re-queued without calling SES, so nothing spins.

Without a shared-state Redis (RabbitMQ broker and no ``SEACUCUMBER_REDIS_URL``) there is no
shared rate: a warning is logged once and sends are limited only by SES's throttling and
the retries it causes.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import redis

from .. import clients
from ..conf import conf
from . import quota, store

logger = logging.getLogger(__name__)

SLOW_DOWN = 0.8          #: factor applied to the shared rate on a Throttling error
MIN_FACTOR = 0.1         #: the shared rate never drops below this share of the base rate
RECOVERY_SECONDS = 30.0  #: a slowed rate is back to full after this long without throttling
RESERVATION_SLACK = 30.0  #: a re-run this far from its reserved slot asks for a new one

_RESERVE = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local held = redis.call('PTTL', KEYS[3])
if held > 0 then return {2, tostring(held / 1000), '0'} end
local rate = tonumber(ARGV[1])
local slow = redis.call('HMGET', KEYS[2], 'factor', 'at')
if slow[1] then
  local recovered = (now - tonumber(slow[2])) / tonumber(ARGV[5])
  if recovered < 1 then rate = rate * (1 - (1 - tonumber(slow[1])) * (1 - recovered)) end
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + tonumber(ARGV[3]) / rate
local wait = new_tat - tonumber(ARGV[2]) - now
if wait > tonumber(ARGV[4]) and tat > now then return {0, tostring(wait), tostring(rate)} end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
if wait < 0 then wait = 0 end
return {1, tostring(wait), tostring(rate)}
"""

_SLOW_DOWN = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slow = redis.call('HMGET', KEYS[1], 'factor', 'at')
local factor = 1
if slow[1] then
  local since = now - tonumber(slow[2])
  if since < 1 then return tostring(slow[1]) end
  local recovered = since / tonumber(ARGV[3])
  if recovered < 1 then factor = 1 - (1 - tonumber(slow[1])) * (1 - recovered) end
end
factor = math.max(tonumber(ARGV[2]), factor * tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'factor', tostring(factor), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 60)
return tostring(factor)
"""


def hold_key() -> str:
    """The key whose life is a daily-quota hold on every send."""
    return store.key("quota", "hold")


@dataclass(frozen=True)
class Decision:
    """The limiter's answer for one send."""

    admitted: bool   #: tokens reserved: sleep ``wait`` seconds, then send
    held: bool       #: the daily quota is spent: re-queue for ``wait`` seconds
    wait: float
    rate: float      #: the rate in force, recipients per second (0 when held)


class Limiter:
    """The shared limiter on one Redis client (one per process)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._reserve = client.register_script(_RESERVE)
        self._slow_down = client.register_script(_SLOW_DOWN)

    @staticmethod
    def keys() -> list[str]:
        return [store.key("rate", "tat"), store.key("rate", "slowdown"),
                hold_key()]

    def reserve(self, cost: int, rate: float, horizon: float | None = None,
                burst: float | None = None) -> Decision:
        """Reserve ``cost`` tokens at ``rate`` tokens/s unless the slot lies more than
        ``horizon`` seconds ahead (an idle limiter always reserves, whatever the cost)."""
        horizon = float(conf.SEACUCUMBER_RATE_HORIZON if horizon is None else horizon)
        burst = float(conf.SEACUCUMBER_RATE_BURST if burst is None else burst)
        status, wait, in_force = self._reserve(
            keys=self.keys(), args=[repr(float(rate)), repr(burst), int(cost),
                                    repr(horizon), repr(RECOVERY_SECONDS)])
        return Decision(admitted=int(status) == 1, held=int(status) == 2,
                        wait=max(0.0, float(wait)), rate=float(in_force))

    def slow_down(self) -> float:
        """Cut the shared rate after a Throttling error; returns the new factor."""
        return float(self._slow_down(
            keys=[store.key("rate", "slowdown")],
            args=[repr(SLOW_DOWN), repr(MIN_FACTOR), repr(RECOVERY_SECONDS)]))

    def factor(self) -> float:
        """The slow-down factor in force now (1.0: full rate)."""
        factor, at = self.client.hmget(store.key("rate", "slowdown"), "factor", "at")
        if factor is None or at is None:
            return 1.0
        seconds, micros = self.client.time()
        recovered = (seconds + micros / 1e6 - float(at)) / RECOVERY_SECONDS
        return 1.0 if recovered >= 1 else 1 - (1 - float(factor)) * (1 - recovered)

    def hold(self, seconds: float) -> None:
        """Hold every send for ``seconds`` (the daily quota is spent)."""
        self.client.set(hold_key(), "1", px=max(1, int(seconds * 1000)))

    def hold_remaining(self) -> float | None:
        """Seconds left of a daily-quota hold, or None when sends are not held."""
        left = self.client.pttl(hold_key())
        return left / 1000 if left > 0 else None


_warned_no_redis = False


def limiter() -> Limiter | None:
    """This process's limiter, or None when it is off or there is no shared-state Redis."""
    global _warned_no_redis
    if not conf.SEACUCUMBER_SHARED_RATE:
        return None
    url = store.redis_url()
    if url is None:
        if not _warned_no_redis:
            _warned_no_redis = True
            logger.warning("no shared-state Redis (SEACUCUMBER_REDIS_URL, or a Redis broker): "
                           "the account's send rate is not shared; SES throttling will pace "
                           "sends")
        return None
    return clients.shared(("limiter", url), lambda: Limiter(store.redis_client()))


def admit(task: Any, message_id: str, cost: int, reserved_at: float | None) -> None:
    """Take ``cost`` tokens of the shared rate before a send. A short wait is slept here; a
    longer one re-queues ``task`` (raises Celery's ``Retry``) with a countdown to its
    reserved slot, marked so the re-run sends at once. A slot further ahead than the horizon
    is not reserved (the task comes back later and asks again), nor is anything while the
    daily quota is held. ``reserved_at``: the slot a re-run was re-queued for."""
    if reserved_at is not None and abs(time.time() - reserved_at) < RESERVATION_SLACK:
        return
    shared = limiter()
    if shared is None:
        return
    decision = shared.reserve(cost, quota.base_rate())
    if decision.admitted and decision.wait <= float(conf.SEACUCUMBER_RATE_MAX_WAIT):
        if decision.wait > 0:
            time.sleep(decision.wait)
        return
    if decision.admitted:
        logger.debug("message %s re-queued for its slot of the shared rate in %.2fs",
                     message_id, decision.wait)
        raise task.retry(countdown=decision.wait,
                         kwargs={**task.request.kwargs, "reserved_at": time.time() + decision.wait})
    if decision.held:
        countdown = decision.wait + random.uniform(0, min(60.0, decision.wait))
        logger.warning("message %s held: the SES daily quota is used up; retrying in %.0fs",
                       message_id, countdown)
    else:
        countdown = decision.wait * random.uniform(0.5, 0.9)
        logger.debug("message %s re-queued for %.1fs: the shared rate is booked further "
                     "ahead than its horizon", message_id, countdown)
    raise task.retry(countdown=countdown, kwargs={**task.request.kwargs, "reserved_at": None})


def throttled() -> None:
    """SES answered Throttling: slow the shared rate down."""
    shared = limiter()
    if shared is not None:
        factor = shared.slow_down()
        logger.warning("SES throttled a send: shared rate slowed to %.0f%% of %.2f/s",
                       100 * factor, quota.base_rate())


def quota_exhausted() -> float:
    """SES said the daily quota is spent: hold all sends; returns the hold in seconds."""
    seconds = float(conf.SEACUCUMBER_QUOTA_HOLD)
    shared = limiter()
    if shared is not None:
        shared.hold(seconds)
    logger.warning("SES daily sending quota used up: holding sends for %.0fs", seconds)
    return seconds


def rate_in_force() -> float | None:
    """Recipients per second the workers hold now, or None without a shared Redis."""
    shared = limiter()
    if shared is None:
        return None
    return quota.base_rate() * shared.factor()


def quota_hold_remaining() -> float | None:
    """Seconds left of a daily-quota hold on every send (``quota_exhausted``), or None when
    sends are not held (or there is no shared Redis)."""
    shared = limiter()
    return None if shared is None else shared.hold_remaining()
