"""Per-send status records (``SEACUCUMBER_TRACK_STATUS``): written ``queued`` by the backend
(with ``send_at``, "scheduled for", when the message is scheduled), ``cancelled`` by
``seacucumber.cancel`` (and by the worker that meets the cancel mark),
``sent``/``failed``/``suppressed`` by the worker (``send.outcome`` calls ``record_*``, before
any user signal), and moved on by SES events. Look one up with::

    from seacucumber import status
    status.get(message_id="...")  # or status.get(ses_message_id="...")

A status only moves up in rank (``models.STATUS_RANK``), so late, repeated or out-of-order
news never undoes newer news. Models are imported inside the functions: the backend imports
this module, which must stay importable before the app registry is ready. Worker-side writes
never fail a send: a database error there is logged.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import DatabaseError, models
from django.utils import timezone

from .conf import conf
from .conf import lane as conf_lane
from .payload import OutboundSend

if TYPE_CHECKING:
    from .models import MessageStatus

logger = logging.getLogger(__name__)

MAX_SUBJECT = 998  # RFC 5322 line limit: longer subjects are folded anyway


def enabled() -> bool:
    """Whether status tracking is on."""
    return bool(conf.SEACUCUMBER_TRACK_STATUS)


def get(*, message_id: str | None = None, ses_message_id: str | None = None
        ) -> MessageStatus | None:
    """The status record of one send, by our id or SES's MessageId; None if there is none."""
    if (message_id is None) == (ses_message_id is None):
        raise TypeError("give exactly one of message_id and ses_message_id")
    from .models import MessageStatus

    if message_id is not None:
        return MessageStatus.objects.filter(message_id=message_id).first()
    return MessageStatus.objects.filter(ses_message_id=ses_message_id).first()


def send_ids(message_id: str) -> list[str]:
    """The sends ``message_id`` names: itself when a record has it; else, for the id a
    message of several sends shares (theirs are ``<id>-1``, ``<id>-2``...), theirs; else
    itself (a send this table does not know)."""
    from .models import MessageStatus

    found = list(MessageStatus.objects.filter(
        models.Q(message_id=message_id) | models.Q(message_id__startswith=f"{message_id}-")
    ).values_list("message_id", flat=True))
    if message_id in found or not found:
        return [message_id]
    return sorted(found)


def record_queued(checked: Iterable[tuple[EmailMessage, Sequence[OutboundSend]]]) -> None:
    """Write one ``queued`` record per send, in one INSERT (no-op when tracking is off).

    Runs inside the caller's transaction: with SEACUCUMBER_ENQUEUE_ON_COMMIT a rolled-back
    transaction leaves neither mail nor record. A record the worker already wrote (it can win
    the race when the caller's transaction commits late) is kept as it is.
    """
    if not enabled():
        return
    from .models import MessageStatus, Status

    checked = list(checked)  # read twice: the records, then their recipients
    now = timezone.now()
    rows = [
        MessageStatus(
            message_id=send.message_id,
            sender=send.sender,
            recipients="\n".join(send.recipients),
            subject=str(message.subject or "")[:MAX_SUBJECT],
            lane=send.lane or conf_lane().name,
            status=Status.QUEUED,
            queued_at=now,
            send_at=_moment(send.send_at),
            updated_at=now,
        )
        for message, sends in checked
        for send in sends
    ]
    if rows:
        MessageStatus.objects.bulk_create(rows, ignore_conflicts=True)
        record_recipients((send.message_id, send.recipients)
                          for _, sends in checked for send in sends)


def _moment(posix: float | None) -> datetime.datetime | None:
    """A POSIX time as the database stores times (aware UTC, or naive local time when
    ``USE_TZ`` is off); None stays None."""
    if posix is None:
        return None
    moment = datetime.datetime.fromtimestamp(posix, tz=datetime.UTC)
    return moment if settings.USE_TZ else timezone.make_naive(moment)


def record_cancelled(message_ids: Sequence[str], reason: str) -> int:
    """Queued (or scheduled) sends cancelled (``seacucumber.cancel``): ``cancelled`` with the
    reason; returns how many records moved. Web or worker side; a send already further on
    is left as it is."""
    if not enabled() or not message_ids:
        return 0
    from .models import Status

    return advance(Status.CANCELLED, {"message_id__in": list(message_ids)},
                   only_from=[Status.QUEUED], last_error=reason[:2000])


