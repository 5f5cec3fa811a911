"""The send task, and the one place that puts it on the broker.

Publishing: ``enqueue`` (from the backend) and ``publish`` (also the outbox's sweeper's way
back onto the broker) put ``seacucumber.send_email`` tasks on the broker, each task id our
message id; ``routed_queue`` names the queue Celery's routing gives them.

The task: one ``OutboundSend`` payload in, one SES send out. Read the JSON payload -> drop
(or redirect) recipients not on the staging allowlist (``events.allowlist``) -> drop
suppressed recipients (``events.suppression``) -> claim the send in the send log
(``shared.sendlog``: return at once if SES has it already) -> take the message's recipients
from the account's shared rate (``shared.ratelimit.admit``) -> DKIM-sign -> send through
``ses.send`` -> on error, ``ses.errors.classify`` decides: throttling (which also slows the
shared rate) and transient errors retry with backoff (``retry.backoff_delay``) until the
message's lifetime ends (so do retries for a shared-state Redis outage and for a send another
attempt holds); a spent daily quota holds every send, for at most one quota window (24 h)
past the lifetime; permanent errors fail at once. The task's result is SES's MessageId. The
task is acknowledged only once the send is settled (``acks_late``), so a worker killed
mid-task loses nothing: the broker hands the task to another worker. ``SendTask`` keeps the
outbox (``shared.outbox``) in step with each attempt, for the one task a Redis broker can
lose: the one a worker was taking off the queue as it died.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from celery import Task, current_app, shared_task
from celery.signals import worker_ready, worker_shutdown
from django.core.exceptions import ImproperlyConfigured
from kombu.exceptions import KombuError

from . import dkim, retry, signals
from .conf import conf
from .events import allowlist, suppression
from .exceptions import (
    EnqueueError,
    MalformedPayload,
    PermanentSendError,
    SendLogUnavailable,
    SigningError,
    TransientSendError,
)
from .payload import OutboundSend
from .ses.errors import Outcome, classify
from .ses.send import send
from .shared import metrics, outbox, ratelimit, sendlog, sweeper, usage

logger = logging.getLogger(__name__)

TASK_NAME = "seacucumber.send_email"


def fail(outbound: OutboundSend | None, message_id: str, code: str, reason: str) -> None:
    """Record a message as failed for good: log it and send ``message_failed``."""
    logger.error("message %s failed: %s: %s", message_id, code, reason)
    signals.message_failed.send(
        sender=OutboundSend,
        message_id=message_id,
        code=code,
        reason=reason,
        sender_address=outbound.sender if outbound else None,
        recipients=list(outbound.recipients) if outbound else None,
    )


def _past_lifetime(outbound: OutboundSend, delay: float, code: str, reason: str,
                   extra: float = 0.0) -> PermanentSendError | None:
    """When a retry ``delay`` seconds from now would fall past the message's lifetime (plus
    ``extra``): fail the message with ``code`` and ``reason`` and return the error to raise;
    else None."""
    if not retry.outlives(outbound.created, delay, extra):
        return None
    reason = f"still failing at the end of its lifetime: {reason}"
    fail(outbound, outbound.message_id, code, reason)
    return PermanentSendError(code, reason)


def _shared_state_retry(task: Any, outbound: OutboundSend, exc: Exception) -> Exception:
    """The Retry to raise when the shared-state Redis failed: try again after a backoff,
    within the message's lifetime (past it: the PermanentSendError to raise)."""
    failures = int(task.request.kwargs.get("failures", 0))
    delay = retry.backoff_delay(failures)
    expired = _past_lifetime(outbound, delay, "SharedStateUnavailable",
                             f"shared state (Redis) unavailable: {exc}")
    if expired is not None:
        return expired
    logger.warning("message %s: shared state (Redis) unavailable (%s), retry in %.1fs",
                   outbound.message_id, exc, delay)
    return task.retry(countdown=delay, kwargs=requeue_kwargs(task, failures=failures + 1),
                      throw=False)


def requeue_kwargs(task: Any, **changes: Any) -> dict[str, Any]:
    """The task's keyword arguments for a re-run: ``reserved_at`` cleared (a re-run books
    a new slot of the shared rate unless ``changes`` say otherwise), ``failures`` kept."""
    return {"failures": int(task.request.kwargs.get("failures", 0)), "reserved_at": None,
            **changes}


