"""Idempotent sends: one Redis key per message id of ours, so a task that runs again (a
redelivery after a crash, a retry, a duplicate on the broker) never sends a message twice
once SES has accepted it. SES has no idempotency token; this is ours.

The key ``<prefix>:sent:<message id>`` holds:

- ``claim:<task id>`` while one attempt is inside the SES call. It expires after
  ``claim_seconds()`` (the longest an SES call can take), so the claim of a worker killed
  mid-call frees itself. Another attempt finding a live claim waits for it rather than
  sending alongside.
- ``sent:<SES MessageId>`` once SES accepted the message, kept past the message's lifetime.
  Any later attempt returns that id without calling SES.
- ``cancelled:<reason>`` once ``seacucumber.cancel`` cancelled the send before any attempt
  claimed it (``cancel``): every later attempt ends the send as cancelled without calling
  SES. ``attempt.begin`` reads it in the round trip it makes anyway, so an unscheduled send
  pays nothing for it.

The one window left: a worker killed after SES accepted the message and before the key says
so. The next attempt (once the claim has expired) sends again: at most one duplicate per
such crash, the price of at-least-once delivery. An error that may hide a send (a read
timeout, a connection dropped after the request went out) is in the same window.

Without a shared-state Redis (``store.redis_url()`` is None) there is no send log and
delivery is at-least-once without this guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from ..conf import conf
from ..schedule import max_schedule
from . import store


def enabled() -> bool:
    return store.redis_url() is not None


def claim_seconds() -> float:
    """How long an attempt may hold its claim: one SES call at its longest, plus margin."""
    return float(conf.SEACUCUMBER_CONNECT_TIMEOUT) + float(conf.SEACUCUMBER_READ_TIMEOUT) + 5


def key(message_id: str) -> str:
    return store.key("sent", message_id)


def keep_seconds() -> int:
    """How long the sent mark is kept: past the message's lifetime, so no retry outlives it."""
    return int(float(conf.SEACUCUMBER_MESSAGE_LIFETIME) + 24 * 3600)


def sent_mark(ses_message_id: str) -> str:
    """The value that says SES accepted the message (``attempt``'s scripts read its prefix)."""
    return f"sent:{ses_message_id}"


#: The value's prefix that says the send was cancelled (``attempt_begin.lua`` reads it too).
CANCELLED = "cancelled:"

#: KEYS: the send log keys; ARGV: the cancel mark, its seconds. Marks each send cancelled
#: unless an attempt holds it or SES has it; returns, per key, 1 (cancelled, now or
#: before) or 0 (sent, or inside the SES call right now).
_CANCEL = """
local marked = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if not value then
    redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
    marked[i] = 1
  elseif string.sub(value, 1, 10) == 'cancelled:' then
    marked[i] = 1
  else
    marked[i] = 0
  end
end
return marked
"""


def cancel_seconds() -> int:
    """How long a cancel mark is kept: past the furthest schedule and the lifetime after it,
    so no task of the send outlives it."""
    return int(max_schedule()) + keep_seconds()


def cancel(message_ids: Sequence[str], reason: str) -> list[bool]:
    """Mark each of ``message_ids`` cancelled (``CANCELLED``), one Redis call per send (the
    keys may live on different cluster nodes); per send, whether it is cancelled (False: SES
    has it, or an attempt is inside the SES call). ``redis.RedisError`` propagates."""
    mark = f"{CANCELLED}{reason}"
    return [bool(store.run_script(_CANCEL, [key(message_id)], [mark, cancel_seconds()])[0])
            for message_id in message_ids]


def cancelled(message_id: str) -> str | None:
    """The reason ``message_id`` was cancelled, or None (not cancelled, or no send log)."""
    if not enabled():
        return None
    value = store.redis_client().get(key(message_id))
    text = value.decode() if isinstance(value, bytes) else value
    return text[len(CANCELLED):] if text and text.startswith(CANCELLED) else None


@dataclass
class Claim:
    """An attempt's claim on a send (``attempt.begin`` takes it): ours to send, already
    sent, or busy elsewhere."""

    message_id: str
    token: str | None = None      #: set when this attempt holds the claim
    sent_id: str | None = None    #: set when SES accepted the message before
    busy_for: float = 0.0         #: seconds another attempt's claim still runs
    cancelled: str | None = None  #: set when the send was cancelled: the reason

    def release(self) -> None:
        """Give the claim up after a send that did not go through, so a retry may claim."""
        if self.token is None or not enabled():
            return
        try:
            store.delete_if_equal(key(self.message_id), self.token)
        except redis.RedisError:
            pass  # the claim expires by itself

    def mark_sent(self, ses_message_id: str) -> None:
        """Record that SES accepted the message (kept past the message's lifetime)."""
        if not enabled():
            return
        try:
            store.redis_client().set(key(self.message_id), sent_mark(ses_message_id),
                                     ex=keep_seconds())
        except redis.RedisError:
            pass  # sent all the same; only a later redelivery could send it again
