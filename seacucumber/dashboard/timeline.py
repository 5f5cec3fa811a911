"""Every send to an address (or with an id), each with its timeline and SES's reasons.

A status record (``MessageStatus``) keeps only a send's latest status, so the SES events
that moved it are kept too: the webhook writes one ``SendEvent`` per event it applies
(``events.handlers.apply_timeline``), inside its transaction (an event rolled back leaves no
step), when status tracking is on. A timeline is then: queued and sent from the status
record, each SES event in the order SES stamped them, and the failure or suppression the
record ends in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Q

from ..models import MessageStatus, SendEvent, SendRecipient, Status, SuppressedAddress

MAX_SENDS = 200  #: a lookup shows at most this many sends, newest first
#: The longest query looked up: an address is at most 254 characters (RFC 5321's path limit
#: less its brackets), and our ids and SES's are shorter. Longer ones are refused before any
#: query (SQLite fails on a LIKE pattern of 50,000).
MAX_QUERY = 254

# --- looking up ---------------------------------------------------------------------------------

@dataclass
class Step:
    what: str  #: queued, scheduled for, sent, Delivery, Bounce, ..., failed, suppressed, cancelled
    at: dt.datetime | None
    detail: str = ""


@dataclass
class SendTimeline:
    record: MessageStatus
    steps: list[Step] = field(default_factory=list)


@dataclass
class Lookup:
    query: str
    sends: list[SendTimeline]
    suppressed: SuppressedAddress | None = None  #: the address's suppression list entry
    truncated: bool = False


def _matching(query: str) -> list[MessageStatus]:
    if "@" in query:  # through the recipients table's (address, send) index
        sends = SendRecipient.objects.filter(address=query.strip().lower()).values("send_id")
        return list(MessageStatus.objects.filter(message_id__in=sends)
                    .order_by("-queued_at")[: MAX_SENDS + 1])
    return list(MessageStatus.objects.filter(
        Q(message_id=query) | Q(ses_message_id=query) | Q(message_id__startswith=f"{query}-")
    ).order_by("-queued_at")[: MAX_SENDS + 1])


def lookup(query: str) -> Lookup:
    """The sends to an address, or the send(s) with our id or SES's MessageId, newest first,
    each with its timeline; ``ValueError`` for a query over ``MAX_QUERY`` characters."""
    query = query.strip()
    if len(query) > MAX_QUERY:
        raise ValueError(f"a query is at most {MAX_QUERY} characters, not {len(query)}")
    records = _matching(query)
    truncated = len(records) > MAX_SENDS
    records = records[:MAX_SENDS]
    events: dict[str, list[SendEvent]] = {}
    ses_ids = [r.ses_message_id for r in records if r.ses_message_id]
    for event in SendEvent.objects.filter(ses_message_id__in=ses_ids):
        events.setdefault(event.ses_message_id, []).append(event)
    sends = []
    for record in records:
        steps = [Step("queued", record.queued_at)]
        if record.send_at:
            steps.append(Step("scheduled for", record.send_at, "its message's send_at"))
        if record.sent_at or record.ses_message_id:
            steps.append(Step("sent", record.sent_at, f"SES MessageId {record.ses_message_id}"))
        steps += [Step(e.kind, e.at, e.detail) for e in events.get(record.ses_message_id or "", [])]
        if record.status == Status.FAILED:
            steps.append(Step("failed", record.updated_at, record.last_error))
        elif record.status == Status.CANCELLED:
            steps.append(Step("cancelled", record.updated_at, record.last_error))
        elif record.status == Status.SUPPRESSED:
            steps.append(Step("suppressed", record.updated_at,
                              "on the suppression list: " + ", ".join(
                                  record.suppressed_recipients.split())))
        elif record.suppressed_recipients:
            steps.append(Step("suppressed", None, "dropped from this send: " + ", ".join(
                record.suppressed_recipients.split())))
        sends.append(SendTimeline(record, steps))
    suppressed = (SuppressedAddress.objects.filter(address=query.lower()).first()
                  if "@" in query else None)
    return Lookup(query, sends, suppressed, truncated)
