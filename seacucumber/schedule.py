"""Scheduled sending: when a message's ``send_at`` says it is due, read as django-anymail
reads its ``send_at`` attribute, so anymail-written code schedules unchanged.

A ``send_at`` may be an aware ``datetime``; a naive ``datetime`` or a ``date`` (its
midnight), taken in Django's current time zone; or an ``int``/``float`` POSIX timestamp
(``time.time()``'s). The backend checks it at ``send_messages`` (``due_time``), so a bad
value or one too far ahead is refused there, never in a worker. The worker waits for it
(``tasks``: the broker's countdown, in hops), checks the send log's cancel mark on each hop
(``seacucumber.cancel``), then books its lane's place in the shared rate.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

from django.utils import timezone

from .conf import conf
from .exceptions import InvalidMessageOption

#: The furthest ahead ``SEACUCUMBER_MAX_SCHEDULE`` may allow (a payload further ahead than
#: this is not one the backend wrote).
MAX_SCHEDULE_CEILING = 366 * 24 * 3600.0


def max_schedule() -> float:
    """``SEACUCUMBER_MAX_SCHEDULE`` in seconds, within ``MAX_SCHEDULE_CEILING``."""
    return min(float(conf.SEACUCUMBER_MAX_SCHEDULE), MAX_SCHEDULE_CEILING)


def _timestamp(value: Any, name: str) -> float:
    """``value`` as a POSIX timestamp; ``InvalidMessageOption`` naming ``name`` for anything
    anymail's ``send_at`` would not take."""
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            value = timezone.make_aware(value, timezone.get_current_timezone())
        return value.timestamp()
    if isinstance(value, dt.date):  # a day: its start, in the current time zone
        start = dt.datetime.combine(value, dt.time.min)
        return timezone.make_aware(start, timezone.get_current_timezone()).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            found = float(value)
        except OverflowError:  # an int past any float
            found = math.inf
        if not math.isfinite(found):
            raise InvalidMessageOption(f"message {name}={value!r} is not a finite timestamp")
        return found
    raise InvalidMessageOption(
        f"message {name}={value!r} is not a datetime, a date or a POSIX timestamp "
        f"(int or float), as anymail's send_at takes")


def due_time(value: Any, name: str = "send_at", now: float | None = None) -> float | None:
    """The POSIX time a message with ``send_at`` ``value`` is due, or None when it is due
    now (no value, or a time already past: it is sent at once). ``InvalidMessageOption``
    for a value of the wrong kind or further ahead than ``SEACUCUMBER_MAX_SCHEDULE``."""
    if value is None:
        return None
    when = _timestamp(value, name)
    now = time.time() if now is None else now
    if when <= now:
        return None
    limit = max_schedule()
    if when - now > limit:
        raise InvalidMessageOption(
            f"message {name}={value!r} is {(when - now) / 86400:.1f} days ahead; "
            f"SEACUCUMBER_MAX_SCHEDULE allows at most {limit / 86400:g} days")
    return when
