"""The Django email backend: check each message, serialise it, enqueue a Celery task.

    EMAIL_BACKEND = "seacucumber.backend.SESBackend"                   # Django 5.2 and 6.0
    MAILERS = {"default": {"BACKEND": "seacucumber.backend.SESBackend",  # Django 6.1
                           "OPTIONS": {"configuration_set": "transactional"}}}

``seacucumber.backend.EmailBackend`` is the same backend under Django's conventional name.

Options (``payload.MailerOptions``) are keyword arguments, so the same ones work through
``MAILERS`` ``OPTIONS`` and ``get_connection(**options)``; their values are checked when the
backend is made (``InvalidOption``). An unknown name is treated as Django's own backends treat
it: under a Django 6.1 ``MAILERS`` alias it raises Django's ``InvalidMailer``; elsewhere it is
ignored (``username``, ``password``, ``use_tls``... that Django and SMTP settings pass), on
Django 6.1 with Django's ``RemovedInDjango2028Warning``. A name close to one of ours warns
whatever the version, naming the option it likely meant (``lnae``: ``lane``).

``send_messages`` never talks to SES. It checks every message first (``payload.build_sends``
raises ``InvalidMessage`` for anything SES would refuse), so a bad message in a batch is refused
before any of the batch is queued; then it enqueues one ``seacucumber.send_email`` task per
send of at most 50 recipients, its task id our message id. A send whose message is over
``SEACUCUMBER_CLAIM_CHECK_THRESHOLD`` is first stored (``shared.claimcheck``) and its task
carries a claim. With a Redis broker each send is
first recorded in the outbox (``shared.outbox``), which queues again a task the broker loses. With
``fail_silently=True`` bad messages are skipped and a broker
failure stops the batch; the return value is always the count of messages whose every send was
queued. A send the broker did not take is marked failed in its status record (when tracking is
on) and logged, so it is never silently lost.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Any

from django.core import mail as django_mail
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.utils import deprecation as django_deprecation

from . import status
from .anymail import attributes as anymail_attributes
from .anymail import status as anymail_status
from .conf import conf
from .exceptions import EnqueueError, InvalidMessage
from .payload import OPTION_NAMES, MailerOptions, OutboundSend, build_sends
from .send.publish import enqueue
from .shared import claimcheck, outbox, workers

logger = logging.getLogger(__name__)


#: Django 6.1's ``MAILERS`` (``mail.mailers``, and ``InvalidMailer`` for a bad entry).
_INVALID_MAILER = getattr(django_mail, "InvalidMailer", None)
#: Django 6.1's warning for options a backend made without a ``MAILERS`` alias ignores.
_REMOVED_IN_2028 = getattr(django_deprecation, "RemovedInDjango2028Warning", None)
#: Options Django's own backends take (SMTP's, file's, console's): a project that switches
#: backends may still pass them, so they are never taken for typos of ours.
_DJANGO_BACKEND_OPTIONS = frozenset({
    "host", "port", "username", "password", "use_tls", "use_ssl", "timeout", "ssl_keyfile",
    "ssl_certfile", "file_path", "stream",
})


class SESBackend(BaseEmailBackend):
    """Queues each message for a Celery worker to send through Amazon SES."""

    def __init__(self, fail_silently: bool = False, *, alias: str | None = None,
                 **options: Any) -> None:
        """Take ``fail_silently`` and our options (``payload.OPTION_NAMES``), their values
        checked now. Other names as Django's own backends do on this Django version (see the
        module's docstring); a likely typo of one of ours warns."""
        # Django 6.1's get_connection(**kwargs) with MAILERS: the names its caller passed,
        # which Django's backends ignore when they do not know them
        passed_to_get_connection = options.pop("_ignore_unknown_kwargs", None) or ()
        unknown = [name for name in options if name not in OPTION_NAMES]
        typos = _likely_typos(unknown)
        refused = [name for name in unknown if name not in passed_to_get_connection]
        names = ", ".join(repr(name) for name in refused)
        if refused and alias is not None and _INVALID_MAILER is not None:
            hint = f" Did you mean {typos}?" if typos else ""
            raise _INVALID_MAILER(f"Unknown options {names}.{hint}", alias=alias)
        if typos:
            warnings.warn(f"{_class_name(self)} ignores options it does not know: did you "
                          f"mean {typos}?", stacklevel=_callers_stacklevel())
        if refused and _INVALID_MAILER is not None and _REMOVED_IN_2028 is not None:
            _warn_compatibility_mode(self, names)  # Django 6.1, made without an alias
        super().__init__(**({"alias": alias} if _INVALID_MAILER is not None else {}))
        self.fail_silently = fail_silently  # our own attribute, as Django 6.1 asks
        self.options = MailerOptions.parse({name: value for name, value in options.items()
                                            if name in OPTION_NAMES})

    def send_messages(self, email_messages: Iterable[EmailMessage] | None) -> int:
        """Queue ``email_messages``; returns how many were queued (messages, not sends).
        Each message checked and accepted carries ``seacucumber_ids`` afterwards: its sends'
        ids (one per group of up to 50 recipients), as ``seacucumber.status`` and the
        signals name them; one with django-anymail's attributes (or an ``AnymailMessage``)
        also ``anymail_status`` (``seacucumber/anymail/status.py``), as anymail fills it."""
        with conf.held():  # each setting read once for the whole call
            return self._send_messages(email_messages)

    def _send_messages(self, email_messages: Iterable[EmailMessage] | None) -> int:
        checked: list[Queued] = []
        accepted: list[EmailMessage] = []
        for message in email_messages or ():
            try:
                anymail = anymail_attributes.read(message)
                sends = build_sends(message, self.options, anymail)
            except InvalidMessage as exc:
                if not self.fail_silently:
                    raise
                logger.warning("message refused: %s", exc)
                continue
            if sends:
                message.seacucumber_ids = [outbound.message_id for outbound in sends]
                if anymail is not None or hasattr(message, "anymail_status"):
                    message.anymail_status = anymail_status.queued(sends)
                checked.append(Queued(sends, self.options.for_message(message).queue))
                accepted.append(message)
        status.record_queued(zip(accepted, (q.sends for q in checked), strict=True))
        if conf.SEACUCUMBER_ENQUEUE_ON_COMMIT and transaction.get_connection().in_atomic_block:
            for queued in checked:  # a failure then is raised (or not) at the commit
                transaction.on_commit(partial(self._enqueue_all, [queued]),
                                      robust=self.fail_silently)
            return len(checked)
        return self._enqueue_all(checked)

    def _enqueue_all(self, checked: list[Queued]) -> int:
        """Enqueue every send within ``SEACUCUMBER_ENQUEUE_TIMEOUT`` (on Redis, in one
        pipeline: ``send.publish.enqueue``), stopping at the first broker failure. The outbox
        (Redis broker) records every send first (in that same pipeline when the shared state
        is on the broker's server) and drops the records of sends the broker did not take."""
        timeout = float(conf.SEACUCUMBER_ENQUEUE_TIMEOUT)
        deadline = time.monotonic() + timeout  # the outbox's record counts in it
        try:  # large messages wait in the claim check's store; their tasks carry a claim
            stored = claimcheck.check_in([q.sends for q in checked], timeout / 2)
        except EnqueueError as exc:  # ClaimCheckError: nothing of the call is queued
            status.record_unqueued(list(chain.from_iterable(q.sends for q in checked)), str(exc))
            if not self.fail_silently:
                raise
            logger.error("%s (no message queued)", exc)
            return 0
        checked = [Queued(sends, q.queue) for sends, q in zip(stored, checked, strict=True)]
        payloads = [[outbound.to_json() for outbound in q.sends] for q in checked]
        recording = outbox.enabled()
        try:
            enqueue([(found, q.queue) for found, q in zip(payloads, checked, strict=True)],
                    deadline, record=recording)
        except EnqueueError as exc:
            sends_queued, queued = exc.sends_queued, 0
            for message in checked:  # the messages whose every send went
                if sends_queued < len(message.sends):
                    break
                sends_queued -= len(message.sends)
                queued += 1
            broken = checked[queued].sends if queued < len(checked) else []
            unqueued = list(chain(broken[sends_queued:],
                                  chain.from_iterable(q.sends for q in checked[queued + 1:])))
            if recording:
                outbox.discard((s.message_id for s in unqueued), timeout / 4)
            status.record_unqueued(unqueued, str(exc))
            if sends_queued:
                logger.error("message partly queued: %d of its %d sends (groups of up to "
                             "50 recipients) went to the broker", sends_queued, len(broken))
            if not self.fail_silently:
                exc.queued, exc.sends_queued = queued, sends_queued  # of the message that broke
                raise
            logger.error("%s (%d message(s) queued before)", exc, queued)
            return queued
        workers.warn_unconsumed(q.queue for q in checked)  # mail no worker would ever take
        return len(checked)


