"""Safe staging: with ``SEACUCUMBER_RECIPIENT_ALLOWLIST`` set, mail reaches only the listed
recipients, so a staging copy of production data cannot mail real customers.

Entries: an exact address (``qa@example.com``), a domain (``example.com`` or ``@example.com``:
that domain only, not its subdomains) or an ``fnmatch`` pattern (``*@example.com``,
``qa+*@example.com``; a pattern without ``@`` is matched against the domain:
``*.example.com``). Matching is case-insensitive; domains in IDN form are compared in punycode,
as the payload holds them.

The worker screens each send by it (``send.screen``) before the suppression lists, with no
query and no Redis: a
recipient not allowed leaves the SES envelope (or, with ``SEACUCUMBER_RECIPIENT_REDIRECT``, is
replaced by that one address; the MIME headers still show who it was meant for). It is logged
(INFO, with the count) and told with ``message_suppressed`` (``reason="allowlist"``), so the
status record, the ``sends`` counter (outcome ``not_allowed``) and an operator's receivers see
it; a send left with no recipient is not sent. A malformed setting refuses every send in the
worker (failing closed: mail is never let through for a typo) and is a system check error
(``checks.py``) before that.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import DomainNameValidator

from ..conf import conf
from ..exceptions import InvalidMessage
from ..payload import bare_address

logger = logging.getLogger(__name__)

_PATTERN_CHARS = frozenset("*?[")
_validate_domain = DomainNameValidator(accept_idna=False)


@dataclass(frozen=True)
class Allowlist:
    """The parsed setting: exact addresses, domains and patterns, all lower case."""

    addresses: frozenset[str]
    domains: frozenset[str]
    patterns: tuple[str, ...]

    def allows(self, address: str) -> bool:
        address = address.strip().lower()
        domain = address.rpartition("@")[2]
        if address in self.addresses or domain in self.domains:
            return True
        return any(fnmatchcase(address if "@" in p else domain, p) for p in self.patterns)


def _domain(text: str, entry: Any) -> str:
    try:
        domain = text.encode("idna").decode("ascii")
        _validate_domain(domain)
    except (UnicodeError, ValidationError):
        raise ImproperlyConfigured(
            f"SEACUCUMBER_RECIPIENT_ALLOWLIST entry {entry!r} is not a domain name") from None
    if "." not in domain:
        raise ImproperlyConfigured(
            f"SEACUCUMBER_RECIPIENT_ALLOWLIST entry {entry!r} is not a full domain name")
    return domain


@functools.lru_cache(maxsize=8)
def _parse(entries: tuple[Any, ...]) -> Allowlist:
    addresses: set[str] = set()
    domains: set[str] = set()
    patterns: list[str] = []
    for entry in entries:
        text = entry.strip().lower() if isinstance(entry, str) else ""
        if not text or any(c.isspace() for c in text):
            raise ImproperlyConfigured(
                f"SEACUCUMBER_RECIPIENT_ALLOWLIST entry {entry!r} is not an address, a domain "
                "or a pattern (a non-empty string without spaces)")
        if _PATTERN_CHARS.intersection(text):
            local, at, domain = text.rpartition("@")
            if at and (not local or not domain):
                raise ImproperlyConfigured(
                    f"SEACUCUMBER_RECIPIENT_ALLOWLIST pattern {entry!r} needs both sides of "
                    "the @ ('*@example.com')")
            patterns.append(text)
        elif text.startswith("@"):
            domains.add(_domain(text[1:], entry))
        elif "@" in text:
            try:
                addresses.add(bare_address(text, "SEACUCUMBER_RECIPIENT_ALLOWLIST").lower())
            except InvalidMessage as exc:
                raise ImproperlyConfigured(str(exc)) from None
        else:
            domains.add(_domain(text, entry))
    return Allowlist(frozenset(addresses), frozenset(domains), tuple(patterns))


def allowlist() -> Allowlist | None:
    """The allowlist in force (None: the setting is unset, everyone may be mailed);
    ``ImproperlyConfigured`` naming a malformed entry."""
    value = conf.SEACUCUMBER_RECIPIENT_ALLOWLIST
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple | set | frozenset):
        raise ImproperlyConfigured(
            "SEACUCUMBER_RECIPIENT_ALLOWLIST must be a list of addresses, domains and "
            f"patterns, not {type(value).__name__}")
    return _parse(tuple(sorted(value, key=str)))


def redirect() -> str | None:
    """``SEACUCUMBER_RECIPIENT_REDIRECT`` as an envelope address, or None;
    ``ImproperlyConfigured`` when it is not one address."""
    value = conf.SEACUCUMBER_RECIPIENT_REDIRECT
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ImproperlyConfigured("SEACUCUMBER_RECIPIENT_REDIRECT must be one address (a "
                                   f"string), not {type(value).__name__}")
    try:
        return bare_address(value, "SEACUCUMBER_RECIPIENT_REDIRECT")
    except InvalidMessage as exc:
        raise ImproperlyConfigured(str(exc)) from None


def check_settings() -> None:
    """Both settings parsed; ``ImproperlyConfigured`` naming the problem."""
    allowlist()
    redirect()