class SendTask(Task):
    """Keeps the outbox (``outbox``) in step with each attempt: running when it starts,
    queued again before a retry is published, gone once the send is settled."""

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        outbox.started(task_id)

    def retry(self, *args: Any, countdown: float | None = None, **options: Any) -> Any:
        if not self.request.called_directly:
            outbox.requeued(self.request.id, countdown or 0.0)
        return super().retry(*args, countdown=countdown, **options)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        outbox.settled(task_id)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        outbox.settled(task_id)  # failed for good (fail() said why; a bug: Celery's log)


def _start_sweeper(sender: Any = None, **_: Any) -> None:
    sweeper.start(sender.app if sender is not None else current_app, publish)


def _check_account(sender: Any = None, **_: Any) -> None:
    """Say at start what the SES account's state means (sandbox, sending disabled), from a
    thread: an SES that is slow or out of reach must not hold the worker's start."""
    threading.Thread(target=usage.check_account_at_start, name="seacucumber-account",
                     daemon=True).start()


# every worker that imports the send task sweeps for tasks the broker lost (outbox on)
worker_ready.connect(_start_sweeper, dispatch_uid="seacucumber.outbox.start")
worker_ready.connect(_check_account, dispatch_uid="seacucumber.account.check")
worker_shutdown.connect(sweeper.stop, dispatch_uid="seacucumber.outbox.stop")


