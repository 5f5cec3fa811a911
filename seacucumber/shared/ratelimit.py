"""One send rate per SES account and region, shared in Redis by every worker process and host.

SES limits the account to N recipients per second, so each send reserves as many tokens as
it has recipients before it calls SES. The limiter is GCRA (the generic cell rate algorithm,
a token bucket kept as one "theoretical arrival time") in a short Lua script
(``send/attempt_begin.lua``, which also claims the send, in the same round trip): atomic
across hosts, and timed by Redis's own clock so hosts' clocks do not matter. It answers "reserved:
wait w seconds, then send", which lets a task sleep exactly as long as needed without
polling. The ``limits`` library (already used by many Django projects) was considered: its
Redis strategies take a weighted ``hit`` but only answer yes or no, so a refused send would
have to poll, and they cannot reserve ahead; ``pyrate-limiter`` has the same shape. Hence
the 30 lines of Lua. Lanes share this one rate by priority (``attempt``, docs/rate.rst).

Each rate bucket (``buckets``: an SES account and region, as SES gives each its own quota)
has its own keys: the rate, its slow-down after throttling, its daily-quota hold, its lanes'
shares. Every function here takes the send's bucket (None: the settings' own).

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
from dataclasses import dataclass

import redis

from .. import clients
from ..conf import conf
from . import buckets, quota, store
from .buckets import Bucket

logger = logging.getLogger(__name__)

SLOW_DOWN = 0.8          #: factor applied to the shared rate on a Throttling error
MIN_FACTOR = 0.1         #: the shared rate never drops below this share of the base rate
RECOVERY_SECONDS = 30.0  #: a slowed rate is back to full after this long without throttling
RESERVATION_SLACK = 30.0  #: a re-run this far from its reserved slot asks for a new one

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


def hold_key(bucket: str = store.DEFAULT_BUCKET) -> str:
    """The key whose life is a daily-quota hold on every send of ``bucket``."""
    return store.bucket_key(bucket, "quota", "hold")


def slow_down_key(bucket: str = store.DEFAULT_BUCKET) -> str:
    """The hash of ``bucket``'s slow-down after throttling (factor, when)."""
    return store.bucket_key(bucket, "rate", "slowdown")


@dataclass(frozen=True)
class Decision:
    """The limiter's answer for one send."""

    admitted: bool   #: tokens reserved: sleep ``wait`` seconds, then send
    held: bool       #: the daily quota is spent: re-queue for ``wait`` seconds
    wait: float
    rate: float      #: the rate in force, recipients per second (0 when held)
    waiters: int = 0  #: lower-lane attempts refused lately (``attempt``)


class Limiter:
    """The shared limiter on one Redis client (one per process)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._slow_down = client.register_script(_SLOW_DOWN)

    @staticmethod
    def keys(bucket: str = store.DEFAULT_BUCKET) -> list[str]:
        """``bucket``'s rate keys: its GCRA time, its slow-down, its daily-quota hold."""
        return [store.bucket_key(bucket, "rate", "tat"), slow_down_key(bucket),
                hold_key(bucket)]

    def slow_down(self, bucket: str = store.DEFAULT_BUCKET) -> float:
        """Cut ``bucket``'s rate after a Throttling error; returns the new factor."""
        return float(self._slow_down(
            keys=[slow_down_key(bucket)],
            args=[repr(SLOW_DOWN), repr(MIN_FACTOR), repr(RECOVERY_SECONDS)]))

    def factor(self, bucket: str = store.DEFAULT_BUCKET) -> float:
        """``bucket``'s slow-down factor in force now (1.0: full rate)."""
        factor, at = self.client.hmget(slow_down_key(bucket), "factor", "at")
        if factor is None or at is None:
            return 1.0
        seconds, micros = self.client.time()
        recovered = (seconds + micros / 1e6 - float(at)) / RECOVERY_SECONDS
        return 1.0 if recovered >= 1 else 1 - (1 - float(factor)) * (1 - recovered)

    def hold(self, seconds: float, bucket: str = store.DEFAULT_BUCKET) -> None:
        """Hold every send of ``bucket`` for ``seconds`` (its daily quota is spent)."""
        self.client.set(hold_key(bucket), "1", px=max(1, int(seconds * 1000)))

    def hold_remaining(self, bucket: str = store.DEFAULT_BUCKET) -> float | None:
        """Seconds left of ``bucket``'s daily-quota hold, or None when it is not held."""
        left = self.client.pttl(hold_key(bucket))
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


def throttled(bucket: Bucket | None = None) -> None:
    """SES answered Throttling: slow ``bucket``'s (None: the default's) shared rate down."""
    shared = limiter()
    if shared is not None:
        bucket = bucket or buckets.default()
        factor = shared.slow_down(bucket.id)
        logger.warning("SES throttled a send: shared rate slowed to %.0f%% of %.2f/s "
                       "(bucket %s)", 100 * factor, quota.base_rate(bucket), bucket.id)


def quota_exhausted(bucket: Bucket | None = None) -> float:
    """SES said ``bucket``'s (None: the default's) daily quota is spent: hold its sends;
    returns the hold in seconds."""
    seconds = float(conf.SEACUCUMBER_QUOTA_HOLD)
    bucket = bucket or buckets.default()
    shared = limiter()
    if shared is not None:
        shared.hold(seconds, bucket.id)
    logger.warning("SES daily sending quota used up: holding sends for %.0fs (bucket %s)",
                   seconds, bucket.id)
    return seconds


def rate_in_force(bucket: Bucket | None = None) -> float | None:
    """Recipients per second the workers hold now in ``bucket`` (None: the default), or None
    without a shared Redis."""
    shared = limiter()
    if shared is None:
        return None
    bucket = bucket or buckets.default()
    return quota.base_rate(bucket) * shared.factor(bucket.id)


def quota_hold_remaining(bucket: Bucket | None = None) -> float | None:
    """Seconds left of a daily-quota hold on ``bucket``'s sends (``quota_exhausted``), or
    None when they are not held (or there is no shared Redis)."""
    shared = limiter()
    return None if shared is None else shared.hold_remaining(
        (bucket or buckets.default()).id)
