"""The suppression lists: addresses the worker drops from every send, and addresses that left
one topic (``unsubscribe_topic``), dropped from that topic's sends only.

The first is filled by permanent bounces and complaints (``SEACUCUMBER_SUPPRESS_ON_BOUNCE`` /
``SEACUCUMBER_SUPPRESS_ON_COMPLAINT``), or by hand (``manage.py ses_suppression``, the admin);
the second by one-click unsubscribe (``events.unsubscribe``) or by hand (``--topic``).
The worker screens each send by both lists (``send.screen``) just before its SES call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from .. import signals
from ..payload import normalize_address as normalize

logger = logging.getLogger(__name__)


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
