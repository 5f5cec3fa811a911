"""The suppression lists: addresses the worker drops from every send, and addresses that left
one topic (``unsubscribe_topic``), dropped from that topic's sends only.

The first is filled by permanent bounces and complaints (``SEACUCUMBER_SUPPRESS_ON_BOUNCE`` /
``SEACUCUMBER_SUPPRESS_ON_COMPLAINT``), or by hand (``manage.py ses_suppression``, the admin);
the second by one-click unsubscribe (``events.unsubscribe``) or by hand (``--topic``).
The worker calls ``screen`` just before each SES call: one query for both lists; suppressed
recipients leave the SES envelope (the MIME headers are untouched: SES delivers to the envelope
only). A send left with no recipient is not sent, and ``message_suppressed`` says so.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from django.db import DatabaseError

from .. import signals
from ..conf import conf
from ..payload import OutboundSend

logger = logging.getLogger(__name__)


def active() -> bool:
    """Whether the worker checks the list (SEACUCUMBER_SUPPRESSION_LIST, or either
    SUPPRESS_ON_* setting when it is unset)."""
    setting = conf.SEACUCUMBER_SUPPRESSION_LIST
    if setting is None:
        return bool(conf.SEACUCUMBER_SUPPRESS_ON_BOUNCE or conf.SEACUCUMBER_SUPPRESS_ON_COMPLAINT)
    return bool(setting)


def normalize(address: str) -> str:
    """How addresses are stored and compared: stripped, lowercased."""
    return address.strip().lower()


def screen(outbound: OutboundSend) -> OutboundSend | None:
    """``outbound`` without its suppressed recipients, or None when none is left.

    A database error here is logged and the send goes to every recipient: failing open keeps
    accepted mail from being lost over a list lookup.
    """
    topic = outbound.options.get("unsubscribe_topic")
    every = active()
    if not every and not topic:
        return outbound
    from ..models import SuppressedAddress, TopicSuppression  # not at import: tasks.py imports

    wanted = [normalize(r) for r in outbound.recipients]
    queries = []
    if every:
        queries.append(SuppressedAddress.objects.filter(address__in=wanted))
    if topic:
        queries.append(TopicSuppression.objects.filter(address__in=wanted, topic=topic))
    # order_by(): sqlite takes no ORDER BY inside a UNION's parts
    first, *rest = [q.order_by().values_list("address", flat=True) for q in queries]
    try:  # one query: a UNION when both lists apply
        found = set(first.union(*rest) if rest else first)
    except DatabaseError:
        logger.exception("suppression list not checked for message %s", outbound.message_id)
        return outbound
    if not found:
        return outbound
    dropped = [r for r in outbound.recipients if normalize(r) in found]
    kept = tuple(r for r in outbound.recipients if normalize(r) not in found)
    logger.info("message %s: %d suppressed recipient(s) dropped, %d left",
                outbound.message_id, len(dropped), len(kept))
    signals.message_suppressed.send(
        sender=OutboundSend,
        message_id=outbound.message_id,
        sender_address=outbound.sender,
        suppressed=dropped,
        recipients=list(kept),
    )
    return dataclasses.replace(outbound, recipients=kept) if kept else None


def add(addresses: Iterable[str], reason: str, detail: str = "") -> int:
    """Add ``addresses`` (already listed ones are left as they are); returns how many are new."""
    from ..models import SuppressedAddress

    wanted = {normalize(a) for a in addresses if "@" in a}
    if not wanted:
        return 0
    known = set(
        SuppressedAddress.objects.filter(address__in=wanted).values_list("address", flat=True)
    )
    SuppressedAddress.objects.bulk_create(
        [SuppressedAddress(address=a, reason=reason, detail=detail[:2000])
         for a in sorted(wanted - known)],
        ignore_conflicts=True,
    )
    return len(wanted - known)


def remove(addresses: Iterable[str]) -> int:
    """Take ``addresses`` off the list; returns how many were on it."""
    from ..models import SuppressedAddress

    deleted, _ = SuppressedAddress.objects.filter(
        address__in={normalize(a) for a in addresses}
    ).delete()
    return deleted


def unsubscribe(address: str, topic: str, source: str) -> bool:
    """Record that ``address`` left ``topic``; True when it is new (``unsubscribed`` is then
    sent, once), False when it was already recorded: a repeated click changes nothing."""
    from ..models import TopicSuppression

    address = normalize(address)
    # get_or_create: the same click twice at once finds the other's row (unique constraint)
    _, created = TopicSuppression.objects.get_or_create(
        address=address, topic=topic, defaults={"source": source})
    if created:
        logger.info("%s left topic %s (%s)", address, topic, source)
        signals.unsubscribed.send(sender=TopicSuppression, address=address, topic=topic,
                                  source=source)
    return created


def resubscribe(addresses: Iterable[str], topic: str) -> int:
    """Take ``addresses`` off ``topic``'s list; returns how many were on it."""
    from ..models import TopicSuppression

    deleted, _ = TopicSuppression.objects.filter(
        address__in={normalize(a) for a in addresses}, topic=topic).delete()
    return deleted