def _class_name(backend: BaseEmailBackend) -> str:
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def _likely_typos(unknown: list[str]) -> str:
    """``'lane' for 'lnae'`` for each unknown name close to one of our options (Django's own
    backends' names excepted), joined; empty when none is."""
    found = []
    for name in unknown:
        if name in _DJANGO_BACKEND_OPTIONS:
            continue
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        if close:
            found.append(f"{close[0]!r} for {name!r}")
    return ", ".join(found)


def _callers_stacklevel() -> int:
    """``stacklevel`` for a warning from ``SESBackend.__init__`` that points at the code that
    made the backend, past Django's frames (``get_connection``, ``mailers``)."""
    frame, level = inspect.currentframe(), 0
    try:
        frame, level = frame and frame.f_back, 1  # the __init__ that warns
        while frame is not None and _ours_or_djangos(frame.f_globals.get("__name__", "")):
            frame, level = frame.f_back, level + 1
        return level
    finally:
        del frame


def _ours_or_djangos(module: str) -> bool:
    return module == __name__ or module.startswith("django.")


def _warn_compatibility_mode(backend: BaseEmailBackend, names: str) -> None:
    """Django 6.1's warning for unknown options of a backend made without a ``MAILERS`` alias,
    worded and attributed as its own backends': to the code that made the backend, and none
    when Django itself made it (``send_mail``'s ``get_connection(username=...)``). Left to
    Django's ``BaseEmailBackend``, it would name this module (our ``super().__init__`` call)
    as the deprecated API's user, and warn even when Django made the backend."""
    message = (f"{_class_name(backend)}.__init__() does not support {names}. In Django 2028, "
               f"BaseEmailBackend will raise a TypeError for unknown keyword arguments.")
    django_deprecation.warn_about_external_use(
        message, _REMOVED_IN_2028,
        skip_name_prefixes=("django.core.mail.backends", f"{__name__}."))


@dataclass(frozen=True)
class Queued:
    """One accepted message's sends and the broker queue they go to (its lane's)."""

    sends: list[OutboundSend]
    queue: str | None


class EmailBackend(SESBackend):
    """``SESBackend`` under Django's conventional name, ``seacucumber.backend.EmailBackend``
    (every Django backend module names its class so). A subclass rather than a second name,
    so that Django's messages, which name the class, name the one the project configured."""
