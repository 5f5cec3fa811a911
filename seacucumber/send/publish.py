"""Publishing, the first step of a send's path: the web side (``send_messages``) and the
outbox's sweeper put ``seacucumber.send_email`` tasks on the broker by the task's name, each
task id our message id. The web process never imports the worker's module
(``seacucumber.tasks``) for it."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from celery import current_app
from celery.signals import after_task_publish as signals_after
from celery.signals import before_task_publish as signals_before
from kombu.exceptions import KombuError
from kombu.utils.json import dumps as json_dumps

from ..conf import conf
from ..exceptions import EnqueueError
from ..shared import outbox, store
from ..shared.workers import SEND_TASK as TASK_NAME
from ..shared.workers import routed_queue

logger = logging.getLogger(__name__)


class _DeadlinePassed(Exception):
    """Raised from kombu's retry loop once another attempt would pass the enqueue timeout."""


class _Unreachable(Exception):
    """The broker could not be reached by the deadline: nothing of the batch went."""


def _deadline_errback(deadline: float) -> Callable[[Exception, float], None]:
    """An errback for kombu's retry loop (called before each sleep) that gives up once the
    next attempt would start after ``deadline`` (``time.monotonic()``)."""

    def errback(exc: Exception, interval: float) -> None:
        if time.monotonic() + interval >= deadline:
            raise _DeadlinePassed(exc)

    return errback


def _by_name(name: str, app: Any) -> Any:
    """The task registered as ``name`` (``apply_async`` on it, eager mode included, publishes
    what the worker's own import would), or a stand-in that publishes by name alone when this
    process never imported the worker's module: the web side need not. In eager mode (tests)
    the task runs here, so Celery's task discovery imports it first."""
    found = app.tasks.get(name)
    if found is None and app.conf.task_always_eager:  # eager: this process runs the task,
        app.loader.import_default_modules()  # so its module is found as a worker finds it
        found = app.tasks.get(name)
    return found if found is not None else app.signature(name)