@shared_task(
    base=SendTask,
    name=TASK_NAME,
    bind=True,
    serializer="json",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def send_email(self: Any, payload: Any, reserved_at: float | None = None,
               failures: int = 0) -> str | None:
    """Send one message through SES; returns SES's MessageId (None: all recipients
    suppressed, not sent). ``reserved_at``: set by the shared rate when it re-queued the
    task for a slot it booked; ``failures``: SES errors so far (the backoff counts these,
    not the re-queues for the rate)."""
    try:
        outbound = OutboundSend.from_json(payload)
    except MalformedPayload as exc:
        message_id = payload.get("id") if isinstance(payload, dict) else None
        message_id = message_id if isinstance(message_id, str) else "?"
        fail(None, message_id, "MalformedPayload", str(exc))
        raise
    try:  # staging: recipients not on SEACUCUMBER_RECIPIENT_ALLOWLIST never reach SES
        screened = allowlist.screen(outbound)
    except ImproperlyConfigured as exc:  # fail closed: a typo in the setting mails no one
        fail(outbound, outbound.message_id, "RecipientAllowlistInvalid", str(exc))
        raise PermanentSendError("RecipientAllowlistInvalid", str(exc)) from None
    if screened is not None:
        screened = suppression.screen(screened)  # drops suppressed recipients (one query)
    if screened is None:  # no recipient left: not sent, message_suppressed said so
        return None
    outbound = screened
    try:  # the send log: a redelivery of a sent message stops here (see sendlog)
        claim = sendlog.claim(outbound.message_id, uuid.uuid4().hex)
    except SendLogUnavailable as exc:
        raise _shared_state_retry(self, outbound, exc) from None
    if claim.sent_id is not None:
        logger.info("message %s was sent before as SES %s: not sending again",
                    outbound.message_id, claim.sent_id)
        return claim.sent_id
    if claim.token is None:  # another attempt is inside the SES call right now
        delay = claim.busy_for + random.uniform(0, 1)
        expired = _past_lifetime(
            outbound, delay, "SendInProgress",
            "another attempt was inside the SES call (it may yet have sent the message)")
        if expired is not None:
            raise expired from None
        raise self.retry(countdown=delay, kwargs=requeue_kwargs(self))
    try:  # the account's shared rate, counted per recipient: waits briefly or re-queues
        ratelimit.admit(self, outbound.message_id, len(outbound.recipients), reserved_at)
    except BaseException as exc:  # re-queued (Celery's Retry) or Redis failed: not sending
        claim.release()
        if isinstance(exc, redis.RedisError):
            raise _shared_state_retry(self, outbound, exc) from None
        raise
    try:  # DKIM here, not in send_messages: signing costs ms the caller must not wait for
        raw = dkim.sign(outbound.raw)
    except SigningError as exc:
        claim.release()
        fail(outbound, outbound.message_id, "DKIMSigningError", str(exc))
        raise PermanentSendError("DKIMSigningError", str(exc)) from None
    try:
        ses_message_id = send(outbound, raw=raw)
    except Exception as exc:  # noqa: BLE001 - classify() re-raises what is not an SES error
        claim.release()  # nothing sent (or, for maybe_sent errors, the documented window)
        classified = classify(exc)
        if classified.outcome is Outcome.PERMANENT:
            fail(outbound, outbound.message_id, classified.code, classified.message)
            raise PermanentSendError(classified.code, classified.message) from None
        if classified.outcome is Outcome.THROTTLED:
            ratelimit.throttled()
            metrics.count("throttles", metrics.lane())
        extra = 0.0
        if classified.outcome is Outcome.QUOTA_EXCEEDED:
            delay = ratelimit.quota_exhausted()  # held, not spun on: the quota frees slowly
            extra = retry.QUOTA_WINDOW  # waiting for the rolling 24 h: one window more
        else:
            delay = retry.backoff_delay(failures)
        expired = _past_lifetime(outbound, delay, classified.code, classified.message, extra)
        if expired is not None:
            raise expired from None
        metrics.count("retries", metrics.lane())
        logger.warning(
            "message %s: %s (%s) from SES, retry %d in %.1fs",
            outbound.message_id, classified.outcome.value, classified.code,
            failures + 1, delay,
        )
        raise self.retry(  # the retry books a new slot of the shared rate
            countdown=delay, exc=TransientSendError(classified.code, classified.message),
            kwargs=requeue_kwargs(self, failures=failures + 1),
        ) from None
    claim.mark_sent(ses_message_id)
    logger.info("message %s sent to %d recipient(s) as SES %s",
                outbound.message_id, len(outbound.recipients), ses_message_id)
    signals.message_sent.send(
        sender=OutboundSend,
        message_id=outbound.message_id,
        ses_message_id=ses_message_id,
        sender_address=outbound.sender,
        recipients=list(outbound.recipients),
    )
    return ses_message_id


# --- publishing: the backend and the outbox's sweeper put send tasks on the broker -------

def routed_queue() -> str:
    """The queue Celery's routing gives the send task (``task_routes``, or the default)."""
    queue = current_app.amqp.router.route({}, TASK_NAME, args=(), kwargs={}).get("queue")
    return getattr(queue, "name", None) or current_app.conf.task_default_queue


class _DeadlinePassed(Exception):
    """Raised from kombu's retry loop once another attempt would pass the enqueue timeout."""


def _deadline_errback(deadline: float) -> Callable[[Exception, float], None]:
    """An errback for kombu's retry loop (called before each sleep) that gives up once the
    next attempt would start after ``deadline`` (``time.monotonic()``)."""

    def errback(exc: Exception, interval: float) -> None:
        if time.monotonic() + interval >= deadline:
            raise _DeadlinePassed(exc)

    return errback


def publish(payload: dict[str, Any], task_id: str, queue: str | None,
            retry_policy: dict[str, Any] | None = None) -> None:
    """Put one send task on the broker (kombu's errors propagate). The task id is our message
    id, so logs, Flower and the outbox all name a send the same way."""
    options: dict[str, Any] = {"queue": queue} if queue else {}
    if retry_policy is not None:
        options["retry_policy"] = retry_policy
    send_email.apply_async(
        args=[payload],
        task_id=task_id,
        # what logs and monitors (Flower) show of the task: our id, not the whole message
        # (it saves Celery's saferepr of the payload, too)
        argsrepr=f"[<message {task_id}>]",
        kwargsrepr="{}",
        serializer="json",
        retry=True,
        **options,
    )


def enqueue(payloads: Sequence[dict[str, Any]], deadline: float, queue: str | None) -> None:
    """Put one send task per payload (``OutboundSend.to_json``) on the broker, to ``queue``
    (None: Celery's routing);
    ``EnqueueError`` if it can't by ``deadline`` (``time.monotonic()``; plus one connection
    attempt: keep the broker's socket timeouts short, as ``celeryconfig.py`` does). The
    error's ``sends_queued`` says how many of ``payloads`` the broker took before it failed."""
    timeout = float(conf.SEACUCUMBER_ENQUEUE_TIMEOUT)
    retry_policy = {
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": timeout / 6,
        "interval_max": timeout / 3,
        "errback": _deadline_errback(deadline),
    }
    for done, payload in enumerate(payloads):
        try:
            publish(payload, payload["id"], queue, retry_policy)
        except (KombuError, OSError, _DeadlinePassed) as exc:
            cause = exc.args[0] if isinstance(exc, _DeadlinePassed) else exc
            error = EnqueueError(
                f"could not queue message {payload['id']} on the Celery broker: {cause}"
            )
            error.sends_queued = done
            raise error from cause
