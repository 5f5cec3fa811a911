"""A message's bytes: what SES gets for a Django ``EmailMessage``.

``message_bytes`` returns the bytes the Django version in use writes for the message (its
``message()``, written by the email package), with CRLF line ends, as SES and SMTP want
them, and 7-bit clean (``seven_bit``). On Django 6.x that is ``message(policy=SMTP)``; on 5.2
Django's legacy MIME classes under the ``compat32`` policy.

Most mail is one short text body in UTF-8 with a few short headers, and building it through
the email package was about two thirds of what ``send_messages`` spent on such a message.
For exactly that shape (``_plain_bytes``: Django's own ``EmailMessage`` or an
``EmailMultiAlternatives`` with no alternatives, no attachments, a body of printable ASCII
whose lines are short, headers of printable ASCII that need no folding or encoding), the
bytes are written directly: the same bytes (the tests compare the two over generated
messages on each supported Django), at a sixth of the cost on Django 5.2 and a fortieth on
6.x, whose email API parses every header. Anything else, and any doubt, goes through Django.
"""

from __future__ import annotations

import base64
import copy
import re
import time
from datetime import UTC, datetime
from email import policy, quoprimime, utils
from email.generator import BytesGenerator
from email.message import Message
from io import BytesIO
from typing import Any, TypeVar

import django
from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.utils import DNS_NAME
from django.utils.functional import Promise
from django.utils.timezone import get_current_timezone

#: Django 6.0 builds messages with Python's modern email API (``message(policy=...)``);
#: Django 5.2 with its own legacy MIME classes.
MODERN_EMAIL = django.VERSION >= (6, 0)


def message_bytes(message: EmailMessage) -> bytes:
    """The message's bytes: CRLF line ends, built as the Django version in use intends (on
    6.x with the SMTP email policy), 7-bit clean (``seven_bit``). ``ValueError`` (Django
    5.2's ``BadHeaderError`` is one) for a message Django refuses to build."""
    plain = _plain_bytes(message)
    return plain if plain is not None else django_bytes(message)


def django_bytes(message: EmailMessage) -> bytes:
    """``message_bytes`` built through Django and the email package, whatever the message."""
    if MODERN_EMAIL:
        return bytes(seven_bit(message.message(policy=policy.SMTP)).as_bytes())
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=QUICK_FOLD).flatten(
        seven_bit(message.message()), linesep="\r\n")
    return out.getvalue()


# --- the plain message, written directly -------------------------------------------------------

#: Octets per line that keep a body 7-bit as it is: RFC 5322's 998 on Django 5.2; on 6.x the
#: email package's ``set_content`` writes a longer line as quoted-printable past 78.
_BODY_LINE = 78 if MODERN_EMAIL else 998
_PLAIN_BODY = re.compile(r"[\t\n\r\x20-\x7e]*")
_LONG_LINE = re.compile(r"[^\r\n]{" + str(_BODY_LINE + 1) + "}")
_NEWLINE = re.compile(r"\r\n|\r|\n")
#: Line breaks the email package folds or splits headers at: CR and LF (what Django refuses),
#: and the others Python's ``str.splitlines`` knows, which would be turned silently into folds
#: or spaces. A header value with one is header injection (``payload``,
#: ``anymail_attributes``).
LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def line_break(value: str) -> str | None:
    """The first line break in ``value`` as ``U+000A``, or None."""
    found = LINE_BREAKS.intersection(value)
    return f"U+{ord(min(found)):04X}" if found else None


#: An RFC 5322 field name: printable US-ASCII (33-126) but the colon. ``send_messages`` refuses
#: any other header name (``payload``).
FIELD_NAME = re.compile(r"[!-9;-~]+")
#: What a header line may be, name, ": " and value, and still need no folding.
_HEADER_LINE = 78
#: Unstructured values the modern email API writes back as given: words of printable ASCII
#: one blank apart, no encoded word (``=?``, which its parser would decode).
_MODERN_TEXT = re.compile(r"(?!.*=\?)[!-~]+(?: [!-~]+)*")
#: Address lists the modern email API writes back as given: ``local@domain`` addresses of
#: atoms, each bare or after a display name of atoms one blank apart (no quotes, comments,
#: routes or encoded words), ", " apart.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDRESS = rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_NAME_WORD = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"
_MAILBOX = rf"(?:{_ADDRESS}|{_NAME_WORD}(?: {_NAME_WORD})* <{_ADDRESS}>)"
_MODERN_ADDRESSES = re.compile(rf"{_MAILBOX}(?:, {_MAILBOX})*")
_MODERN_MESSAGE_ID = re.compile(r"<[0-9.]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>")
#: Headers the modern email API parses by kind (``email.headerregistry``), writes back from
#: the parse and may refuse twice: an extra header of such a name goes through Django.
_MODERN_PARSED = frozenset(policy.SMTP.header_factory.registry)  # type: ignore[attr-defined]
_ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to"})


