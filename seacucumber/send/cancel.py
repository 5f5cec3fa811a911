"""Cancelling sends before they reach SES: ``seacucumber.cancel`` and the admin's action.

A cancel writes a mark in the send log (``shared.sendlog.cancel``) unless an attempt holds
the send or SES has it: every later attempt reads it in the round trip it makes anyway
(``attempt.begin``), and a scheduled send waiting for its time reads it at each hop, so a
cancelled send never reaches SES, whether its task is queued, waiting, or being retried.
The outbox record goes at once (a task the broker lost is not queued again) and the status
record becomes ``cancelled`` with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.core.exceptions import ImproperlyConfigured

from .. import status
from ..payload import MESSAGE_ID
from ..shared import outbox, sendlog

logger = logging.getLogger(__name__)

#: The reason recorded when the caller gives none.
DEFAULT_REASON = "cancelled by seacucumber.cancel"
#: Seconds the outbox's update may take (best effort: a record left is harmless, the
#: worker ends the send at the mark).
OUTBOX_TIMEOUT = 5.0


def _checked(message_ids: str | Iterable[str]) -> list[str]:
    """``message_ids`` (one id, or ``message.seacucumber_ids``) as a list, each checked
    (``ValueError``)."""
    ids = [message_ids] if isinstance(message_ids, str) else list(message_ids)
    for message_id in ids:
        if not isinstance(message_id, str) or not MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"{message_id!r} is not a message id of ours "
                             "(message.seacucumber_ids gives them)")
    return ids


def _send_ids(ids: list[str]) -> list[str]:
    """The send ids to cancel: a message's own id whose sends are ``<id>-1``, ``<id>-2``...
    (several groups of recipients) stands for them when status tracking knows them."""
    if status.enabled():
        ids = [found for message_id in ids for found in status.send_ids(message_id)]
    return list(dict.fromkeys(ids))


def cancel(message_ids: str | Iterable[str], reason: str = DEFAULT_REASON) -> bool:
    """Cancel the sends of ``message_ids`` (one id, or ``message.seacucumber_ids``) that have
    not reached SES; True when every one of them is cancelled (now, or before), False when
    any was sent already or is inside the SES call right now (that one goes on). Needs the
    shared-state Redis (``ImproperlyConfigured`` without); ``redis.RedisError`` when it
    does not answer."""
    ids = _checked(message_ids)
    if not sendlog.enabled():
        raise ImproperlyConfigured("seacucumber.cancel needs the shared-state Redis "
                                   "(SEACUCUMBER_REDIS_URL, or a Redis broker): the send log "
                                   "is where workers read the cancel")
    ids = _send_ids(ids)
    if not ids:
        return False
    found = sendlog.cancel(ids, reason)
    cancelled = [message_id for message_id, done in zip(ids, found, strict=True) if done]
    if cancelled:
        outbox.discard(cancelled, OUTBOX_TIMEOUT)
        status.record_cancelled(cancelled, reason)
        logger.info("cancelled %d send(s): %s (%s)", len(cancelled), ", ".join(cancelled),
                    reason)
    return len(cancelled) == len(ids)
