"""SES events as django-anymail's tracking events (``signals.tracking``), mapped as anymail's
Amazon SES webhook maps them, so receivers written for anymail keep working.

One event per recipient: a bounce's bounced recipients (``mta_response``: their diagnostic),
a complaint's complained, a delivery's delivered, a delay's delayed, any other type the
mail's destinations. ``tags`` and ``metadata`` come back from the ``X-Tag`` and
``X-Metadata`` headers the send carried (SES includes the headers in event publishing, and in
notifications with "include original headers" on). Differences from anymail: ``message_id``
is our id of the send (what ``anymail_status`` gave at ``send_messages``) where the event
carries it, and a DeliveryDelay is ``deferred`` (anymail: ``unknown``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from .. import signals
from ..signals import AnymailTrackingEvent, EventType, RejectReason
from .parse import SESEvent

logger = logging.getLogger(__name__)

#: What anymail's ``tracking`` receivers get as ``esp_name``.
ESP_NAME = "Amazon SES"

#: Our kind of SES event -> (anymail's event_type, reject_reason).
_TYPES: dict[str, tuple[str, str | None]] = {
    "send": (EventType.SENT, None),
    "delivery": (EventType.DELIVERED, None),
    "bounce": (EventType.BOUNCED, RejectReason.BOUNCED),
    "complaint": (EventType.COMPLAINED, RejectReason.SPAM),
    "reject": (EventType.REJECTED, RejectReason.BLOCKED),
    "open": (EventType.OPENED, None),
    "click": (EventType.CLICKED, None),
    "rendering_failure": (EventType.FAILED, None),
    "delivery_delay": (EventType.DEFERRED, None),
}


def send_tracking(event: SESEvent, message: dict[str, Any]) -> None:
    """Send ``signals.tracking`` once per recipient of ``event`` after the webhook's
    transaction commits, each receiver isolated (``send_robust``: one that raises is logged
    with its traceback). Nothing is built when no receiver is connected."""
    if not signals.tracking.receivers or event.kind is None:
        return
    found = tracking_events(event, message)

    def deliver() -> None:
        for one in found:
            for receiver, result in signals.tracking.send_robust(
                    sender=SESEvent, event=one, esp_name=ESP_NAME):
                if isinstance(result, Exception):
                    logger.error("a receiver of tracking (%r) raised for SES %s of %s; the "
                                 "event stands", receiver, event.event_type, one.message_id,
                                 exc_info=result)

    transaction.on_commit(deliver)


def tracking_events(event: SESEvent, message: dict[str, Any]) -> list[AnymailTrackingEvent]:
    """``event`` (received in the SNS ``message``) as anymail's tracking events."""
    event_type, reject_reason = _TYPES.get(event.kind or "", (EventType.UNKNOWN, None))
    tags, metadata = _tags_and_metadata(event.mail)
    stamp = message.get("Timestamp")
    common: dict[str, Any] = {
        "event_type": event_type, "reject_reason": reject_reason,
        "timestamp": parse_datetime(stamp) if isinstance(stamp, str) else None,
        "event_id": message.get("MessageId"), "esp_event": event.data,
        "message_id": event.message_id or event.ses_message_id,
        "tags": tags, "metadata": metadata, **_details(event),
    }
    return [AnymailTrackingEvent(**common, **each) for each in _per_recipient(event)]


def _details(event: SESEvent) -> dict[str, Any]:
    """The type's own fields, as anymail's webhook fills them."""
    detail = event.detail
    if event.kind == "bounce":
        return {"description": f"{detail.get('bounceType')}: {detail.get('bounceSubType')}"}
    if event.kind == "complaint":
        return {"description": detail.get("complaintFeedbackType"),
                "user_agent": detail.get("userAgent")}
    if event.kind == "delivery":
        return {"mta_response": detail.get("smtpResponse")}
    if event.kind == "reject":
        return {"description": detail.get("reason")}
    if event.kind == "open":
        return {"user_agent": detail.get("userAgent")}
    if event.kind == "click":
        return {"user_agent": detail.get("userAgent"), "click_url": detail.get("link")}
    if event.kind == "rendering_failure":
        return {"description": detail.get("errorMessage")}
    if event.kind == "delivery_delay":
        return {"description": detail.get("delayType")}
    return {}


def _per_recipient(event: SESEvent) -> list[dict[str, Any]]:
    """One dict per recipient the event is about: its ``recipient`` (and ``mta_response``
    where SES gives one for each)."""
    detail = event.detail
    listed = {"bounce": "bouncedRecipients", "complaint": "complainedRecipients",
              "delivery_delay": "delayedRecipients"}.get(event.kind or "")
    if listed is not None:
        return [{"recipient": item.get("emailAddress"),
                 **({"mta_response": item.get("diagnosticCode")} if event.kind != "complaint"
                    else {})}
                for item in _dicts(detail.get(listed))]
    if event.kind == "delivery" and isinstance(detail.get("recipients"), list):
        return [{"recipient": r} for r in detail["recipients"] if isinstance(r, str)]
    destination = event.mail.get("destination")
    return [{"recipient": r} for r in destination if isinstance(r, str)] \
        if isinstance(destination, list) else []


def _dicts(items: Any) -> list[dict[str, Any]]:
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _tags_and_metadata(mail: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The ``X-Tag`` values and the ``X-Metadata`` object among the mail's headers."""
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    for header in _dicts(mail.get("headers")):
        name, value = str(header.get("name", "")).lower(), header.get("value")
        if name == "x-tag" and isinstance(value, str):
            tags.append(value)
        elif name == "x-metadata" and isinstance(value, str):
            try:
                found = json.loads(value)
            except (ValueError, RecursionError):
                continue
            metadata = found if isinstance(found, dict) else metadata
    return tags, metadata
