"""What a verified SNS message does: a Notification updates status, the suppression list and
sends its signal, once per SNS MessageId; a SubscriptionConfirmation is confirmed.

Seen SNS MessageIds are kept in the database (``SeenNotification``), written in the same
transaction as the event's effects: an event is either applied and recorded, or (an error,
SNS retries) neither. A cache would not give that, and Django's default cache is per process.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.db import IntegrityError, transaction

from .. import signals, status, suppression
from ..conf import conf
from ..models import SeenNotification, Status, SuppressedAddress
from . import sns
from .parse import SESEvent, addresses, parse_event

logger = logging.getLogger(__name__)

SIGNALS = {
    "bounce": signals.bounce_received,
    "complaint": signals.complaint_received,
    "delivery": signals.delivery_received,
    "send": signals.send_received,
    "open": signals.open_received,
    "click": signals.click_received,
    "delivery_delay": signals.delivery_delay_received,
    "reject": signals.reject_received,
    "rendering_failure": signals.rendering_failure_received,
    "subscription": signals.subscription_received,
}
#: django-ses's names for the type-specific object, passed alongside ``event_obj``.
_DJANGO_SES_NAMES = {"bounce", "complaint", "delivery", "send", "open", "click"}


def handle_notification(message: dict[str, Any]) -> str:
    """Apply one verified Notification; returns what happened ("applied", "duplicate",
    "ignored"). Exceptions from handlers propagate (the view answers 500: SNS retries)."""
    try:
        event = parse_event(message["Message"])
    except sns.InvalidMessage as exc:
        logger.warning("SNS notification %s ignored: %s", message["MessageId"], exc)
        return "ignored"
    with transaction.atomic():
        try:
            with transaction.atomic():
                SeenNotification.objects.create(
                    sns_message_id=message["MessageId"], topic_arn=message["TopicArn"][:256]
                )
        except IntegrityError:
            logger.info("SNS notification %s already applied", message["MessageId"])
            return "duplicate"
        if event.kind is None:
            logger.info("SES event type %r not known: ignored", event.event_type)
            return "ignored"
        apply_status(event)
        apply_suppression(event)
        send_signal(event, message)
    return "applied"


def _diagnostic(event: SESEvent) -> str:
    detail = event.detail
    if event.kind == "bounce":
        recipients = detail.get("bouncedRecipients") or [{}]
        first = recipients[0] if isinstance(recipients[0], dict) else {}
        return (f"Bounce {detail.get('bounceType', '?')}/{detail.get('bounceSubType', '?')}: "
                f"{first.get('diagnosticCode') or first.get('emailAddress') or ''}")
    if event.kind == "complaint":
        return f"Complaint: {detail.get('complaintFeedbackType', 'unspecified')}"
    if event.kind == "reject":
        return f"Reject: {detail.get('reason', '')}"
    if event.kind == "rendering_failure":
        return f"Rendering Failure: {detail.get('errorMessage', '')}"
    if event.kind == "delivery_delay":
        return f"DeliveryDelay: {detail.get('delayType', '')}"
    return event.event_type


_STATUS_BY_KIND = {
    "delivery": Status.DELIVERED,
    "bounce": Status.BOUNCED,
    "complaint": Status.COMPLAINED,
    "reject": Status.FAILED,
    "rendering_failure": Status.FAILED,
}


def apply_status(event: SESEvent) -> None:
    """Move the send's status record (matched by SES MessageId) on, if tracking is on."""
    ses_message_id = event.ses_message_id
    if not status.enabled() or not ses_message_id:
        return
    new = _STATUS_BY_KIND.get(event.kind or "")
    note = _diagnostic(event)[:2000]
    if new is None:
        if event.kind == "delivery_delay":
            from ..models import MessageStatus

            MessageStatus.objects.filter(ses_message_id=ses_message_id).update(last_error=note)
        return
    fields = {} if new is Status.DELIVERED else {"last_error": note}
    if not status.advance(new, {"ses_message_id": ses_message_id}, **fields):
        logger.info("SES %s for %s: no status record moved", event.event_type, ses_message_id)


def apply_suppression(event: SESEvent) -> None:
    """Add permanently bounced / complaining addresses, as the settings ask."""
    if event.kind == "bounce" and conf.SEACUCUMBER_SUPPRESS_ON_BOUNCE:
        if event.detail.get("bounceType") == "Permanent":
            found = addresses(event.detail.get("bouncedRecipients"))
            suppression.add(found, SuppressedAddress.Reason.BOUNCE, _diagnostic(event))
    elif event.kind == "complaint" and conf.SEACUCUMBER_SUPPRESS_ON_COMPLAINT:
        found = addresses(event.detail.get("complainedRecipients"))
        suppression.add(found, SuppressedAddress.Reason.COMPLAINT, _diagnostic(event))


def send_signal(event: SESEvent, message: dict[str, Any]) -> None:
    """Send the event's signal with the parsed objects and the whole SNS message."""
    extra = {f"{event.kind}_obj": event.detail} if event.kind in _DJANGO_SES_NAMES else {}
    SIGNALS[event.kind].send(
        sender=SESEvent,
        mail_obj=event.mail,
        event_obj=event.detail,
        raw_message=message,
        event_type=event.event_type,
        **extra,
    )


def confirm_subscription(message: dict[str, Any]) -> str:
    """Confirm a verified SubscriptionConfirmation by GETting its SubscribeURL, once that is
    an SNS URL confirming this very topic. Raises ``sns.InvalidMessage`` / ``SNSUnavailable``."""
    url = sns.check_sns_url(message["SubscribeURL"], "SubscribeURL")
    query = parse_qs(urlsplit(url).query)
    if query.get("Action") != ["ConfirmSubscription"] or query.get("TopicArn") != [
        message["TopicArn"]
    ]:
        raise sns.NotAuthentic("SubscribeURL does not confirm this message's topic")
    if not conf.SEACUCUMBER_CONFIRM_SUBSCRIPTIONS:
        logger.warning("SNS subscription to %s not confirmed (SEACUCUMBER_CONFIRM_SUBSCRIPTIONS"
                       " is off): confirm it with %s", message["TopicArn"], url)
        return "not confirmed"
    sns.fetch_url(url, 64 * 1024)
    logger.info("SNS subscription to %s confirmed", message["TopicArn"])
    return "confirmed"