def _plain_bytes(message: EmailMessage) -> bytes | None:
    """The bytes of a plain message (see the module's docstring), or None for any other."""
    kind = type(message)
    if kind is not EmailMessage and (kind is not EmailMultiAlternatives
                                     or message.alternatives):
        return None
    body, subtype = message.body, message.content_subtype
    if (message.attachments or type(body) is not str or subtype not in ("plain", "html")
            or (message.encoding or settings.DEFAULT_CHARSET) != "utf-8"
            or not _PLAIN_BODY.fullmatch(body) or _LONG_LINE.search(body)):
        return None
    headers = _plain_headers(message)
    if headers is None:
        return None
    if MODERN_EMAIL:  # set_content: each line CRLF-ended, the last too
        text = "".join(line + "\r\n" for line in body.splitlines()) or "\r\n"
        head = (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
                "Content-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n")
    else:  # the generator writes the body's own line breaks as CRLF
        text = _NEWLINE.sub("\r\n", body)
        head = (f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
                "MIME-Version: 1.0\r\nContent-Transfer-Encoding: 7bit\r\n")
    return "".join((head, *headers, "\r\n", text)).encode("ascii")


def _plain_headers(message: EmailMessage) -> list[str] | None:
    """The header lines Django's ``message()`` sets, in its order, or None when one of them
    is not a plain value (the caller then builds the message through Django)."""
    extra = message.extra_headers
    fields: list[tuple[str, Any, str]] = [  # name, value, and which kind of value it is
        ("Subject", message.subject, "text"),
        ("From", extra.get("From", message.from_email), "addresses")]
    for name, values in (("To", message.to), ("Cc", message.cc),
                         ("Reply-To", message.reply_to)):
        if name in extra:
            fields.append((name, extra[name], "addresses"))
        elif values:
            fields.append((name, ", ".join(str(value) for value in values), "addresses"))
    lowered = {name.lower() for name in extra}
    if "date" not in lowered:
        fields.append(("Date", _date(), "date"))
    if "message-id" not in lowered:
        fields.append(("Message-ID", utils.make_msgid(domain=DNS_NAME), "message-id"))
    fields.extend((name, value, "extra") for name, value in extra.items()
                  if name.lower() not in _ADDRESS_HEADERS)
    lines = []
    for name, value, kind in fields:
        if isinstance(value, Promise):
            value = str(value)
        if type(value) is not str or not _plain_header(name, value, kind):
            return None
        lines.append(f"{name}: {value}\r\n")
    return lines


def _plain_header(name: str, value: str, kind: str) -> bool:
    """Whether Django and the email package write ``name: value`` on one line as given."""
    if (not FIELD_NAME.fullmatch(name) or not value.isascii() or not value.isprintable()
            or len(name) + 2 + len(value) > _HEADER_LINE):
        return False
    if not MODERN_EMAIL:  # compat32 writes such a value as it is; Django 5.2 puts a Subject
        # through email.header.Header, which drops one trailing blank
        return name.lower() != "subject" or not value.endswith(" ")
    if kind == "addresses":
        return _MODERN_ADDRESSES.fullmatch(value) is not None
    if kind == "message-id":
        return _MODERN_MESSAGE_ID.fullmatch(value) is not None
    if kind == "extra" and name.lower() in _MODERN_PARSED:
        return False
    return kind == "date" or _MODERN_TEXT.fullmatch(value) is not None


