"""The send task: Celery's glue over the steps of ``seacucumber.send`` (publishing the task
is ``send.publish``'s, so the web side never imports this module).

The task: one ``OutboundSend`` payload in, one SES send out. Back before its due time (a long
wait taken in hops, ``SendTask.retry``): re-queue, nothing else -> read the JSON payload ->
screen: drop (or redirect) recipients not on the staging allowlist, drop suppressed
recipients (``send.screen``) -> begin the attempt
(``send.attempt.begin``, one Redis round trip: the outbox record running, the send claimed
in the send log, returning at once if SES has it already, the lane's hold checked (the
reputation guard's, ``shared.reputation``), the recipients booked in the account's shared
rate by the send's lane) -> fetch a claim-checked message (``shared.claimcheck``) ->
DKIM-sign -> send through ``ses.send`` -> settle (``send.attempt.settle``, the second
round trip: sent mark, counters, outbox) -> on error, ``ses.errors.classify`` decides:
throttling (which also slows the shared rate) and transient errors retry with backoff
(``retry.backoff_delay``) until the message's lifetime ends (so do retries for a
shared-state Redis outage and for a send another attempt holds); a spent daily quota holds
every send, for at most one quota window (24 h) past the lifetime; a held lane holds its
sends until an operator releases it (they never expire); an error of the worker's own
configuration (no region, bad credentials, AccessDenied, a missing configuration set) holds
the send like a transient one, logged at ERROR and counted, never discarding it; errors about
the message itself fail at once. The
task's result is SES's MessageId. The task is acknowledged only once the send is settled
(``acks_late``), so a worker killed mid-task loses nothing: the broker hands the task to
another worker. ``SendTask`` keeps the outbox (``shared.outbox``) in step with each attempt,
for the one task a Redis broker can lose: the one a worker was taking off the queue as it
died.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from typing import Any, NoReturn

import redis
from celery import Task, current_app, shared_task
from celery.signals import (
    celeryd_after_setup,
    celeryd_init,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from django.core.exceptions import ImproperlyConfigured

from . import retry
from .conf import Lane, conf
from .conf import lane as conf_lane
from .events import inbound_task  # a worker gets the inbound task (and its sweep) by this import
from .exceptions import (
    ClaimCheckFailed,
    MalformedPayload,
    PermanentSendError,
    TransientSendError,
)
from .operations import metrics, usage
from .payload import MESSAGE_ID, OutboundSend
from .send import attempt, outcome
from .send.attempt import BeginOutcome as Begun
from .send.deliver import deliver
from .send.publish import publish
from .send.screen import screen
from .ses import clients as ses_clients
from .ses.errors import Classified, Outcome
from .shared import (
    claimcheck,
    holders,
    outbox,
    ratelimit,
    reputation,
    sendlog,
    store,
    sweeper,
    workers,
)
from .shared.buckets import Bucket
from .shared.workers import SEND_TASK

logger = logging.getLogger(__name__)

TASK_NAME = SEND_TASK


def _past_lifetime(outbound: OutboundSend, delay: float, code: str, reason: str,
                   extra: float = 0.0) -> PermanentSendError | None:
    """When a retry ``delay`` seconds from now would fall past the message's lifetime (plus
    ``extra``): fail the message with ``code`` and ``reason`` and return the error to raise;
    else None."""
    if not retry.outlives(outbound.starts, delay, extra):
        return None
    reason = f"still failing at the end of its lifetime: {reason}"
    outcome.failed(outbound, outbound.message_id, code, reason)
    return PermanentSendError(code, reason)


def _shared_state_retry(task: Any, outbound: OutboundSend, exc: Exception,
                        what: str = "shared state (Redis)") -> Exception:
    """The Retry to raise when the shared-state Redis (or another ``what``) failed: try
    again after a backoff, within the message's lifetime (past it: the PermanentSendError
    to raise)."""
    failures = int(task.request.kwargs.get("failures", 0))
    delay = retry.backoff_delay(failures)
    expired = _past_lifetime(outbound, delay, "SharedStateUnavailable",
                             f"{what} unavailable: {exc}",
                             float(task.request.kwargs.get("held") or 0.0))
    if expired is not None:
        return expired
    logger.warning("message %s: %s unavailable (%s), retry in %.1fs",
                   outbound.message_id, what, exc, delay)
    return task.retry(countdown=delay, kwargs=requeue_kwargs(task, failures=failures + 1),
                      throw=False)


def requeue_kwargs(task: Any, **changes: Any) -> dict[str, Any]:
    """The task's keyword arguments for a re-run: ``reserved_at`` cleared (a re-run books
    a new slot of the shared rate unless ``changes`` say otherwise), ``failures`` and
    ``held`` kept."""
    kwargs = task.request.kwargs
    found: dict[str, Any] = {"failures": int(kwargs.get("failures", 0)), "reserved_at": None}
    if kwargs.get("held"):  # only a send the reputation guard held carries it
        found["held"] = float(kwargs["held"])
    return {**found, **changes}


def _held_retry(task: Any, outbound: OutboundSend, hold: reputation.Hold) -> Exception:
    """The Retry for a send whose lane the reputation guard holds: look again after
    ``SEACUCUMBER_REPUTATION_RETRY`` seconds plus jitter. Not an SES failure (``failures``
    stays) and never past the lifetime: an operator ends a hold, so a held send waits for
    it, and the time it waited (``held``) is added to its lifetime once it is released."""
    base = float(conf.SEACUCUMBER_REPUTATION_RETRY)
    countdown = base + random.uniform(0, base / 2)
    held = float(task.request.kwargs.get("held") or 0.0) + countdown
    claimcheck.keep(task.request.args[0] if task.request.args else None)  # outlives the hold
    logger.info("message %s held: lane %r is held by the reputation guard (%s rate); "
                "looking again in %.0fs", outbound.message_id, hold.lane, hold.rate, countdown)
    return task.retry(countdown=countdown, kwargs=requeue_kwargs(task, held=held), throw=False)


#: SQS's longest DelaySeconds.
SQS_MAX_DELAY = 900.0
#: A task back this close to its due time sleeps the rest rather than hop once more.
HOP_SLACK = 0.5
#: The longest hop of a scheduled send's wait where the broker sets no limit: RabbitMQ
#: closes the channel of a consumer that holds a message unacknowledged past its
#: ``consumer_timeout`` (30 minutes by default), and a countdown is held so.
SCHEDULE_HOP = 900.0


def max_countdown() -> float | None:
    """The longest countdown one retry may be published with (``SEACUCUMBER_MAX_COUNTDOWN``),
    or by default what the broker allows: a Celery countdown is held by the worker as an
    unacknowledged message, which SQS and kombu's Redis transport hand out again once their
    visibility timeout passes, so a countdown must end well inside it (celery/celery#7009).
    None: no limit (RabbitMQ)."""
    given = conf.SEACUCUMBER_MAX_COUNTDOWN
    if given is not None:
        return float(given)
    options = current_app.conf.broker_transport_options or {}
    scheme = store.broker_scheme()
    if scheme == "sqs":
        return min(SQS_MAX_DELAY, float(options.get("visibility_timeout", 1800)) / 2)
    if scheme in store.REDIS_BROKER_SCHEMES:
        return float(options.get("visibility_timeout", 3600)) / 2
    return None


class SendTask(Task):
    """Keeps the outbox (``outbox``) in step with each attempt: running when it starts
    (``attempt.begin``), queued again before a retry is published, gone once the send is
    settled (for a send, ``attempt.settle``); deletes a claim-checked payload once settled.
    Every retry and re-queue goes through ``retry``, which takes a wait longer than the
    broker allows (``max_countdown``) in hops."""

    def retry(self, *args: Any, countdown: float | None = None, **options: Any) -> Any:
        """Celery's retry, with a countdown over ``max_countdown()`` cut to it and the task's
        due time carried in the ``due`` kwarg: the task that comes back early hops again
        (``hop``) without working."""
        kwargs = options.get("kwargs")
        kwargs = dict((self.request.kwargs or {}) if kwargs is None else kwargs)
        kwargs.pop("due", None)
        longest = None if self.request.is_eager else max_countdown()  # eager: no broker
        if countdown is not None and longest is not None and countdown > longest:
            kwargs["due"] = time.time() + countdown
            countdown = longest
        options["kwargs"] = kwargs
        if not self.request.called_directly:
            outbox.requeued(self.request.id, countdown or 0.0)
        return super().retry(*args, countdown=countdown, **options)

    def hop(self, due: float | None) -> None:
        """A task back before its ``due`` time (a wait taken in hops) is re-queued for the
        rest (raises Celery's ``Retry``), or sleeps it when it is short; at or past it,
        nothing happens."""
        left = (due or 0.0) - time.time()
        if left > HOP_SLACK:
            logger.info("message %s: hop, due in %.1fs", self.request.id, left)
            raise self.retry(countdown=left, kwargs=dict(self.request.kwargs))
        if left > 0:  # a slot of the shared rate is booked for then: not earlier
            time.sleep(left)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        if not getattr(self.request, "seacucumber_settled", False):  # sent: settle() did it
            outbox.settled(task_id)
        claimcheck.release(args[0] if args else None)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any,
                   einfo: Any) -> None:
        outbox.settled(task_id)  # failed for good (outcome.failed said why; a bug: Celery's log)
        claimcheck.release(args[0] if args else None)


def _lane(outbound: OutboundSend) -> Lane:
    """The send's lane; a lane no longer declared (settings changed under queued mail) is
    sent on the first lane rather than failed."""
    try:
        return conf_lane(outbound.lane)
    except KeyError:
        logger.warning("message %s: lane %r is not in SEACUCUMBER_LANES: sent on the first lane",
                       outbound.message_id, outbound.lane)
        return conf_lane()


def _begin(task: Any, outbound: OutboundSend, lane: Lane,
           reserved_at: float | None) -> sendlog.Claim:
    """Start the attempt (``attempt.begin``: one round trip) and return its claim once the
    send is ours and its slot of the shared rate is due; re-queue the task (raise Celery's
    ``Retry``) when it must wait longer. A lower lane refused for now sleeps in the task
    for the next free slot, at most ``SEACUCUMBER_RATE_MAX_WAIT`` at a time and twice that in
    all, before it is re-queued."""
    max_wait = float(conf.SEACUCUMBER_RATE_MAX_WAIT)
    reserve = reserved_at is None or abs(time.time() - reserved_at) >= ratelimit.RESERVATION_SLACK
    cost, polled, token = len(outbound.recipients), 0.0, os.urandom(16).hex()
    message_id, task_id = outbound.message_id, task.request.id
    while True:
        try:
            began = attempt.begin(message_id, token, lane, cost, reserve, task_id,
                                  Bucket.of(outbound.options))
        except redis.RedisError as exc:
            raise _shared_state_retry(task, outbound, exc) from None
        if began.outcome is Begun.SENT:
            return sendlog.Claim(message_id, sent_id=began.sent_id)
        if began.outcome is Begun.CANCELLED:  # seacucumber.cancel: never to SES
            return sendlog.Claim(message_id, cancelled=began.reason or "cancelled")
        if began.outcome is Begun.BUSY:  # another attempt is inside the SES call right now
            delay = max(0.1, began.wait) + random.uniform(0, 1)
            expired = _past_lifetime(
                outbound, delay, "SendInProgress",
                "another attempt was inside the SES call (it may yet have sent the message)",
                float(task.request.kwargs.get("held") or 0.0))
            if expired is not None:
                raise expired from None
            raise task.retry(countdown=delay, kwargs=requeue_kwargs(task))
        if began.outcome is Begun.LANE_HELD:  # the reputation guard: no SES call, never expires
            raise _held_retry(task, outbound, reputation.read_hold(began.hold, lane.name)
                              or reputation.Hold(lane.name, "unknown", 0.0, 0.0, 0, 0.0))
        token_claim = sendlog.Claim(message_id,
                                    token=attempt.claim_token(token) if began.claimed else None)
        if began.outcome is Begun.GO or (began.outcome is Begun.ADMITTED
                                         and began.wait <= max_wait):
            if began.wait > 0:
                time.sleep(began.wait)
            return token_claim
        if began.outcome is Begun.ADMITTED:  # booked further ahead: come back for the slot
            logger.debug("message %s re-queued for its slot of the shared rate in %.2fs",
                         message_id, began.wait)
            raise task.retry(countdown=began.wait, kwargs=requeue_kwargs(
                task, reserved_at=time.time() + began.wait))
        if began.outcome is Begun.QUOTA_HELD:
            countdown = began.wait + random.uniform(0, min(60.0, began.wait))
            logger.warning("message %s held: the SES daily quota is used up; retrying in "
                           "%.0fs", message_id, countdown)
            raise task.retry(countdown=countdown, kwargs=requeue_kwargs(task))
        # refused: the rate is booked further ahead than the lane may book
        horizon = lane.lookahead if lane.lookahead is not None else \
            float(conf.SEACUCUMBER_RATE_HORIZON)
        until = max(0.0, began.wait - horizon)  # when this send's slot would be in reach
        if lane.rank > 0 and until <= max_wait and polled < 2 * max_wait:
            spread = began.waiters * cost / max(began.rate, 1e-6)
            pause = min(max_wait, until + random.uniform(0.005, 0.005 + spread))
            time.sleep(pause)
            polled += pause
            continue
        countdown = until + random.uniform(0, max(1.0, began.wait) * 0.4)
        logger.debug("message %s re-queued for %.1fs: lane %s's share of the rate is booked",
                     message_id, countdown, lane.name)
        raise task.retry(countdown=countdown, kwargs=requeue_kwargs(task))


def _start_sweeper(sender: Any = None, **_: Any) -> None:
    sweeper.start(sender.app if sender is not None else current_app, publish)


def _check_account(sender: Any = None, **_: Any) -> None:
    """Say at start what the SES account's state means (sandbox, sending disabled), from a
    thread: an SES that is slow or out of reach must not hold the worker's start."""
    threading.Thread(target=usage.check_account_at_start, name="seacucumber-account",
                     daemon=True).start()


def _freeze_settings(**_: Any) -> None:
    conf.freeze()


def _warm_ses_client(**_: Any) -> None:
    ses_clients.warm()


def _start_holder(**_: Any) -> None:
    """The worker's process (it prefetches; the threads, solo and green pools run tasks in
    it too) beats and stamps the send tasks it holds reserved."""
    holders.start(reserved=holders.reserved_sends)


def _start_pool_holder(**_: Any) -> None:
    """A prefork child beats for the sends it runs."""
    holders.start()


# a worker's settings are read once: they do not change while it runs
worker_init.connect(_freeze_settings, dispatch_uid="seacucumber.conf.freeze")
# before the prefork pool forks: each child then makes its SES client from parsed models
worker_init.connect(_warm_ses_client, dispatch_uid="seacucumber.ses.warm")
# each worker process's heartbeat: a dead one's sends are taken over within seconds
worker_init.connect(_start_holder, dispatch_uid="seacucumber.holders.start")
worker_process_init.connect(_start_pool_holder, dispatch_uid="seacucumber.holders.pool")
worker_shutdown.connect(holders.stop, dispatch_uid="seacucumber.holders.stop")
worker_process_shutdown.connect(holders.stop, dispatch_uid="seacucumber.holders.pool-stop")
# every worker that imports the send task sweeps for tasks the broker lost (outbox on)
worker_ready.connect(_start_sweeper, dispatch_uid="seacucumber.outbox.start")
worker_ready.connect(_check_account, dispatch_uid="seacucumber.account.check")
worker_shutdown.connect(sweeper.stop, dispatch_uid="seacucumber.outbox.stop")
# a worker started without -Q consumes every queue mail can go to; one whose -Q leaves one
# out says so; every worker's heartbeat tells send_messages and ses_doctor who consumes what
celeryd_init.connect(workers.note_worker_options, dispatch_uid="seacucumber.workers.options")
celeryd_after_setup.connect(workers.consume_mail_queues,
                            dispatch_uid="seacucumber.workers.queues")
worker_ready.connect(workers.start_heartbeat, dispatch_uid="seacucumber.workers.start")
worker_shutdown.connect(workers.stop_heartbeat, dispatch_uid="seacucumber.workers.stop")
# received mail whose task the broker lost is queued again
worker_ready.connect(inbound_task.start_sweeper, dispatch_uid="seacucumber.inbound.sweep")
worker_shutdown.connect(inbound_task.stop_sweeper, dispatch_uid="seacucumber.inbound.stop")


@shared_task(
    base=SendTask,
    name=TASK_NAME,
    bind=True,
    serializer="json",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def send_email(self: Any, payload: Any = None, reserved_at: Any = None, failures: Any = 0,
               held: Any = 0.0, due: Any = None, *extra: Any, **unknown: Any) -> str | None:
    """Send one message through SES; returns SES's MessageId (None: all recipients
    suppressed, not sent). ``reserved_at``: set by the shared rate when it re-queued the
    task for a slot it booked; ``failures``: SES errors so far (the backoff counts these,
    not the re-queues for the rate); ``held``: seconds the reputation guard held it (added
    to its lifetime); ``due``: when a wait taken in hops ends. Arguments of any other
    kind, number or name fail the send with the reason (``MalformedPayload``), as a
    malformed payload does: a task written into the broker by hand never fails unrecorded."""
    with conf.held():  # each setting read once per run: the path reads dozens
        problem = _arguments_problem(reserved_at, failures, held, due, extra, unknown)
        if problem is not None:
            _refuse(self, payload, problem)
        return _send(self, payload, reserved_at, failures, held, due)


#: The most SES failures a task's ``failures`` may count (backoff caps long before).
_MAX_FAILURES = 1_000_000
#: How far ahead a task's ``due`` may be: every wait a send takes (a held quota's the
#: longest) is far shorter.
_LONGEST_HOP = 2 * retry.QUOTA_WINDOW


def _arguments_problem(reserved_at: Any, failures: Any, held: Any, due: Any,
                       extra: tuple[Any, ...], unknown: dict[str, Any]) -> str | None:
    """Why the task's arguments besides its payload are not ones ``SendTask`` writes, or
    None: times are finite numbers (or None), ``failures`` a count, ``held`` seconds."""
    if extra or unknown:
        given = [f"{len(extra)} more positional"] if extra else []
        names = ", ".join([*given, *map(repr, unknown)])
        return f"task has arguments it does not take: {names}"
    for name, value in (("reserved_at", reserved_at), ("due", due), ("held", held)):
        if value is None and name != "held":
            continue
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or not math.isfinite(value) or (name == "held" and value < 0)):
            return f"task argument {name}={value!r} is not a number of seconds"
    if due is not None and due > time.time() + _LONGEST_HOP:  # it would hop for ever
        return f"task argument due={due!r} is further ahead than any wait of a send"
    if (not isinstance(failures, int) or isinstance(failures, bool)
            or not 0 <= failures <= _MAX_FAILURES):
        return f"task argument failures={failures!r} is not a count of SES failures"
    return None


def _refuse(task: Any, payload: Any, reason: str) -> NoReturn:
    """Fail a task whose payload or arguments our backend would not have written: record it
    (``message_failed``, under the payload's id when it is one of ours, else the task's)
    and raise ``MalformedPayload``."""
    found = payload.get("id") if isinstance(payload, dict) else None
    if not isinstance(found, str) or not MESSAGE_ID.fullmatch(found):
        found = task.request.id if isinstance(task.request.id, str) else None
    outcome.failed(None, found or "?", "MalformedPayload", reason)
    raise MalformedPayload(reason)


def _send(self: Any, payload: Any, reserved_at: float | None, failures: int, held: float,
          due: float | None) -> str | None:
    """``send_email``'s body, with the settings held and its arguments checked: the steps of
    ``seacucumber.send`` in a send's order."""
    self.hop(due)  # back early from one hop of a long wait: re-queued, nothing done
    read = _read(self, payload)
    if read.send_at is not None and _before_schedule(self, read, payload):
        return None  # cancelled while it waited: outcome.cancelled said so
    outbound = _screened(read)
    if outbound is None:  # no recipient left: not sent, message_suppressed said so
        return None
    lane = _lane(outbound)
    claim = _begin(self, outbound, lane, reserved_at)  # returns only when it is ours to send
    if claim.cancelled is not None:
        outcome.cancelled(outbound, claim.cancelled)
        return None
    if claim.sent_id is not None:
        logger.info("message %s was sent before as SES %s: not sending again",
                    outbound.message_id, claim.sent_id)
        return claim.sent_id
    outbound = _fetched(self, outbound, claim)
    delivered = deliver(outbound)
    if isinstance(delivered, Classified):
        claim.release()  # nothing sent (or, for maybe_sent errors, the documented window)
        _undelivered(self, outbound, lane, delivered, failures, held)
    request = self.request
    attempt.settle(outbound, delivered, lane.name, request.id)
    request.seacucumber_settled = True  # on_success: nothing left to settle
    logger.info("message %s sent to %d recipient(s) as SES %s",
                outbound.message_id, len(outbound.recipients), delivered)
    outcome.sent(outbound, delivered)
    return delivered


def _read(task: Any, payload: Any) -> OutboundSend:
    """The task's payload read (``MalformedPayload`` refuses it) and its client options
    checked against the settings (``UntrustedClientOptions`` fails it)."""
    try:
        outbound = OutboundSend.from_json(payload)
    except MalformedPayload as exc:
        _refuse(task, payload, str(exc))
    if (problem := ses_clients.untrusted_options(outbound.options)) is not None:
        outcome.failed(outbound, outbound.message_id, "UntrustedClientOptions", problem)
        raise PermanentSendError("UntrustedClientOptions", problem)
    return outbound


def _before_schedule(task: Any, outbound: OutboundSend, payload: Any) -> bool:
    """A scheduled send not due yet waits: re-queued for its time, in hops of at most
    ``max_countdown()`` (raises Celery's ``Retry``), or sleeps the last ``HOP_SLACK``.
    Before each hop it reads its cancel mark (one GET, scheduled sends only): True when the
    send was cancelled (ended here, ``outcome.cancelled``). Due: False, and the send books
    its lane's place in the shared rate like any other. In eager mode (no broker to wait
    on) it does not wait."""
    left = (outbound.send_at or 0.0) - time.time()
    if left <= 0:
        return False
    if task.request.is_eager:
        logger.warning("message %s is scheduled %.0fs ahead, but tasks run eagerly "
                       "(task_always_eager): sent now", outbound.message_id, left)
        return False
    if left <= HOP_SLACK:
        time.sleep(left)
        return False
    try:
        reason = sendlog.cancelled(outbound.message_id)
    except redis.RedisError as exc:  # attempt.begin reads the mark again once it is due
        logger.warning("message %s: cancel mark not read (%s)", outbound.message_id, exc)
        reason = None
    if reason is not None:
        outcome.cancelled(outbound, reason)
        return True
    countdown = min(left, max_countdown() or SCHEDULE_HOP)
    claimcheck.keep(payload)  # a stored message outlives the wait
    logger.info("message %s is scheduled: due in %.0fs, back in %.0fs",
                outbound.message_id, left, countdown)
    raise task.retry(countdown=countdown, kwargs=requeue_kwargs(task))


def _screened(outbound: OutboundSend) -> OutboundSend | None:
    """``send.screen``: the staging allowlist and the suppression lists; a malformed
    allowlist fails the send (closed: a typo in the setting mails no one)."""
    try:
        return screen(outbound)
    except ImproperlyConfigured as exc:
        outcome.failed(outbound, outbound.message_id, "RecipientAllowlistInvalid", str(exc))
        raise PermanentSendError("RecipientAllowlistInvalid", str(exc)) from None


def _fetched(task: Any, outbound: OutboundSend, claim: sendlog.Claim) -> OutboundSend:
    """A claim-checked message read only now (a re-queue or a resend never reads it): gone
    or changed fails the send, a store that fails retries it."""
    try:
        return claimcheck.fetch(outbound)
    except ClaimCheckFailed as exc:
        claim.release()
        outcome.failed(outbound, outbound.message_id, exc.code, exc.reason)
        raise PermanentSendError(exc.code, exc.reason) from None
    except claimcheck.STORE_ERRORS as exc:
        claim.release()
        raise _shared_state_retry(task, outbound, exc, "the claim check's store") from None


def _undelivered(task: Any, outbound: OutboundSend, lane: Lane, classified: Classified,
                 failures: int, held: float) -> NoReturn:
    """SES (or DKIM) refused: a permanent refusal fails the send; throttling slows the shared
    rate; a spent quota holds every send; the rest retry after a backoff within the
    message's lifetime (an error of the worker's own configuration logged at ERROR)."""
    if classified.outcome is Outcome.PERMANENT:
        outcome.failed(outbound, outbound.message_id, classified.code, classified.message)
        raise PermanentSendError(classified.code, classified.message)
    if classified.outcome is Outcome.THROTTLED:
        ratelimit.throttled(Bucket.of(outbound.options))
        metrics.count("throttles", lane.name)
    if classified.outcome is Outcome.CONFIGURATION:  # this worker's: the rate stays
        metrics.count("config_errors", classified.code, lane.name)
    extra = 0.0
    if classified.outcome is Outcome.QUOTA_EXCEEDED:
        # held, not spun on: the quota frees slowly
        delay = ratelimit.quota_exhausted(Bucket.of(outbound.options))
        extra = retry.QUOTA_WINDOW  # waiting for the rolling 24 h: one window more
    else:
        delay = retry.backoff_delay(failures)
    expired = _past_lifetime(outbound, delay, classified.code, classified.reason,
                             extra + held)
    if expired is not None:
        raise expired
    metrics.count("retries", lane.name)
    if classified.outcome is Outcome.CONFIGURATION:  # held until an operator fixes it
        logger.error(
            "message %s held: this worker's configuration: %s: %s; retry %d in %.1fs",
            outbound.message_id, classified.code, classified.reason, failures + 1, delay,
        )
    else:
        logger.warning(
            "message %s: %s (%s) from SES, retry %d in %.1fs",
            outbound.message_id, classified.outcome.value, classified.code,
            failures + 1, delay,
        )
    raise task.retry(  # the retry books a new slot of the shared rate
        countdown=delay, exc=TransientSendError(classified.code, classified.reason),
        kwargs=requeue_kwargs(task, failures=failures + 1),
    )
