"""Reading what the webhook receives: the SNS envelope, then the SES event inside it.

``parse_envelope`` checks the SNS JSON (types and required keys) before anything else looks
at it. ``parse_event`` reads the SES event from a Notification's ``Message``, in either style:
``notificationType`` (identity notifications) or ``eventType`` (configuration set event
publishing). Unknown event types and unknown fields are kept, not refused.

Both read JSON with ``read_json``: every way a text can fail to be JSON (bad syntax, bad
UTF-8, a number too long, nesting deep enough to exhaust Python's recursion limit) is one
``InvalidNotification``, answered 400, never an exception that reaches the log as a
traceback.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..exceptions import InvalidNotification

TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_REQUIRED = {
    "Notification": ("Type", "MessageId", "TopicArn", "Message", "Timestamp"),
    "SubscriptionConfirmation": (
        "Type", "MessageId", "TopicArn", "Message", "Timestamp", "Token", "SubscribeURL",
    ),
    "UnsubscribeConfirmation": ("Type", "MessageId", "TopicArn", "Message", "Timestamp"),
}

#: SES event type -> (our name, the key of its type-specific object).
EVENT_KINDS: dict[str, tuple[str, str]] = {
    "Bounce": ("bounce", "bounce"),
    "Complaint": ("complaint", "complaint"),
    "Delivery": ("delivery", "delivery"),
    "Send": ("send", "send"),
    "Reject": ("reject", "reject"),
    "Open": ("open", "open"),
    "Click": ("click", "click"),
    "Rendering Failure": ("rendering_failure", "failure"),
    "RenderingFailure": ("rendering_failure", "failure"),
    "DeliveryDelay": ("delivery_delay", "deliveryDelay"),
    "Subscription": ("subscription", "subscription"),
}


def read_json(text: str | bytes, what: str) -> dict[str, Any]:
    """The JSON object in ``text``; ``InvalidNotification`` naming ``what`` for anything else.

    ``json`` raises ``RecursionError`` (not ``ValueError``) for deeply nested arrays or
    objects (``"[" * 200000``): caught here with the rest, so no nesting depth is a 500."""
    try:
        value = json.loads(text)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        raise InvalidNotification(f"{what} is not JSON") from None
    except RecursionError:
        raise InvalidNotification(f"{what} is JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidNotification(f"{what} is not a JSON object")
    return value


def parse_envelope(body: bytes) -> dict[str, Any]:
    """The SNS message in ``body``; ``InvalidNotification`` for anything that is not one."""
    message = read_json(body, "body")
    kind = message.get("Type")
    if kind not in TYPES:
        raise InvalidNotification(f"Type {kind!r} is not an SNS message type")
    for key in _REQUIRED[kind]:
        value = message.get(key)
        if not isinstance(value, str) or (not value and key != "Message"):
            raise InvalidNotification(f"{key} is missing or not a string")
    if "Subject" in message and not isinstance(message["Subject"], str):
        raise InvalidNotification("Subject is not a string")
    return message


@dataclass(frozen=True)
class SESEvent:
    """One SES event: its type as SES spells it, our name for it (None if unknown), the mail
    object, the type-specific object, and the decoded event."""

    event_type: str
    kind: str | None
    mail: dict[str, Any]
    detail: dict[str, Any]
    data: dict[str, Any]

    @property
    def ses_message_id(self) -> str | None:
        value = self.mail.get("messageId")
        return value if isinstance(value, str) and value else None

    def tag(self, name: str) -> str | None:
        """The value of the send's message tag ``name`` (SES lists each tag's values in
        ``mail.tags``), or None."""
        tags = self.mail.get("tags")
        values = tags.get(name) if isinstance(tags, dict) else None
        value = values[0] if isinstance(values, list) and values else None
        return value if isinstance(value, str) and value else None

    @property
    def message_id(self) -> str | None:
        """Our id of the send, from its ``seacucumber-id`` tag (sends since lanes carry it)."""
        return self.tag("seacucumber-id")


def parse_event(text: str) -> SESEvent:
    """The SES event in a Notification's ``Message``; ``InvalidNotification`` when it is not one."""
    data = read_json(text, "Message")
    event_type = data.get("eventType", data.get("notificationType"))
    if not isinstance(event_type, str) or not event_type:
        raise InvalidNotification("Message has no eventType or notificationType")
    kind, key = EVENT_KINDS.get(event_type, (None, ""))
    mail = data.get("mail")
    detail = data.get(key)
    return SESEvent(
        event_type=event_type,
        kind=kind,
        mail=mail if isinstance(mail, dict) else {},
        detail=detail if isinstance(detail, dict) else {},
        data=data,
    )


