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

The one window left: a worker killed after SES accepted the message and before the key says
so. The next attempt (once the claim has expired) sends again: at most one duplicate per
such crash, the price of at-least-once delivery. An error that may hide a send (a read
timeout, a connection dropped after the request went out) is in the same window.

Without a shared-state Redis (``store.redis_url()`` is None) there is no send log and
delivery is at-least-once without this guard.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from ..conf import conf
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


@dataclass
class Claim:
    """An attempt's claim on a send (``attempt.begin`` takes it): ours to send, already
    sent, or busy elsewhere."""

    message_id: str
    token: str | None = None      #: set when this attempt holds the claim
    sent_id: str | None = None    #: set when SES accepted the message before
    busy_for: float = 0.0         #: seconds another attempt's claim still runs

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
