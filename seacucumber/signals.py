"""Signals Sea Cucumber sends, for users: the package keeps its own records without them.
Receivers run in the process that sends them (the worker for send outcomes). A receiver of a
send signal that raises is logged and changes nothing (``send.outcome``); one of an SES event
signal or ``inbound_received`` rolls its transaction back, so the event comes again; one of
``tracking`` (django-anymail's shape of the SES events) is logged and changes nothing."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from django.dispatch import Signal

#: A message was accepted by SES. Arguments: ``message_id`` (ours), ``ses_message_id``,
#: ``sender_address`` (envelope sender), ``recipients``.
message_sent = Signal()

#: A message ended failed. Arguments: ``message_id`` (ours), ``code`` (SES's error code or
#: our own), ``reason``, ``sender_address``, ``recipients`` (the last two may be None for a payload
#: that could not be read).
message_failed = Signal()

#: The worker dropped suppressed recipients from a send (see the suppression list).
#: Arguments: ``message_id``, ``sender_address``, ``suppressed`` (addresses dropped),
#: ``recipients`` (those still sent to; empty when the whole send was suppressed and not sent).
#: Also sent for recipients off the staging allowlist (``SEACUCUMBER_RECIPIENT_ALLOWLIST``),
#: with ``reason="allowlist"`` and ``redirected_to`` (the redirect address, or None).
message_suppressed = Signal()

#: A recipient left a topic (one-click unsubscribe, ``ses_suppression add --topic``): sent once
#: per new topic suppression, in the process that recorded it, after the row is saved.
#: Arguments: ``address`` (lowercased), ``topic``, ``source`` (``one-click`` or ``manual``).
unsubscribed = Signal()

#: The reputation guard held a lane (seacucumber.shared.reputation), sent once per hold by
#: the process that placed it (the webhook's, after its transaction commits). Arguments:
#: ``lane`` and ``hold`` (a ``reputation.Hold``: rate, value, threshold, sample, at).
reputation_hold = Signal()

#: An operator released a lane (``manage.py ses_reputation release``). Arguments: ``lane``
#: and ``hold`` (the ``Hold`` released, or None when the lane was not held).
reputation_released = Signal()

# SES events received on the webhook (seacucumber.events). Each is sent with ``mail_obj`` (the
# SES mail object), ``event_obj`` (the type-specific object: ``bounce``, ``complaint``, ...),
# ``raw_message`` (the whole SNS message, a dict) and ``event_type`` (as SES spells it). Where
# django-ses has a name for the type-specific object it is passed under that name too
# (``bounce_obj``, ``complaint_obj``, ``delivery_obj``, ``send_obj``, ``open_obj``,
# ``click_obj``). Receivers run inside the webhook's transaction: an exception rolls the
# event back and SNS delivers it again.
bounce_received = Signal()
complaint_received = Signal()
delivery_received = Signal()
send_received = Signal()
open_received = Signal()
click_received = Signal()
delivery_delay_received = Signal()
reject_received = Signal()
rendering_failure_received = Signal()
subscription_received = Signal()

#: A mail was received through an SES receipt rule (seacucumber.events.inbound), sent once
#: per SNS message by the worker task that parses it (``events.inbound_task``). Arguments:
#: ``message`` (an ``InboundMessage``, an ``email.message.EmailMessage``) and ``event`` (a
#: ``ReceivedEvent``: SES's mail and receipt objects, the SNS MessageId). Receivers run inside
#: the task's transaction: an exception rolls it back and the task runs again later.
inbound_received = Signal()


# --- django-anymail's tracking signal, for receivers written for anymail ----------------------


class EventType:
    """anymail's normalised ``event_type`` values (``anymail.signals.EventType``), those an
    SES event maps to."""

    QUEUED = "queued"
    SENT = "sent"
    REJECTED = "rejected"
    FAILED = "failed"
    BOUNCED = "bounced"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    AUTORESPONDED = "autoresponded"
    OPENED = "opened"
    CLICKED = "clicked"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"
    SUBSCRIBED = "subscribed"
    UNKNOWN = "unknown"


class RejectReason:
    """anymail's normalised ``reject_reason`` values (``anymail.signals.RejectReason``)."""

    INVALID = "invalid"
    BOUNCED = "bounced"
    TIMED_OUT = "timed_out"
    BLOCKED = "blocked"
    SPAM = "spam"
    UNSUBSCRIBED = "unsubscribed"
    OTHER = "other"


@dataclass
class AnymailTrackingEvent:
    """One recipient's SES event shaped as anymail's ``AnymailTrackingEvent``: the same
    attribute names and normalised values. ``message_id`` is our id of the send (what
    ``message.anymail_status.message_id`` gave at ``send_messages``), else SES's MessageId;
    ``event_id`` the SNS MessageId; ``esp_event`` the SES event (a dict)."""

    event_type: str
    timestamp: datetime.datetime | None = None
    event_id: str | None = None
    esp_event: Any = None
    message_id: str | None = None
    recipient: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    reject_reason: str | None = None
    description: str | None = None
    mta_response: str | None = None
    click_url: str | None = None
    user_agent: str | None = None


#: SES events as anymail's ``tracking`` signal sends them: one ``AnymailTrackingEvent`` per
#: recipient. Arguments: ``event`` and ``esp_name`` ("Amazon SES"). A receiver written for
#: anymail ports by importing ``tracking`` from here instead of ``anymail.signals``. Sent
#: once the webhook's transaction commits, each receiver isolated: one that raises is logged
#: and changes nothing (the event is not delivered again).
tracking = Signal()
