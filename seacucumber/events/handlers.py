"""What a verified SNS message does: a Notification updates status, the suppression list and
sends its signal, once per SNS MessageId; a SubscriptionConfirmation is confirmed.

Seen SNS MessageIds are kept in the database (``SeenNotification``), written in the same
transaction as the event's effects: an event is either applied and recorded, or (an error,
SNS retries) neither. A cache would not give that, and Django's default cache is per process.

An event finds its send's status record by our id, which every send carries as its
``seacucumber-id`` message tag (SES copies it into the event's ``mail.tags``). An event
without it (a send from before the tag, or from another sender on the account) is matched by
SES's MessageId, and can outrun the worker: SES may publish it before the worker has stored
SES's MessageId on the status record. Such an event (tracking on, no record with its MessageId, a
``queued`` record without one for the same sender and recipient, published less than
``AWAIT_SEND_SECONDS`` ago) is not applied: ``AwaitingSend`` makes the view answer 503, and
SNS's retry (20 s later by default) finds the record. Past that grace it is applied anyway,
so no event is ever refused for good over a status record.
"""

from __future__ import annotations

import datetime
import logging
from email.utils import parseaddr
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .. import signals, status
from ..conf import conf
from ..exceptions import AwaitingSend, InvalidNotification, NotAuthentic
from ..models import (
    InboundMail,
    MessageStatus,
    SeenNotification,
    SendEvent,
    Status,
    SuppressedAddress,
    statuses_below,
)
from ..operations import metrics
from ..shared import reputation
from . import inbound, inbound_task, s3, sns, suppression, tracking
from .parse import SESEvent, addresses, event_detail, event_note, event_time, parse_event

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

#: How long after SNS published an event it waits (503, SNS retries) for the worker to store
#: SES's MessageId on the status record. Shorter than SNS's default HTTP retry span (three
#: retries, 20 s apart), so the last retry is applied even if the id never comes.
AWAIT_SEND_SECONDS = 15.0


def handle_notification(message: dict[str, Any]) -> str:
    """Apply one verified Notification; returns what happened ("applied", "duplicate",
    "ignored"). Exceptions from handlers propagate (the view answers 500: SNS retries), and
    ``AwaitingSend`` (503) when the event's send has no SES MessageId on its record yet."""
    try:
        event = parse_event(message["Message"])
    except InvalidNotification as exc:
        logger.warning("SNS notification %s ignored: %s", message["MessageId"], exc)
        return "ignored"
    if event.event_type == "Received":
        return handle_received(message, event.data)
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
        apply_status(event, published=sns.published(message.get("Timestamp")))
        apply_suppression(event)
        apply_reputation(event)
        apply_timeline(event)
        count_event(event)
        send_signal(event, message)  # users', after the package's own records
        tracking.send_tracking(event, message)  # anymail's shape, after the commit
    return "applied"


_STATUS_BY_KIND = {
    "delivery": Status.DELIVERED,
    "bounce": Status.BOUNCED,  # Permanent bounces only: see _new_status
    "complaint": Status.COMPLAINED,
    "reject": Status.FAILED,
    "rendering_failure": Status.FAILED,
}
#: Events noted in ``last_error`` without a status of their own: a delay, a soft bounce.
_NOTED_KINDS = {"delivery_delay", "bounce"}


def _new_status(event: SESEvent) -> str | None:
    """The status the event moves its send to: a bounce only when it is Permanent (a
    Transient or Undetermined bounce is a soft one: SES may still deliver)."""
    if event.kind == "bounce" and event.detail.get("bounceType") != "Permanent":
        return None
    return _STATUS_BY_KIND.get(event.kind or "")


def apply_status(event: SESEvent, published: datetime.datetime | None = None) -> None:
    """Move the send's status record (matched by our id's tag, else by SES MessageId) on, if
    tracking is on.

    Soft bounces and delivery delays only note their diagnostic in ``last_error`` (of a record
    not yet bounced or complained): a later Delivery still makes it ``delivered``. Raises
    ``AwaitingSend`` when an event without our id finds no record with its MessageId but one
    is still waiting for it."""
    ses_message_id, message_id = event.ses_message_id, event.message_id
    if not status.enabled() or not (ses_message_id or message_id):
        return
    where = ({"message_id": message_id} if message_id
             else {"ses_message_id": ses_message_id or ""})
    new = _new_status(event)
    note = event_note(event)[:2000]
    if new is not None:
        fields: dict[str, Any] = {} if new is Status.DELIVERED else {"last_error": note}
        if message_id and ses_message_id:  # the event may come before the worker's update
            fields["ses_message_id"] = ses_message_id
        moved = status.advance(new, where, **fields)
    elif event.kind in _NOTED_KINDS:
        moved = MessageStatus.objects.filter(
            **where, status__in=statuses_below(Status.BOUNCED)
        ).update(last_error=note, updated_at=timezone.now())
    else:
        return
    if moved or MessageStatus.objects.filter(**where).exists():
        return  # applied, or the record already has the same or newer news
    if not message_id and _awaiting_send(event, published):
        raise AwaitingSend(f"SES {event.event_type} for {ses_message_id}: its send has no "
                           "SES MessageId on its status record yet")
    logger.info("SES %s for %s: no status record moved", event.event_type,
                message_id or ses_message_id)


