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

A record whose task was lost (the broker failed as the task or one of its retries was
published, or dropped it) is never left pending unseen: every worker looks each
``SWEEP_EVERY`` seconds for records pending longer than ``STUCK_AFTER`` and queues them again
(``requeue_stuck``), logging each at WARNING; the task being idempotent, a record queued
twice is taken in once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Any

from celery import current_app, shared_task
from django.db import close_old_connections, transaction
from django.utils import timezone

from .. import retry, signals
from ..conf import lane as conf_lane
from ..exceptions import InvalidNotification, MailObjectGone
from ..models import InboundMail
from ..operations import metrics
from ..shared import workers
from . import inbound, s3

logger = logging.getLogger(__name__)

TASK_NAME = "seacucumber.receive_mail"
#: Runs of the task for one mail while S3 or a receiver fails; then the record is failed.
MAX_ATTEMPTS = 10
#: Seconds a record may stay pending, untouched, before its task counts as lost: well past
#: the longest wait of a retry (``SEACUCUMBER_RETRY_MAX_DELAY``, 300 s by default), which
#: touches the record each time.
STUCK_AFTER = 900.0
#: Seconds between a worker's looks for records whose task was lost.
SWEEP_EVERY = 60.0


def queue() -> str:
    """Where the task goes: its own route in Celery's ``task_routes`` if it has one, else
    the queue of the first lane's mail (``workers.default_queue``), which every Sea Cucumber
    worker consumes."""
    routed = current_app.amqp.router.route({}, TASK_NAME, args=(), kwargs={}).get("queue")
    own = getattr(routed, "name", None)
    if own and own != current_app.conf.task_default_queue:
        return str(own)
    return conf_lane().queue or workers.default_queue()


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
        _touch(record_id)  # being retried: not a record whose task was lost
        raise self.retry(countdown=delay, exc=exc) from None


def _touch(record_id: int) -> None:
    try:
        InboundMail.objects.filter(pk=record_id, state=InboundMail.State.PENDING).update(
            updated_at=timezone.now())
    except Exception as exc:  # noqa: BLE001 - the database may be what fails: retried anyway
        logger.debug("received mail record %s not touched (%r)", record_id, exc)


def requeue_stuck(limit: int = 500) -> int:
    """Queue again the task of each record pending, untouched, for over ``STUCK_AFTER``
    seconds (its task was lost); returns how many. Each is touched first, so the workers
    sweeping side by side queue it about once per ``STUCK_AFTER``."""
    cutoff = timezone.now() - dt.timedelta(seconds=STUCK_AFTER)
    stuck = list(InboundMail.objects.filter(state=InboundMail.State.PENDING,
                                            updated_at__lt=cutoff)
                 .order_by("updated_at").values_list("pk", "sns_message_id")[:limit])
    for record_id, sns_message_id in stuck:
        if not InboundMail.objects.filter(pk=record_id, state=InboundMail.State.PENDING,
                                          updated_at__lt=cutoff).update(
                updated_at=timezone.now()):
            continue  # another worker took it meanwhile
        logger.warning("received mail (record %s, SNS %s) pending for over %.0fs: its task "
                       "was lost; queued again", record_id, sns_message_id, STUCK_AFTER)
        publish(record_id)
    return len(stuck)


class StuckSweeper(threading.Thread):
    """A worker's look, every ``SWEEP_EVERY`` seconds, for records whose task was lost."""

    def __init__(self) -> None:
        super().__init__(name="seacucumber-inbound-sweeper", daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(SWEEP_EVERY):
            close_old_connections()  # a thread of its own: Django's request cycle is not here
            try:
                requeue_stuck()
            except Exception as exc:  # noqa: BLE001 - database or broker down: next round
                logger.warning("received mail not swept for lost tasks (%r)", exc)
            finally:
                close_old_connections()


_sweeper: StuckSweeper | None = None


def start_sweeper(**_: Any) -> None:
    """``worker_ready``: start this worker's sweep for records whose task was lost."""
    global _sweeper
    if _sweeper is None:
        _sweeper = StuckSweeper()
        _sweeper.start()


def stop_sweeper(**_: Any) -> None:
    """``worker_shutdown``: stop it."""
    global _sweeper
    if _sweeper is not None:
        _sweeper.stopping.set()
        _sweeper = None


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
        transaction.on_commit(lambda: metrics.count("ses_events", "Received", "", ""))
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
