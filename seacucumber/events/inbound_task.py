"""Received mail taken in off the request path (docs/inbound.rst).

Anyone may mail the inbound address, and parsing a mail costs what its sender chooses: the
webhook only verifies a receipt notification, records it (``InboundMail``, pending) and
answers. This task, in a worker, fetches the mail (S3) or reads it from the notification,
parses it within ``inbound.Limits`` and sends ``inbound_received``; the record then says what
came of it: received, refused (a limit, with the reason), gone (its S3 object), or failed
(S3 or a receiver kept failing). Its payload is JSON: the record's id.

The task is idempotent: the record, locked, moves from pending once, in the transaction the
receivers run in. A receiver that raises rolls that back and the task retries, as it does
while S3 fails, with backoff (``retry.backoff_delay``), ``MAX_ATTEMPTS`` in all.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from celery import current_app, shared_task
from django.db import transaction
from django.utils import timezone

from .. import retry, signals
from ..conf import conf
from ..conf import lane as conf_lane
from ..exceptions import InvalidNotification, MailObjectGone
from ..models import InboundMail
from ..operations import metrics
from . import inbound, s3

logger = logging.getLogger(__name__)

TASK_NAME = "seacucumber.receive_mail"
#: The send task's name (``seacucumber.tasks``, a layer above): its routing is the fallback.
SEND_TASK_NAME = "seacucumber.send_email"
#: Runs of the task for one mail while S3 or a receiver fails; then the record is failed.
MAX_ATTEMPTS = 10


def queue() -> str | None:
    """Where the task goes: its own route in Celery's ``task_routes`` if it has one, else
    the queue of the first lane's mail, which every Sea Cucumber worker consumes."""
    return (_explicit_route(TASK_NAME) or conf_lane().queue or conf.SEACUCUMBER_QUEUE
            or _explicit_route(SEND_TASK_NAME))


def _explicit_route(name: str) -> str | None:
    routed = current_app.amqp.router.route({}, name, args=(), kwargs={}).get("queue")
    found = getattr(routed, "name", None)
    return found if found and found != current_app.conf.task_default_queue else None


def publish(record_id: int) -> None:
    """Queue the task for one recorded notification (kombu's errors propagate)."""
    receive_mail.apply_async(args=[record_id], queue=queue())


@shared_task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, max_retries=None)
def receive_mail(self: Any, record_id: int) -> str:
    """Take in the mail of record ``record_id``; returns its state."""
    try:
        return take_in(record_id)
    except Exception as exc:  # noqa: BLE001 - S3, a receiver or the database failed: retried
        attempts = int(self.request.retries) + 1
        if attempts >= MAX_ATTEMPTS:
            logger.error("received mail (record %s) failed after %d attempts: %r",
                         record_id, attempts, exc)
            _settle(record_id, InboundMail.State.FAILED,
                    f"failed after {attempts} attempts: {exc!r}")
            return str(InboundMail.State.FAILED)
        delay = retry.backoff_delay(attempts - 1)
        logger.warning("received mail (record %s) not taken in (%r): retry in %.1fs",
                       record_id, exc, delay)
        raise self.retry(countdown=delay, exc=exc) from None


def take_in(record_id: int) -> str:
    """Fetch, parse and signal the mail of one record still pending; returns its state
    (the record's, when it was settled already). Exceptions mean: try again."""
    record = InboundMail.objects.filter(pk=record_id).first()
    if record is None:
        logger.warning("received mail record %s not found: nothing to take in", record_id)
        return "missing"
    if record.state != InboundMail.State.PENDING:
        return str(record.state)
    event = inbound.parse_received(json.loads(record.notification), {
        "MessageId": record.sns_message_id, "TopicArn": record.topic_arn})
    where = event.whereabouts
    try:
        if event.action_type == "S3":
            mail = s3.fetch_message(*event.s3_location, limits=inbound.Limits.from_settings())
        else:
            mail = inbound.parse_bytes(event.inline_content(), inbound.Limits.from_settings())
    except MailObjectGone as exc:
        logger.error("received mail %s (SNS %s) not taken in, its object is gone: %s",
                     where, record.sns_message_id, exc)
        return _settle(record.pk, InboundMail.State.GONE, str(exc))
    except InvalidNotification as exc:  # a limit passed, a bucket not allowed, no mail
        logger.warning("received mail %s (SNS %s) from %s refused: %s", where,
                       record.sns_message_id, record.source, exc)
        return _settle(record.pk, InboundMail.State.REFUSED, str(exc))
    with transaction.atomic():
        locked = InboundMail.objects.select_for_update().filter(
            pk=record.pk, state=InboundMail.State.PENDING).first()
        if locked is None:
            return "duplicate"  # another run took it in meanwhile
        # counted as SES's receipt notification type, once the transaction commits
        transaction.on_commit(lambda: metrics.count("ses_events", "Received"))
        signals.inbound_received.send(sender=inbound.InboundMessage,
                                      message=inbound.annotate(mail, event),
                                      event=event.without_content())
        locked.state, locked.reason = InboundMail.State.RECEIVED, ""
        locked.save(update_fields=["state", "reason", "updated_at"])
    logger.info("received mail %s from %s taken in", where, record.source)
    return str(InboundMail.State.RECEIVED)


def _settle(record_id: int, state: str, reason: str) -> str:
    """Move a pending record to ``state`` with ``reason``; returns the state."""
    InboundMail.objects.filter(pk=record_id, state=InboundMail.State.PENDING).update(
        state=state, reason=reason, updated_at=timezone.now())
    return str(state)
