"""The Django email backend: check each message, serialise it, enqueue a Celery task.

    EMAIL_BACKEND = "seacucumber.backend.SESBackend"

``send_messages`` never talks to SES. It checks every message first (``payload.build_sends``
raises ``InvalidMessage`` for anything SES would refuse), so a bad message in a batch is refused
before any of the batch is queued; then it enqueues one ``seacucumber.send_email`` task per
send of at most 50 recipients. With ``fail_silently=True`` bad messages are skipped and a broker
failure stops the batch; the return value is always the count of messages really queued.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from itertools import chain

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from kombu.exceptions import KombuError

from . import status
from .conf import conf
from .exceptions import EnqueueError, InvalidMessage
from .payload import OutboundSend, build_sends
from .tasks import send_email

logger = logging.getLogger(__name__)


def enqueue(sends: Sequence[OutboundSend]) -> None:
    """Put one send task per ``OutboundSend`` on the broker; ``EnqueueError`` if it can't."""
    timeout = float(conf.SEACUCUMBER_ENQUEUE_TIMEOUT)
    retry_policy = {
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": timeout / 6,
        "interval_max": timeout / 3,
    }
    options = {"queue": conf.SEACUCUMBER_QUEUE} if conf.SEACUCUMBER_QUEUE else {}
    for outbound in sends:
        try:
            send_email.apply_async(
                args=[outbound.to_json()],
                # what logs and monitors (Flower) show of the task: our id, not the whole
                # message (it saves Celery's saferepr of the payload, too)
                argsrepr=f"[<message {outbound.message_id}>]",
                kwargsrepr="{}",
                serializer="json",
                retry=True,
                retry_policy=retry_policy,
                **options,
            )
        except (KombuError, OSError) as exc:
            raise EnqueueError(
                f"could not queue message {outbound.message_id} on the Celery broker: {exc}"
            ) from exc


class SESBackend(BaseEmailBackend):
    """Queues each message for a Celery worker to send through Amazon SES."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Queue ``email_messages``; returns how many were queued (messages, not sends)."""
        checked: list[list[OutboundSend]] = []
        accepted: list[EmailMessage] = []
        for message in email_messages or ():
            try:
                sends = build_sends(message)
            except InvalidMessage as exc:
                if not self.fail_silently:
                    raise
                logger.warning("message refused: %s", exc)
                continue
            if sends:
                checked.append(sends)
                accepted.append(message)
        status.record_queued(zip(accepted, checked, strict=True))  # one INSERT, if tracking
        if conf.SEACUCUMBER_ENQUEUE_ON_COMMIT:
            for sends in checked:
                transaction.on_commit(partial(enqueue, sends))
            return len(checked)
        queued = 0
        for sends in checked:
            try:
                enqueue(sends)
            except EnqueueError as exc:
                status.record_unqueued(chain.from_iterable(checked[queued:]), str(exc))
                if not self.fail_silently:
                    exc.queued = queued
                    raise
                logger.error("%s (%d message(s) queued before)", exc, queued)
                break
            queued += 1
        return queued