def record_recipients(sends: Iterable[tuple[str, Iterable[str]]]) -> None:
    """One ``SendRecipient`` row per (our id, recipient), lower-cased, in one INSERT: what the
    timeline's lookup by address reads through its index."""
    from .models import SendRecipient

    rows = [SendRecipient(send_id=message_id, address=address.strip().lower()[:320])
            for message_id, recipients in sends
            for address in {r.strip().lower() for r in recipients} if address]
    if rows:
        SendRecipient.objects.bulk_create(rows, ignore_conflicts=True)


def record_unqueued(sends: Iterable[OutboundSend], reason: str) -> None:
    """Mark sends the broker did not take as failed (the caller got an ``EnqueueError``)."""
    if not enabled():
        return
    from .models import MessageStatus, Status

    MessageStatus.objects.filter(
        message_id__in=[s.message_id for s in sends], status=Status.QUEUED
    ).update(status=Status.FAILED, last_error=reason[:2000], updated_at=timezone.now())


def advance(status: str, where: dict[str, Any], only_from: Sequence[str] | None = None,
            **fields: Any) -> int:
    """Move the records matching ``where`` (``{"message_id": ...}`` or
    ``{"ses_message_id": ...}``) to ``status``, only from a lower rank (or from ``only_from``),
    setting ``fields`` too; returns how many moved."""
    from .models import MessageStatus, statuses_below

    sources = statuses_below(status) if only_from is None else list(only_from)
    query = MessageStatus.objects.filter(status__in=sources, **where)
    return query.update(status=status, updated_at=timezone.now(), **fields)


def _settle(status: str, message_id: str, sender: str | None, recipients: list[str] | None,
            **fields: Any) -> None:
    """Worker side: move the record on from ``queued`` (``sent`` from any lower rank) to
    ``status``; write it if the backend's record is not there (yet: the caller's transaction
    may commit after the worker ran)."""
    from .models import MessageStatus, Status

    fields.setdefault("only_from", None if status == Status.SENT else [Status.QUEUED])
    if advance(status, {"message_id": message_id}, **fields):
        return
    if MessageStatus.objects.filter(message_id=message_id).exists():
        return  # already at the same or a higher rank
    now = timezone.now()
    MessageStatus.objects.bulk_create([MessageStatus(
        message_id=message_id, sender=sender or "", recipients="\n".join(recipients or ()),
        status=Status.QUEUED, queued_at=now, updated_at=now,
    )], ignore_conflicts=True)
    record_recipients([(message_id, recipients or ())])
    advance(status, {"message_id": message_id}, **fields)


def _guarded(record: Callable[..., None]) -> Callable[..., None]:
    """Write a worker-side record only with tracking on, and never let it fail the task."""
    @functools.wraps(record)
    def run(**kwargs: Any) -> None:
        if not enabled():
            return
        try:
            record(**kwargs)
        except DatabaseError:
            logger.exception("status of message %s not recorded", kwargs.get("message_id"))
    return run


@_guarded
def record_sent(*, message_id: str, ses_message_id: str, sender_address: str,
                recipients: list[str]) -> None:
    """The record becomes ``sent`` with SES's MessageId."""
    _settle("sent", message_id, sender_address, recipients,
            ses_message_id=ses_message_id, sent_at=timezone.now())


@_guarded
def record_failed(*, message_id: str, code: str, reason: str, sender_address: str | None = None,
                  recipients: list[str] | None = None) -> None:
    """The record becomes ``failed`` with the reason."""
    _settle("failed", message_id, sender_address, recipients,
            last_error=f"{code}: {reason}"[:2000])


@_guarded
def record_suppressed(*, message_id: str, sender_address: str, suppressed: list[str],
                      recipients: list[str]) -> None:
    """Note the dropped recipients; a send left with none becomes ``suppressed``."""
    from .models import MessageStatus

    note = "\n".join(suppressed)
    if not recipients:
        _settle("suppressed", message_id, sender_address, suppressed,
                suppressed_recipients=note)
    else:
        MessageStatus.objects.filter(message_id=message_id).update(suppressed_recipients=note)


def cleanup(days: float) -> int:
    """Delete status records queued more than ``days`` ago (and the SES events kept for the
    timeline); returns how many records. Seen SNS ids are pruned by
    ``events.sns.forget_seen``, which keeps those a replay could still match."""
    from .models import MessageStatus, SendEvent

    cutoff = timezone.now() - datetime.timedelta(days=days)
    SendEvent.objects.filter(at__lt=cutoff).delete()
    statuses, _ = MessageStatus.objects.filter(queued_at__lt=cutoff).delete()
    return statuses
