"""How a send ends: sent, failed, suppressed or cancelled, recorded in one place.

The package's own bookkeeping (the status record, the metrics counters) is called directly,
first; the public signals (``message_sent``, ``message_failed``, ``message_suppressed``) are
sent after it, for users only, each receiver isolated: one that raises is logged with its
traceback and changes neither the send's outcome nor the bookkeeping. None of these signals
can cancel a send (docs/signals: only the webhook's and ``inbound_received`` roll back).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError
from django.dispatch import Signal

from .. import signals, status
from ..operations import metrics
from ..payload import OutboundSend

logger = logging.getLogger(__name__)

#: ``message_suppressed``'s ``reason`` for recipients off the staging allowlist.
ALLOWLIST = "allowlist"


def sent(outbound: OutboundSend, ses_message_id: str) -> None:
    """SES accepted ``outbound`` (counted already, by ``attempt.settle``'s round trip)."""
    details = {"message_id": outbound.message_id, "ses_message_id": ses_message_id,
               "sender_address": outbound.sender, "recipients": list(outbound.recipients)}
    status.record_sent(**details)
    notify(signals.message_sent, **details)


def failed(outbound: OutboundSend | None, message_id: str, code: str, reason: str) -> None:
    """The send failed for good: log it, record it, count it, tell users."""
    logger.error("message %s failed: %s: %s", message_id, code, reason)
    details = {"message_id": message_id, "code": code, "reason": reason,
               "sender_address": outbound.sender if outbound else None,
               "recipients": list(outbound.recipients) if outbound else None}
    status.record_failed(**details)
    metrics.count_send_outcome("failed", len(outbound.recipients) if outbound else 0)
    notify(signals.message_failed, **details)


def suppressed(outbound: OutboundSend, dropped: Sequence[str], kept: Sequence[str],
               **extra: Any) -> None:
    """Recipients were dropped from ``outbound`` (``kept`` go on; none: the send ends
    ``suppressed``, or ``not_allowed`` in the counters for the allowlist's). ``extra``:
    ``reason`` and ``redirected_to`` for the allowlist."""
    details = {"message_id": outbound.message_id, "sender_address": outbound.sender,
               "suppressed": list(dropped), "recipients": list(kept)}
    status.record_suppressed(**details)
    if not kept:  # the whole send was dropped (else it goes on to be sent)
        ended = "not_allowed" if extra.get("reason") == ALLOWLIST else "suppressed"
        metrics.count_send_outcome(ended, len(dropped))
    notify(signals.message_suppressed, **details, **extra)


def cancelled(outbound: OutboundSend, reason: str) -> None:
    """The worker met ``outbound``'s cancel mark (``seacucumber.cancel``): not sent. Its
    record says so (``cancel`` wrote it already, unless the database was out of reach)."""
    logger.info("message %s cancelled (%s): not sent", outbound.message_id, reason)
    try:
        status.record_cancelled([outbound.message_id], reason)
    except DatabaseError:
        logger.exception("status of message %s not recorded", outbound.message_id)
    metrics.count_send_outcome("cancelled", len(outbound.recipients))


def notify(signal: Signal, **details: Any) -> None:
    """Send ``signal`` to users' receivers, each isolated: a receiver that raises is logged
    with its traceback, and the others still run."""
    if not signal.receivers:
        return
    for receiver, result in signal.send_robust(sender=OutboundSend, **details):
        if isinstance(result, Exception):
            logger.error("a receiver of %s (%r) raised for message %s; the send is unchanged",
                         _name(signal), receiver, details.get("message_id"), exc_info=result)


def _name(signal: Signal) -> str:
    return next((name for name, found in vars(signals).items() if found is signal), "a signal")