def _date() -> str:
    """The Date header's value as Django's ``message()`` writes it: in UTC, the same text for
    a whole second, so it is written once a second (``_last_date``)."""
    if settings.EMAIL_USE_LOCALTIME:  # the zone may change (TIME_ZONE): written each time
        if not MODERN_EMAIL:
            return utils.formatdate(localtime=True)
        return utils.format_datetime(datetime.now(get_current_timezone()))
    global _last_date
    second = int(time.time())
    last = _last_date
    if last[0] != second:
        last = _last_date = (second, utils.formatdate(second) if not MODERN_EMAIL
                             else utils.format_datetime(datetime.fromtimestamp(second, UTC)))
    return last[1]


#: The last whole second a UTC Date was written for, and its text: writing it was a tenth
#: of a plain message's cost (issue 27's fourth round).
_last_date: tuple[int, str] = (-1, "")


# --- Django 5.2: the compat32 policy, written quicker ------------------------------------------

class _QuickFoldCompat32(policy.Compat32):
    """The email package's ``compat32`` policy (Django 5.2's messages use it), writing a
    header that needs no folding (printable ASCII within the line length) directly. Those are
    the same bytes ``compat32`` writes through its ``Header`` class (tests compare the two),
    which cost about 40% of building a whole message: most headers are such headers."""

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        limit = self.max_line_length or 0
        if (isinstance(value, str) and value.isascii() and value.isprintable()
                and (not limit or len(name) + 2 + len(value) <= limit)):
            return f"{name}: {value}{self.linesep}"
        return str(super()._fold(name, value, sanitize))  # type: ignore[misc]


QUICK_FOLD = _QuickFoldCompat32(linesep="\r\n")


# --- 7-bit clean --------------------------------------------------------------------------------

#: Transfer encodings whose bytes are 7-bit by definition.
_ENCODED = frozenset({"quoted-printable", "base64"})
_MAX_LINE = 998  # RFC 5322: octets per line, CRLF excluded


_Part = TypeVar("_Part", bound=Message)


def seven_bit(part: _Part) -> _Part:
    """``part`` with every leaf whose body is not 7-bit clean (8-bit or binary data, or a line
    over 998 octets) re-encoded: text as quoted-printable, anything else as base64.

    Why: Django sends ``utf-8`` text as ``8bit`` (5.2 when no line is long, 6.x through the
    email package's own choice), and RFC 6376 section 5.3 asks a DKIM signer to convert such
    parts to 7-bit first; a relay that converts them later (8BITMIME downgrade, SES's tracking
    rewrites) breaks the signature. Copy on write: a part that changes is a copy, as are the
    containers above it, so a MIME part the caller attached is left as it was."""
    payload: Any = part.get_payload()
    if isinstance(payload, list):
        converted = [seven_bit(child) for child in payload]
        cte = str(part.get("Content-Transfer-Encoding", "")).lower()
        if all(a is b for a, b in zip(converted, payload, strict=True)) and cte not in (
                "8bit", "binary"):
            return part
        container = copy.copy(part)
        container.set_payload(converted)
        if cte:  # a message/rfc822 or multipart labelled 8bit: its contents are 7-bit now
            del container["Content-Transfer-Encoding"]
            container["Content-Transfer-Encoding"] = "7bit"
        return container
    cte = str(part.get("Content-Transfer-Encoding", "7bit")).lower()
    if cte in _ENCODED or not isinstance(payload, str):
        return part
    data: Any = part.get_payload(decode=True)
    if data.isascii() and all(len(line) <= _MAX_LINE for line in data.splitlines()):
        if cte == "7bit":
            return part
        leaf = copy.deepcopy(part)  # 8bit-labelled, but 7-bit bytes: the label tells the truth
        del leaf["Content-Transfer-Encoding"]
        leaf["Content-Transfer-Encoding"] = "7bit"
        return leaf
    leaf = copy.deepcopy(part)
    del leaf["Content-Transfer-Encoding"]
    if leaf.get_content_maintype() == "text":  # readable and small for mostly-ASCII text
        leaf.set_payload(quoprimime.body_encode(data.decode("latin-1")))
        leaf["Content-Transfer-Encoding"] = "quoted-printable"
    else:
        leaf.set_payload(base64.encodebytes(data).decode("ascii"))
        leaf["Content-Transfer-Encoding"] = "base64"
    return leaf
