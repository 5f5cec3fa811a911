"""``message.anymail_status``, as django-anymail fills it, for messages sent through
``SESBackend`` with anymail's attributes (or an ``AnymailMessage``).

anymail's SES backend calls SES inside ``send_messages`` and keeps SES's MessageId; ours
queues the send, so after ``send_messages`` every recipient is ``"queued"`` and
``message_id`` is **our** id of the recipient's send (``message.seacucumber_ids``), the id
the status records, our signals and the anymail-shaped ``tracking`` events carry.
``esp_response`` is None: SES has not been called yet. With ``SEACUCUMBER_TRACK_STATUS`` on,
``message.anymail_status.refresh()`` moves each recipient on from its send's status record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import status as status_records
from ..payload import OutboundSend

#: Our status of a send -> anymail's status of each of its recipients. anymail's statuses
#: are send statuses (sent, queued, invalid, rejected, failed, unknown): delivery and
#: complaints are tracking events, so a delivered or complained send stays "sent".
ANYMAIL_STATUS = {"queued": "queued", "sent": "sent", "delivered": "sent",
                  "complained": "sent", "bounced": "failed", "failed": "failed",
                  "suppressed": "rejected"}


@dataclass
class AnymailRecipientStatus:
    """One recipient's status: ``message_id`` (our id of its send) and ``status``."""

    message_id: str
    status: str


@dataclass
class AnymailStatus:
    """anymail's ``AnymailStatus`` attributes: ``message_id`` (one id, or the set of ids of
    a message sent in several sends), ``status`` (the set of the recipients' statuses),
    ``recipients`` (address -> ``AnymailRecipientStatus``), ``esp_response`` (None)."""

    message_id: str | set[str] | None = None
    status: set[str] | None = None
    recipients: dict[str, AnymailRecipientStatus] = field(default_factory=dict)
    esp_response: Any = None

    def set_recipient_status(self, recipients: dict[str, AnymailRecipientStatus]) -> None:
        """Update some recipients, then ``message_id`` and ``status`` from them all (as
        anymail's method of the same name)."""
        self.recipients.update(recipients)
        ids = {found.message_id for found in self.recipients.values()}
        self.message_id = ids.pop() if len(ids) == 1 else ids
        self.status = {found.status for found in self.recipients.values()}

    def refresh(self) -> AnymailStatus:
        """Move each recipient on from its send's status record (needs
        ``SEACUCUMBER_TRACK_STATUS``; without a record a recipient keeps its status); one
        query per send. Returns self."""
        by_send: dict[str, list[str]] = {}
        for address, found in self.recipients.items():
            by_send.setdefault(found.message_id, []).append(address)
        moved = {}
        for message_id, addresses in by_send.items():
            record = status_records.get(message_id=message_id)
            if record is None:
                continue
            now = ANYMAIL_STATUS.get(record.status, "unknown")
            moved.update({a: AnymailRecipientStatus(message_id, now) for a in addresses})
        if moved:
            self.set_recipient_status(moved)
        return self


def queued(sends: Sequence[OutboundSend]) -> AnymailStatus:
    """The status of a message just queued as ``sends``: every recipient "queued"."""
    found = AnymailStatus()
    found.set_recipient_status({address: AnymailRecipientStatus(outbound.message_id, "queued")
                                for outbound in sends for address in outbound.recipients})
    return found
