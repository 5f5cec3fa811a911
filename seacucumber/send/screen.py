"""Screening, the step before a send's attempt: recipients the staging allowlist does not
allow (``SEACUCUMBER_RECIPIENT_ALLOWLIST``, no query), then those on the suppression lists and,
for topic mail, those who left the topic (one query for both lists), leave the SES envelope
(the MIME headers are untouched: SES delivers to the envelope only). A recipient off the
allowlist is replaced by ``SEACUCUMBER_RECIPIENT_REDIRECT`` when it is set. Each drop is
recorded once (``outcome.suppressed``: the status record, the counters, ``message_suppressed``);
a send left with no recipient is not sent.

A malformed allowlist setting refuses every send (``ImproperlyConfigured``: failing closed,
mail is never let through for a typo); a database error looking up the suppression lists is
logged and the send goes to every recipient (failing open: accepted mail is never lost over a
list lookup).
"""

from __future__ import annotations

import dataclasses
import logging

from django.db import DatabaseError

from ..conf import conf
from ..payload import OutboundSend, normalize_address
from . import allowlist, outcome

logger = logging.getLogger(__name__)


def screen(outbound: OutboundSend) -> OutboundSend | None:
    """``outbound`` with only the recipients it may reach, or None when none is left."""
    screened = by_allowlist(outbound)
    return None if screened is None else by_suppression_lists(screened)


def suppression_list_active() -> bool:
    """Whether the worker checks the suppression list (SEACUCUMBER_SUPPRESSION_LIST, or
    either SUPPRESS_ON_* setting when it is unset)."""
    setting = conf.SEACUCUMBER_SUPPRESSION_LIST
    if setting is None:
        return bool(conf.SEACUCUMBER_SUPPRESS_ON_BOUNCE or conf.SEACUCUMBER_SUPPRESS_ON_COMPLAINT)
    return bool(setting)


def by_allowlist(outbound: OutboundSend) -> OutboundSend | None:
    """``outbound`` with only allowed recipients (plus the redirect address when some were
    not allowed and it is set), or None when none is left. ``ImproperlyConfigured`` when the
    settings are malformed: the caller fails the message rather than mail anyone."""
    allowed = allowlist.allowlist()
    if allowed is None:
        return outbound
    refused = [r for r in outbound.recipients if not allowed.allows(r)]
    if not refused:
        return outbound
    kept = [r for r in outbound.recipients if allowed.allows(r)]
    target = allowlist.redirect()
    if target is not None and target.lower() not in {r.lower() for r in kept}:
        kept.append(target)
    logger.info("message %s: %d recipient(s) not on SEACUCUMBER_RECIPIENT_ALLOWLIST %s, "
                "%d left", outbound.message_id, len(refused),
                f"redirected to {target}" if target else "dropped", len(kept))
    return _drop(outbound, refused, kept, reason=outcome.ALLOWLIST, redirected_to=target)


def by_suppression_lists(outbound: OutboundSend) -> OutboundSend | None:
    """``outbound`` without its suppressed recipients, or None when none is left."""
    found = _suppressed_among(outbound)
    if not found:
        return outbound
    dropped = [r for r in outbound.recipients if normalize_address(r) in found]
    kept = [r for r in outbound.recipients if normalize_address(r) not in found]
    logger.info("message %s: %d suppressed recipient(s) dropped, %d left",
                outbound.message_id, len(dropped), len(kept))
    return _drop(outbound, dropped, kept)


def _suppressed_among(outbound: OutboundSend) -> set[str]:
    """Which of the recipients (normalized) either list holds: one query, a UNION when both
    apply; none when neither applies or the lookup failed."""
    topic = outbound.options.get("unsubscribe_topic")
    every = suppression_list_active()
    if not every and not topic:
        return set()
    from ..models import SuppressedAddress, TopicSuppression  # not at import: tasks.py imports

    wanted = [normalize_address(r) for r in outbound.recipients]
    queries = []
    if every:
        queries.append(SuppressedAddress.objects.filter(address__in=wanted))
    if topic:
        queries.append(TopicSuppression.objects.filter(address__in=wanted, topic=topic))
    # order_by(): sqlite takes no ORDER BY inside a UNION's parts
    first, *rest = [q.order_by().values_list("address", flat=True) for q in queries]
    try:
        return set(first.union(*rest) if rest else first)
    except DatabaseError:
        logger.exception("suppression list not checked for message %s", outbound.message_id)
        return set()


def _drop(outbound: OutboundSend, dropped: list[str], kept: list[str],
          **extra: str | None) -> OutboundSend | None:
    """The one "drop recipients" step: recorded, and ``outbound`` with ``kept`` (or None)."""
    outcome.suppressed(outbound, dropped, kept, **extra)
    return dataclasses.replace(outbound, recipients=tuple(kept)) if kept else None