def _awaiting_send(event: SESEvent, published: datetime.datetime | None) -> bool:
    """Whether the event is fresh (published less than ``AWAIT_SEND_SECONDS`` ago; never when
    its time is unknown or far off this clock) and a ``queued`` record without an SES
    MessageId has its sender (SES's ``mail.source``) and one of its recipients: the worker
    has sent it and is about to store the id."""
    if published is None:
        return False
    age = (timezone.now() - published).total_seconds()
    if not -AWAIT_SEND_SECONDS <= age < AWAIT_SEND_SECONDS:
        return False
    source = event.mail.get("source")
    sender = parseaddr(source)[1].strip() if isinstance(source, str) else ""
    destination = event.mail.get("destination")
    recipients = [parseaddr(d)[1].strip() for d in destination or () if isinstance(d, str)
                  ] if isinstance(destination, list) else []
    recipient = next((r for r in recipients if "@" in r), None)
    if "@" not in sender or recipient is None:
        return False
    return MessageStatus.objects.filter(
        Q(ses_message_id__isnull=True) | Q(ses_message_id=""),
        Q(recipients__iexact=recipient) | Q(recipients__istartswith=f"{recipient}\n")
        | Q(recipients__iendswith=f"\n{recipient}") | Q(recipients__icontains=f"\n{recipient}\n"),
        status=Status.QUEUED, sender__iexact=sender,
    ).exists()


def apply_suppression(event: SESEvent) -> None:
    """Add permanently bounced / complaining addresses, as the settings ask."""
    if event.kind == "bounce" and conf.SEACUCUMBER_SUPPRESS_ON_BOUNCE:
        if event.detail.get("bounceType") == "Permanent":
            found = addresses(event.detail.get("bouncedRecipients"))
            suppression.add(found, SuppressedAddress.Reason.BOUNCE, event_note(event))
    elif event.kind == "complaint" and conf.SEACUCUMBER_SUPPRESS_ON_COMPLAINT:
        found = addresses(event.detail.get("complainedRecipients"))
        suppression.add(found, SuppressedAddress.Reason.COMPLAINT, event_note(event))


def apply_reputation(event: SESEvent) -> None:
    """Count a permanent bounce or a complaint for the reputation guard, per recipient as
    SES counts, under the lane and configuration set its tags name (no lane tag:
    transactional). Counted once the webhook's transaction commits (a rollback means SNS
    sends the event again); a Redis error loses the count, never the event."""
    if event.kind == "bounce" and event.detail.get("bounceType") == "Permanent":
        field, listed = "bounced", event.detail.get("bouncedRecipients")
    elif event.kind == "complaint":
        field, listed = "complained", event.detail.get("complainedRecipients")
    else:
        return
    if not reputation.enabled():
        return
    recipients = max(1, len(listed)) if isinstance(listed, list) else 1
    lane = event.tag(reputation.LANE_TAG) or reputation.default_lane()
    configuration_set = event.tag(reputation.CONFIGURATION_SET_TAG)

    def record() -> None:
        try:
            reputation.record_event(field, lane, configuration_set, recipients)
        except Exception as exc:  # noqa: BLE001 - Redis down or unset: the event stands
            logger.warning("SES %s for %s: reputation guard not counted or judged (%r)",
                           event.event_type, event.ses_message_id, exc)

    transaction.on_commit(record)


def apply_timeline(event: SESEvent) -> None:
    """Keep the event as a step of its send's timeline (the dashboard's): tracking on, SES
    MessageId known, a known kind but a subscription."""
    message_id = event.ses_message_id
    if not status.enabled() or message_id is None or event.kind in (None, "subscription"):
        return
    SendEvent.objects.create(ses_message_id=message_id[:128], kind=event.event_type[:32],
                             at=event_time(event.detail),
                             detail=event_detail(event.event_type, event.detail)[:2000])