def publish(payload: dict[str, Any], task_id: str, queue: str | None,
            retry_policy: dict[str, Any] | None = None) -> None:
    """Put one send task on the broker (kombu's errors propagate). The task id is our message
    id, so logs, Flower and the outbox all name a send the same way."""
    options: dict[str, Any] = {"queue": queue} if queue else {}
    if retry_policy is not None:
        options["retry_policy"] = retry_policy
    _by_name(TASK_NAME, current_app).apply_async(
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


def enqueue(batches: Sequence[tuple[Sequence[dict[str, Any]], str | None]],
            deadline: float, record: bool = False) -> None:
    """Put one send task per payload (``OutboundSend.to_json``) on the broker: ``batches``
    are (payloads, queue) pairs, queue None for Celery's routing. With ``record`` the outbox
    records every send first (``outbox.record``). ``EnqueueError`` if it can't by
    ``deadline`` (``time.monotonic()``; plus one connection attempt: keep the broker's
    socket timeouts short, as ``celeryconfig.py`` does); its ``sends_queued`` says how many
    payloads, in order, the broker took before it failed.

    On a broker whose kombu transport batches (Redis) every payload goes in one pipeline
    (``_publish_batch``), with the outbox's records first when the shared state is on the
    broker's server: one round trip for the whole call. A batch that fails may have been
    delivered in part, so its payloads are recorded and published again one by one: a task
    that reaches the broker twice sends once, by the send log."""
    timeout = float(conf.SEACUCUMBER_ENQUEUE_TIMEOUT)
    retry_policy = {
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": timeout / 6,
        "interval_max": timeout / 3,
        "errback": _deadline_errback(deadline),
    }
    total = sum(len(payloads) for payloads, _ in batches)
    if total and not current_app.conf.task_always_eager:
        try:
            if _publish_batch(batches, record, timeout / 4, retry_policy):
                return
        except _Unreachable as exc:  # one by one would only wait for it again
            first = next(payload for payloads, _ in batches for payload in payloads)
            raise _enqueue_error(first, exc.args[0], 0) from exc.args[0]
        except (KombuError, OSError) as exc:
            logger.warning("publishing %d send tasks in one batch failed (%s): publishing "
                           "them one by one", total, exc)
    if record:
        _record(_by_queue(batches), timeout / 4)
    _publish_one_by_one(batches, retry_policy)


def _publish_one_by_one(batches: Sequence[tuple[Sequence[dict[str, Any]], str | None]],
                        retry_policy: dict[str, Any]) -> None:
    """``publish`` each payload, kombu retrying a lost connection as ``retry_policy``
    says (its errback gives up at the deadline)."""
    done = 0
    for payloads, queue in batches:
        for payload in payloads:
            try:
                publish(payload, payload["id"], queue, retry_policy)
            except (KombuError, OSError, _DeadlinePassed) as exc:
                cause = exc.args[0] if isinstance(exc, _DeadlinePassed) else exc
                raise _enqueue_error(payload, cause, done) from cause
            done += 1


def _enqueue_error(payload: dict[str, Any], cause: BaseException, done: int) -> EnqueueError:
    """The error ``enqueue`` raises when ``payload`` could not be queued, ``done`` sends
    before it having been."""
    error = EnqueueError(f"could not queue message {payload['id']} on the Celery broker "
                         f"{store.broker_uri()}: {cause}")
    error.sends_queued = done
    return error


def _by_queue(batches: Sequence[tuple[Sequence[dict[str, Any]], str | None]],
              texts: Sequence[Sequence[str]] | None = None) -> list[outbox.Group]:
    """The payloads of ``batches`` grouped by queue, with their JSON when made already
    (``texts``, batch by batch), as the outbox's ``Group``s: it records each group in one
    script call. Celery's routing is asked for the queue's name only here."""
    grouped: dict[str | None, tuple[list[dict[str, Any]], list[str]]] = {}
    for n, (payloads, queue) in enumerate(batches):
        found = grouped.setdefault(queue, ([], []))
        found[0].extend(payloads)
        if texts is not None:
            found[1].extend(texts[n])
    return [(found, found_texts if texts is not None else None, queue,
             queue or routed_queue()) for queue, (found, found_texts) in grouped.items()]


def _record(groups: Sequence[outbox.Group], timeout: float) -> None:
    """Record every send in the outbox, a call of its own (one per queue)."""
    for payloads, texts, queue, broker_queue in groups:
        outbox.record(payloads, queue, broker_queue, timeout, texts)


#: Redis commands one pipeline of ``_publish_batch`` carries at most.
BATCH_SIZE = 500


def _publish_batch(batches: Sequence[tuple[Sequence[dict[str, Any]], str | None]],
                   record: bool, timeout: float, retry_policy: dict[str, Any]) -> bool:
    """Publish every payload through kombu's producer batch (``Producer.batch``: one Redis
    pipeline per ``BATCH_SIZE`` messages) and return True; False, publishing nothing, when
    the broker's transport does not batch (RabbitMQ, SQS: ``enqueue`` publishes one by one).
    With ``record``, the outbox's records go first in the same pipeline when the shared
    state is on the broker's server (``_record_in``), else in a call of their own before it.
    The broker's connection is made (or found) first, as ``retry_policy`` says: kombu's own
    default would retry past the caller's deadline.

    ``apply_async`` spends most of its time building each message, not sending it, so Celery
    builds the first message (``create_task_message``: its headers, properties, body layout)
    and the others are that message with their own task id, arguments and ``argsrepr``:
    what ``apply_async`` would have built, Celery's ``before_task_publish`` and
    ``after_task_publish`` signals included, at a tenth of the cost. kombu's producer then
    makes the transport's own message of it (its priority queue, delivery tag, body
    encoding), so a stock worker reads it as one ``apply_async`` sent. Each payload's JSON
    is made once, for its outbox record and its task's body (the texts each would be made
    alone: ``tests/test_outbox.py``)."""
    app = current_app
    with app.producer_or_acquire() as producer:
        try:
            producer.connection.ensure_connection(**retry_policy)
        except (KombuError, OSError, _DeadlinePassed) as exc:
            raise _Unreachable(exc.args[0] if isinstance(exc, _DeadlinePassed) else exc) from exc
        if not getattr(producer, "supports_batch_publish", False):
            return False
        template: Any = None
        names: dict[str | None, str] = {}
        # each payload's JSON, made once for its record and its task's body
        texts = [[json_dumps(payload) for payload in payloads] for payloads, _ in batches]
        with producer.batch(max_size=BATCH_SIZE) as batch:
            if record:
                groups = _by_queue(batches, texts)
                if not _record_in(batch, producer, groups):
                    _record(groups, timeout)
            for (payloads, queue), encoded in zip(batches, texts, strict=True):
                if queue not in names:
                    names[queue] = queue or routed_queue()
                    _declare(producer, app.amqp.queues[names[queue]])
                name = names[queue]
                declared = app.amqp.queues[name]
                delivery_mode = declared.exchange.delivery_mode or _default_delivery_mode(app)
                for payload, text in zip(payloads, encoded, strict=True):
                    task_id = payload["id"]
                    argsrepr = f"[<message {task_id}>]"
                    if template is None:
                        template = app.amqp.create_task_message(
                            task_id, TASK_NAME, [payload], {}, argsrepr=argsrepr,
                            kwargsrepr="{}")
                        after = _body_after(template.body[2])
                    headers = {**template.headers, "id": task_id, "argsrepr": argsrepr}
                    if template.headers.get("root_id") == template.headers["id"]:
                        headers["root_id"] = task_id
                    properties = {**template.properties, "correlation_id": task_id,
                                  "reply_to": app.thread_oid, "argsrepr": argsrepr,
                                  "kwargsrepr": "{}"}  # as apply_async's options leave them
                    body: tuple[Any, ...] = ([payload], {}, template.body[2])
                    _send_publish_signal(signals_before, body, name, declared, headers,
                                         properties)
                    producer.publish(  # the text json_dumps(body) makes
                        "[[" + text + after, exchange="", routing_key=name,
                        content_type="application/json", content_encoding="utf-8",
                        headers=headers, declare=None, retry=False,
                        delivery_mode=delivery_mode, **properties)
                    _send_publish_signal(signals_after, body, name, declared, headers,
                                         properties)
    return True


def _declare(producer: Any, queue: Any) -> None:
    """Declare ``queue`` unless this connection already did (kombu's cache, read as
    ``maybe_declare`` reads it): ``maybe_declare`` first binds a copy of the queue to the
    channel, on every call, before it looks."""
    if not (queue.can_cache_declaration
            and hash(queue) in producer.connection.declared_entities):
        producer.maybe_declare(queue)


def _body_after(embed: dict[str, Any]) -> str:
    """The end of a task's body after its payload: ``json_dumps(([payload], {}, embed))``
    is ``"[[" + json_dumps(payload) + _body_after(embed)``. The embed (no callbacks, no
    chain) is the same every call: its text is kept for the last one seen."""
    global _last_after
    last = _last_after
    if last is None or last[0] != embed:
        last = _last_after = (copy.deepcopy(embed), "], {}, " + json_dumps(embed) + "]")
    return last[1]


_last_after: tuple[dict[str, Any], str] | None = None


#: (Celery's ``app.amqp``, its ``task_default_delivery_mode``): Celery's own publisher reads
#: the setting once per ``app.amqp`` too (its ``send_task_message``), and a read of Celery's
#: configuration walks its layers and older names.
_delivery_mode: tuple[Any, Any] | None = None


def _default_delivery_mode(app: Any) -> Any:
    """``app.conf.task_default_delivery_mode``, read once per ``app.amqp``."""
    global _delivery_mode
    amqp, found = _delivery_mode or (None, None)
    if amqp is not app.amqp:
        found = app.conf.task_default_delivery_mode
        _delivery_mode = (app.amqp, found)
    return found


def _record_in(batch: Any, producer: Any, groups: Sequence[outbox.Group]) -> bool:
    """Put the outbox's records first in the Redis pipeline of kombu's publish ``batch``
    (``outbox.record_with``), so they and the tasks after them are one round trip; False
    when the shared state is on another server, or kombu's batch has no Redis pipeline.

    Measured (BENCHMARKS.md, issue 27): the record's call of its own was 0.16-0.28 ms of a
    0.59-0.84 ms one-message ``send_messages``. The records are written before the tasks, in
    order, on one connection, so a worker never starts a task its record does not yet
    hold. kombu makes the batch's pipeline on the first publish; asking for it first
    (``_get_session``, the one private name used) lets the records lead it."""
    get_session = getattr(getattr(batch, "state", None), "_get_session", None)
    session: Any = get_session(producer.channel) if get_session is not None else None
    pipeline = getattr(session, "pipeline", None)
    if session is None or pipeline is None:
        return False
    return outbox.record_with(pipeline, session.channel.client, groups)


def _send_publish_signal(signal: Any, body: Any, queue: str, declared: Any,
                         headers: dict[str, Any], properties: dict[str, Any]) -> None:
    """Celery's ``before_task_publish`` / ``after_task_publish``, as ``apply_async`` sends
    them, when anything listens."""
    if signal.receivers:
        signal.send(sender=TASK_NAME, body=body, exchange="", routing_key=queue,
                    declare=[declared], headers=headers, properties=properties,
                    retry_policy=None)