def addresses(items: Any) -> list[str]:
    """The lowercased ``emailAddress`` of each recipient object in ``items`` (bounced or
    complained recipients), skipping anything malformed."""
    from email.utils import parseaddr

    found = []
    for item in items if isinstance(items, list) else ():
        value = item.get("emailAddress") if isinstance(item, dict) else None
        if isinstance(value, str):
            bare = parseaddr(value)[1].strip().lower()
            if "@" in bare:
                found.append(bare)
    return found


def event_time(event_obj: dict[str, Any]) -> dt.datetime:
    """When SES stamped the event (its ``timestamp``), else now."""
    stamp = event_obj.get("timestamp") if isinstance(event_obj, dict) else None
    parsed = parse_datetime(stamp) if isinstance(stamp, str) else None
    return parsed if parsed is not None and parsed.tzinfo is not None else timezone.now()


#: The field holding SES's own words for an event of each kind that has one (a bounce's and
#: a complaint's are read by ``event_detail`` itself).
_WORDS_FIELD = {"delivery": "smtpResponse", "delivery_delay": "delayType", "reject": "reason",
                "rendering_failure": "errorMessage"}
#: How ``event_note`` names the kinds it notes by their words.
_NOTE_LABEL = {"reject": "Reject", "rendering_failure": "Rendering Failure",
               "delivery_delay": "DeliveryDelay"}


def event_detail(event_type: str, event_obj: dict[str, Any]) -> str:
    """SES's own words for an event: bounce type and diagnostic, complaint feedback type,
    the SMTP answer of a delivery, a reject's reason, a delay's type."""
    obj = event_obj if isinstance(event_obj, dict) else {}
    kind = EVENT_KINDS.get(event_type, (None, ""))[0]
    if kind == "bounce":
        diagnostic = _first_bounced(obj).get("diagnosticCode")
        return f"{_bounce_type(obj)}{': ' + str(diagnostic) if diagnostic else ''}"
    if kind == "complaint":
        return f"feedback: {obj.get('complaintFeedbackType', 'unspecified')}"
    field = _WORDS_FIELD.get(kind or "")
    return str(obj.get(field, "")) if field else ""


def event_note(event: SESEvent) -> str:
    """The event in a line, its type first, as a status record's ``last_error`` and a
    suppression's ``detail`` keep it (a bounce names the address when SES gives no
    diagnostic; a complaint, its feedback type)."""
    if event.kind == "bounce":
        first = _first_bounced(event.detail)
        return (f"Bounce {_bounce_type(event.detail)}: "
                f"{first.get('diagnosticCode') or first.get('emailAddress') or ''}")
    if event.kind == "complaint":
        return f"Complaint: {event.detail.get('complaintFeedbackType', 'unspecified')}"
    label = _NOTE_LABEL.get(event.kind or "")
    return f"{label}: {event_detail(event.event_type, event.detail)}" if label else \
        event.event_type


def _first_bounced(obj: dict[str, Any]) -> dict[str, Any]:
    first = (obj.get("bouncedRecipients") or [{}])[0]
    return first if isinstance(first, dict) else {}


def _bounce_type(obj: dict[str, Any]) -> str:
    return f"{obj.get('bounceType', '?')}/{obj.get('bounceSubType', '?')}"