def count_event(event: SESEvent) -> None:
    """Count the event in the metrics once the webhook's transaction commits (a rollback
    means SNS sends it again)."""
    if event.kind not in (None, "subscription"):
        labels = metrics.event_labels(event.event_type, event.mail, event.detail)
        transaction.on_commit(lambda: metrics.count("ses_events", *labels))


def send_signal(event: SESEvent, message: dict[str, Any]) -> None:
    """Send the event's signal with the parsed objects and the whole SNS message (events of
    a known kind only)."""
    if event.kind is None:
        return
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
    an SNS URL confirming this very topic. Raises ``InvalidNotification`` / ``SNSUnavailable``."""
    url = sns.check_sns_url(message["SubscribeURL"], "SubscribeURL")
    query = parse_qs(urlsplit(url).query)
    if query.get("Action") != ["ConfirmSubscription"] or query.get("TopicArn") != [
        message["TopicArn"]
    ]:
        raise NotAuthentic("SubscribeURL does not confirm this message's topic")
    if not conf.SEACUCUMBER_CONFIRM_SUBSCRIPTIONS:
        logger.warning("SNS subscription to %s not confirmed (SEACUCUMBER_CONFIRM_SUBSCRIPTIONS"
                       " is off): confirm it with %s", message["TopicArn"], url)
        return "not confirmed"
    sns.fetch_url(url, 64 * 1024)
    logger.info("SNS subscription to %s confirmed", message["TopicArn"])
    return "confirmed"


def handle_received(message: dict[str, Any], data: dict[str, Any]) -> str:
    """Take in one verified receipt notification without reading its mail: record it
    (``InboundMail``) and queue the worker's task that parses it (``inbound_task``) once the
    record is committed. Returns what happened: "queued", "refused" (an S3 location not
    allowed: recorded, never fetched), "duplicate", "dropped", "setup notification".

    ``InvalidNotification`` (400) when it carries no mail at all; an error queueing the task
    propagates (SNS retries, and the redelivery queues the pending record again)."""
    event = inbound.parse_received(data, message)
    where = event.whereabouts
    if event.is_setup_notification:
        logger.info("SES receipt rule setup notification on %s: nothing to do",
                    message["TopicArn"])
        return "setup notification"
    failed = [name for name in ("spam", "virus")
              if event.verdict(name) == "FAIL" and _drops(name)]
    if failed:
        logger.warning("received mail %s from %s dropped: %s verdict FAIL",
                       where, event.mail.get("source"), " and ".join(failed))
        return "dropped"
    if event.action_type == "S3":
        refused = s3.refusal(*event.s3_location)
    else:
        event.inline_content()  # there, and base64 if it says so (linear, at most 256 KB)
        refused = None
    source = event.mail.get("source")
    with transaction.atomic():
        try:
            with transaction.atomic():  # either id seen before (one may have been pruned)
                SeenNotification.objects.create(
                    sns_message_id=message["MessageId"], topic_arn=message["TopicArn"][:256])
                record = InboundMail.objects.create(
                    sns_message_id=message["MessageId"], topic_arn=message["TopicArn"][:256],
                    ses_message_id=event.ses_message_id[:128], action_type=event.action_type,
                    source=source[:320] if isinstance(source, str) else "",
                    notification=message["Message"],
                    state=InboundMail.State.REFUSED if refused else InboundMail.State.PENDING,
                    reason=refused or "")
        except IntegrityError:
            _queue_again_if_pending(message["MessageId"])
            return "duplicate"
        if refused is None:
            transaction.on_commit(partial(inbound_task.publish, record.pk))
    if refused:
        logger.warning("received mail %s (SNS %s) refused unread: %s", where,
                       message["MessageId"], refused)
        return "refused"
    logger.info("received mail %s from %s recorded, queued to be taken in", where, source)
    return "queued"


def _queue_again_if_pending(sns_message_id: str) -> None:
    """SNS redelivered a notification taken in: if its record still waits for a worker
    (queueing it failed, or the answer was lost), queue it again; the task is idempotent."""
    logger.info("SNS notification %s already taken in", sns_message_id)
    pending = InboundMail.objects.filter(
        sns_message_id=sns_message_id, state=InboundMail.State.PENDING).values_list(
        "pk", flat=True).first()
    if pending is not None:
        transaction.on_commit(partial(inbound_task.publish, pending))


def _drops(verdict: str) -> bool:
    return bool(conf.SEACUCUMBER_INBOUND_DROP_SPAM if verdict == "spam"
                else conf.SEACUCUMBER_INBOUND_DROP_VIRUS)

