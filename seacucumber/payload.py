"""The task payload: one SES send, as plain JSON.

``build_sends`` turns a Django ``EmailMessage`` into one ``OutboundSend`` per group of at most
50 recipients (SES's limit), or one per recipient for mail with an ``unsubscribe_topic`` (each
with its own RFC 8058 one-click unsubscribe link), after checking everything SES would refuse,
so bad input fails at ``send_messages`` and never in a worker. ``OutboundSend.to_json``/
``from_json`` are the only (de)serialisers of the task payload: JSON types only, raw MIME as
base64 text.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import errors, headerregistry, policy
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings as django_settings
from django.core import signing
from django.core.mail import EmailMessage
from django.utils.encoding import force_bytes

from .anymail import attributes as anymail_attributes
from .anymail.attributes import AnymailAttributes
from .conf import Lane, conf, lanes
from .conf import lane as conf_lane
from .exceptions import (
    HeaderInjection,
    InvalidMessage,
    InvalidMessageOption,
    InvalidOption,
    InvalidUnsubscribeToken,
    MalformedPayload,
)
from .mime import FIELD_NAME, line_break, message_bytes
from .schedule import MAX_SCHEDULE_CEILING, due_time

#: The payload version this code writes when a send needs nothing a version-1 reader lacks.
#: Version 2 adds the per-mailer client options (``region``, ``endpoint_url``, ``profile``);
#: version 3 the per-message SES controls (``lane`` other than the first, ``tags``,
#: ``tenant``, ``list_management``, ``unsubscribe_topic``), whose values may be JSON objects,
#: and a claim check (``"claim"`` instead of ``"raw"``: the raw message is in a store,
#: ``shared.claimcheck``); version 4 a scheduled send's ``send_at`` (a POSIX time, a number:
#: ``seacucumber.schedule``) and ``feedback_address`` (a message's own return path from
#: django-anymail's ``envelope_sender``, which v2 also forwards feedback to). A payload is
#: written at the lowest version that holds its options and claim, so during a rolling
#: deploy old workers keep reading everything else; a payload of a version a worker does not
#: know fails with its reason recorded (``MalformedPayload``), never sent otherwise than
#: asked. Upgrade workers before web processes when mail uses them.
PAYLOAD_VERSION = 1
CLAIM_VERSION = 3
#: Where a claim-checked raw message may be stored.
CLAIM_STORES = ("redis", "s3")
MAX_RECIPIENTS_PER_SEND = 50
MAX_SIZE_V1 = 10 * 1024 * 1024
MAX_SIZE_V2 = 40 * 1024 * 1024
#: Room kept for the DKIM-Signature header the worker adds when signing is on.
DKIM_SIGNATURE_ALLOWANCE = 4096
#: How far a payload's creation time may be ahead of the worker's clock (hosts' clocks
#: differ, but not by this).
MAX_CLOCK_SKEW = 3600.0

#: Our message ids (a UUID4 hex, ``-n`` appended for a message's n-th send): what a payload's
#: ``id`` must be, since every send carries it as an SES message tag value.
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")

#: Options a send carries to the worker, by the payload version that has it.
PAYLOAD_OPTIONS = {
    "configuration_set": 1, "source_arn": 1, "from_arn": 1, "return_path_arn": 1,
    "endpoint_id": 1, "region": 2, "endpoint_url": 2, "profile": 2,
    "lane": 3, "tags": 3, "tenant": 3, "list_management": 3, "unsubscribe_topic": 3,
    "send_at": 4, "feedback_address": 4,
}
#: The payload versions this code reads.
PAYLOAD_VERSIONS = (1, 2, 3, 4)
#: Options whose payload value is an object of strings; every other option is a string.
_OBJECT_OPTIONS = frozenset({"tags", "list_management"})


def _payload_value_ok(name: str, value: Any) -> bool:
    if name == "send_at":
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))
    if name in _OBJECT_OPTIONS:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return isinstance(value, str)


@dataclass(frozen=True)
class OutboundSend:
    """One call to SES: raw MIME, envelope, our id, and per-message options.

    ``claim``: set when the raw message travels by claim check (``shared.claimcheck``):
    ``{"store": "redis"|"s3", "key": ..., "sha256": hex, "size": bytes}``. The payload then
    carries the claim instead of ``raw``; read back from one, ``raw`` is empty until the
    worker fetches it."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    raw: bytes
    created: float
    options: dict[str, Any] = field(default_factory=dict)
    claim: dict[str, Any] | None = None

    @property
    def lane(self) -> str | None:
        """The send's lane (None: the first lane, which mail naming no lane takes)."""
        return self.options.get("lane")

    @property
    def send_at(self) -> float | None:
        """When a scheduled send is due (a POSIX time), or None: it goes at once."""
        return self.options.get("send_at")

    @property
    def starts(self) -> float:
        """When the send's life starts: its scheduled time, else ``created``. Its lifetime
        (``SEACUCUMBER_MESSAGE_LIFETIME``) and its latency are counted from here."""
        return max(self.created, self.send_at or self.created)

    def to_json(self) -> dict[str, Any]:
        """The task payload: JSON types only; the lowest version that holds its options
        (and its claim check)."""
        version = max((PAYLOAD_OPTIONS[k] for k in self.options), default=PAYLOAD_VERSION)
        body: dict[str, Any]
        if self.claim is not None:
            version, body = max(version, CLAIM_VERSION), {"claim": dict(self.claim)}
        else:
            body = {"raw": base64.b64encode(self.raw).decode("ascii")}
        return {
            "v": version,
            "id": self.message_id,
            "from": self.sender,
            "to": list(self.recipients),
            **body,
            "created": self.created,
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, data: Any) -> OutboundSend:
        """Parse a task payload; anything our backend would not have written raises
        ``MalformedPayload`` with the reason. The envelope and the raw message's header block
        are checked again as ``send_messages`` checked them (``envelope_problem``,
        ``header_block_problem``): a task written into the broker by hand gets no further."""
        if not isinstance(data, dict):
            raise MalformedPayload(f"payload is {type(data).__name__}, not an object")
        version = data.get("v")
        if version not in PAYLOAD_VERSIONS or isinstance(version, bool):
            raise MalformedPayload(f"unknown payload version {version!r}")
        message_id, sender, recipients = _read_envelope(data)
        created, options = _read_created(data), _read_options(data, version)
        if options.get("send_at", created) > created + MAX_SCHEDULE_CEILING + MAX_CLOCK_SKEW:
            raise MalformedPayload(f"payload send_at {options['send_at']!r} is further "
                                   "ahead of its creation than any schedule")
        raw, claim = data.get("raw"), data.get("claim")
        if claim is not None and (version < CLAIM_VERSION or raw is not None):
            raise MalformedPayload("payload has a claim check but is not version 3 or later "
                                   "with no raw message")
        if claim is not None:
            return cls(message_id, sender, recipients, b"", created, options, _claim(claim))
        return cls(message_id, sender, recipients, _read_raw(raw), created, options)


def _read_envelope(data: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """A payload's id, sender and recipients, checked (``MalformedPayload``)."""
    message_id, sender, recipients = data.get("id"), data.get("from"), data.get("to")
    if not isinstance(message_id, str) or not message_id:
        raise MalformedPayload("payload has no message id")
    if not MESSAGE_ID.fullmatch(message_id):
        raise MalformedPayload(f"payload message id {message_id!r} is not one of ours "
                               "(letters, digits, _ and -: it is an SES tag value)")
    if not isinstance(sender, str) or "@" not in sender:
        raise MalformedPayload(f"payload sender {sender!r} is not an address")
    if (
        not isinstance(recipients, list)
        or not recipients
        or len(recipients) > MAX_RECIPIENTS_PER_SEND
        or not all(isinstance(r, str) and "@" in r for r in recipients)
    ):
        raise MalformedPayload("payload recipients are not 1 to 50 addresses")
    if (problem := envelope_problem(sender, recipients)) is not None:
        raise MalformedPayload(problem)
    return message_id, sender, tuple(recipients)


def _read_created(data: dict[str, Any]) -> float:
    """A payload's creation time: a finite number, not in the future."""
    created = data.get("created")
    if (not isinstance(created, int | float) or isinstance(created, bool)
            or not math.isfinite(created)):
        raise MalformedPayload("payload has no creation time")
    if created > time.time() + MAX_CLOCK_SKEW:  # its lifetime would never end
        raise MalformedPayload(f"payload creation time {created!r} is in the future")
    return float(created)


def _read_options(data: dict[str, Any], version: int) -> dict[str, Any]:
    """A payload's options: only those its version has, each of its kind."""
    options = data.get("options", {})
    if not isinstance(options, dict) or not all(
        PAYLOAD_OPTIONS.get(k, 99) <= version and _payload_value_ok(k, v)
        for k, v in options.items()
    ):
        raise MalformedPayload(f"payload options are not version {version}'s options")
    return options


def _read_raw(raw: Any) -> bytes:
    """A payload's raw message: base64 within SES's largest message, a header block as
    ``message_bytes`` writes it."""
    if not isinstance(raw, str):
        raise MalformedPayload("payload has no raw message")
    if len(raw) > MAX_RAW_BASE64:  # refused before decoding: no memory spent on it
        raise MalformedPayload(f"raw message is {len(raw):,} characters of base64, over "
                               f"SES's largest message ({MAX_SIZE_V2:,} bytes)")
    try:
        raw_bytes = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedPayload(f"raw message is not base64: {exc}") from None
    if (problem := header_block_problem(raw_bytes)) is not None:
        raise MalformedPayload(problem)
    return raw_bytes


#: The longest raw message a payload may carry, as base64 (4 characters per 3 bytes).
MAX_RAW_BASE64 = -(-MAX_SIZE_V2 // 3) * 4


def envelope_problem(sender: str, recipients: list[str] | tuple[str, ...]) -> str | None:
    """Why a payload's envelope is not what ``bare_address`` writes, or None. Every address
    ``send_messages`` accepts is printable ASCII (IDN domains in punycode), so a line break,
    a control character or anything else is a payload written by hand. Cheap: the worker
    checks every payload."""
    every = sender + "".join(recipients)  # one pass in C for the whole envelope
    if every.isascii() and every.isprintable():
        return None
    for role, address in (("sender", sender), *(("recipient", r) for r in recipients)):
        if not (address.isascii() and address.isprintable()):
            return (f"payload {role} {address!r} is not printable ASCII (a line break or "
                    "a control character): header injection refused")
    return None  # unreachable: some address above is the one


#: A header block as ``message_bytes`` writes it: fields of an RFC 5322 name (printable
#: ASCII but the colon), a colon and a value, folded lines starting with a blank, every
#: line ended by CRLF (no lone CR or LF, no NUL).
_NAME = FIELD_NAME.pattern.encode("ascii")
_HEADER_BLOCK = re.compile(rb"%s:(?:[^\r\n\0]*\r\n(?:%s:|[ \t]))*[^\r\n\0]*\r\n" % (_NAME, _NAME))
_HEADER_LINE = re.compile(rb"%s:|[ \t]" % _NAME)


def header_block_problem(raw: bytes) -> str | None:
    """Why ``raw``'s header block (up to the first empty line) is not one ``message_bytes``
    writes, naming the first bad line, or None. A header name with a line break in it
    (``{"X-A\\r\\nBcc: x@evil.example\\r\\nX-B": ...}``) shows here as a line that is no
    field."""
    end = raw.find(b"\r\n\r\n")
    block = raw[: end + 2] if end >= 0 else raw
    if _HEADER_BLOCK.fullmatch(block) is not None:
        return None
    if end < 0 and not raw.endswith(b"\r\n"):
        return "raw message has no header block ended by an empty line"
    for line in block.split(b"\r\n")[:-1]:
        if not _HEADER_LINE.match(line) or b"\r" in line or b"\n" in line or b"\0" in line:
            return (f"raw message header line {line[:80]!r} is not an RFC 5322 field (a "
                    "name of printable ASCII without a colon, then a colon): header "
                    "injection refused")
    return "raw message has no header block"


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _claim(claim: Any) -> dict[str, Any]:
    """A payload's claim check, checked: store, key, sha256, size and nothing else."""
    if (
        not isinstance(claim, dict)
        or set(claim) != {"store", "key", "sha256", "size"}
        or claim["store"] not in CLAIM_STORES
        or not isinstance(claim["key"], str) or not claim["key"]
        or not isinstance(claim["sha256"], str) or not _SHA256.fullmatch(claim["sha256"])
        or not isinstance(claim["size"], int) or isinstance(claim["size"], bool)
        or claim["size"] < 0
    ):
        raise MalformedPayload(f"payload claim check {claim!r} is not a store, key, sha256 "
                               "and size")
    return dict(claim)


def size_limit() -> int:
    """SES's message size limit for the API in use, less room for a DKIM signature when
    the worker will sign."""
    limit = MAX_SIZE_V2 if conf.USE_SES_V2 else MAX_SIZE_V1
    if conf.DKIM_PRIVATE_KEY or conf.SEACUCUMBER_DKIM_KEYS:
        limit -= DKIM_SIGNATURE_ALLOWANCE
    return limit


#: A bare ASCII address that needs no parsing (the common case, ~0.1 ms saved per address).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._%+=-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
def normalize_address(address: str) -> str:
    """How the suppression lists store and compare addresses: stripped, lowercased."""
    return address.strip().lower()


def bare_address(address: Any, role: str) -> str:
    """The ``local@domain`` part of ``address`` (a string or a lazy string), as SES's envelope
    takes it, IDN domains in punycode. ``InvalidMessage`` naming ``role`` when SES could not
    take it; ``HeaderInjection`` (also Django's ``BadHeaderError``) for a line break."""
    text = str(address)
    if _PLAIN_ADDRESS.fullmatch(text) and ".." not in text:
        return text
    if (char := line_break(text)) is not None:
        raise HeaderInjection(f"{role} address {text!r} contains a line break ({char}): "
                              "header injection refused")
    try:
        parsed = _parse_address(text)
    except (ValueError, TypeError, IndexError, errors.HeaderParseError) as exc:
        raise InvalidMessage(f"{role} address {text!r} is not valid: {exc}") from None
    if parsed is None:
        raise InvalidMessage(f"{role} address {text!r} is not one full address")
    local, domain = parsed
    if not local.isascii():
        raise InvalidMessage(
            f"{role} address {text!r} has a non-ASCII local part, which SES does not accept")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidMessage(f"{role} address {text!r} has an invalid domain: {exc}") from None
    if not local or "." not in domain.strip("."):
        raise InvalidMessage(f"{role} address {text!r} is not a full address")
    if not _ATEXT.fullmatch(local):  # spaces, quotes, ...: a quoted string, as RFC 5322 has it
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{local}@{domain}"


#: Defects of the local part alone: dots where RFC 5322 wants none (``a..b@``, ``.x@``), which
#: Django's backends and SES take, and non-ASCII, which ``bare_address`` refuses by name.
_LOCAL_PART_DEFECTS = ("local-part", "local part", "repeated '.'")
#: A local part that needs no quoting: RFC 5322 atext and dots.
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")


def _parse_address(text: str) -> tuple[str, str] | None:
    """(local part, domain) of the one address in ``text`` (``Name <a@b>`` or ``a@b``), read
    with Python's own RFC 5322 parser (``email.headerregistry``); None unless exactly one
    address with both parts and no parse defects."""
    header = policy.default.header_factory("To", text)
    addresses: tuple[headerregistry.Address, ...] = getattr(header, "addresses", ())
    serious = [d for d in header.defects if not any(t in str(d) for t in _LOCAL_PART_DEFECTS)]
    if len(addresses) != 1 or serious:
        return None
    found = addresses[0]
    if not found.username or not found.domain:
        return None
    return found.username, found.domain


def _refuse_line_breaks(message: EmailMessage) -> None:
    """Header injection, refused before the MIME is built: every Django version then raises
    the same ``HeaderInjection`` (Django 5.2 would raise its own ``BadHeaderError``, 6.x the
    email package's ``ValueError`` or ``HeaderParseError``, or write a bad name as given).
    Header names must be RFC 5322 field names; header values, attachment file names and
    the MIME types of attachments and alternatives must hold no line break."""
    for name in message.extra_headers:
        if not FIELD_NAME.fullmatch(str(name)):
            raise HeaderInjection(f"header injection refused: header name {str(name)!r} is "
                                  "not an RFC 5322 field name (printable ASCII, no colon or "
                                  "blank)")
    fields = [("subject", message.subject),
              *((f"header {name!r}", value) for name, value in message.extra_headers.items()),
              *_part_fields(message)]
    for name, value in fields:
        if (char := line_break(str(value))) is not None:
            raise HeaderInjection(
                f"header injection refused: {name} contains a line break ({char})")


def _part_fields(message: EmailMessage) -> list[tuple[str, Any]]:
    """(what, value) of what becomes a MIME part's header: each attachment's file name and
    type, each alternative's type (Django's tuples; a MIME object the caller built: its
    file name)."""
    found: list[tuple[str, Any]] = []
    for attachment in message.attachments:
        if isinstance(attachment, Message):
            found.append(("attachment file name", attachment.get_filename() or ""))
        elif isinstance(attachment, tuple) and len(attachment) == 3:
            found += [("attachment file name", attachment[0] or ""),
                      ("attachment type", attachment[2] or "")]
    for alternative in getattr(message, "alternatives", ()):
        if isinstance(alternative, tuple) and len(alternative) == 2:
            found.append(("alternative type", alternative[1] or ""))
    return found


def _unique(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            kept.append(address)
    return kept


# --- options: per mailer (backend keyword arguments, MAILERS OPTIONS) ------------------------

_CONFIGURATION_SET = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}")
_ARN = re.compile(r"arn:aws[a-z-]*:ses:[a-z0-9-]*:[0-9]{12}:identity/\S+")


def _text(name: str, value: Any) -> str:
    text = str(value)  # lazy strings too
    if not text or text != text.strip():
        raise InvalidOption(f"option {name}={value!r}: give a non-empty string without spaces "
                            "around it")
    return text


def _matching(pattern: re.Pattern[str], what: str) -> Any:
    def check(name: str, value: Any) -> str:
        text = _text(name, value)
        if not pattern.fullmatch(text):
            raise InvalidOption(f"option {name}={value!r} is not {what}")
        return text
    return check


def _configuration_set(name: str, value: Any) -> Any:
    return value if callable(value) else _matching(
        _CONFIGURATION_SET, "an SES configuration set name (letters, digits, _ and -, at most "
        "64) or a callable")(name, value)


def _endpoint_url(name: str, value: Any) -> str:
    text = _text(name, value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidOption(f"option {name}={value!r} is not an http(s) URL")
    return text


#: SES's rule for message tag names and values (``MessageTag``).
_TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: Tags every send carries so its SES events name it (``ses.send``): not the caller's to set.
RESERVED_TAGS = frozenset({"seacucumber-id", "seacucumber-lane"})
_TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _lane(name: str, value: Any) -> str:
    text = _text(name, value)
    try:
        conf_lane(text)
    except KeyError:
        declared = ", ".join(lane.name for lane in lanes())
        raise InvalidOption(f"option {name}={value!r}: no such lane (SEACUCUMBER_LANES "
                            f"declares {declared})") from None
    return text


def _tags(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidOption(f"option {name}={value!r}: give a dict of tag name -> value")
    tags = {}
    for key, item in value.items():
        tag, text = str(key), str(item)
        if not _TAG.fullmatch(tag) or not _TAG.fullmatch(text):
            raise InvalidOption(f"option {name}: tag {tag!r}={text!r}: SES takes tag names and "
                                "values of 1 to 256 ASCII letters, digits, _ and -")
        if tag in RESERVED_TAGS:
            raise InvalidOption(f"option {name}: tag {tag!r} is Sea Cucumber's own (every send "
                                "carries it)")
        tags[tag] = text
    return tags


def _v2_only(check: Any) -> Any:
    def checked(name: str, value: Any) -> Any:
        if not conf.USE_SES_V2:
            raise InvalidOption(f"option {name} needs the SES v2 API (USE_SES_V2 = True): "
                                f"v1 SendRawEmail has no {name}")
        return check(name, value)
    return checked


def _list_management(name: str, value: Any) -> dict[str, str]:
    keys = {"ContactListName", "TopicName"}
    if not isinstance(value, Mapping) or "ContactListName" not in value \
            or not set(value) <= keys:
        raise InvalidOption(f"option {name}={value!r}: give SES's ListManagementOptions, "
                            "{'ContactListName': ..., 'TopicName': ...} (TopicName optional)")
    return {str(key): _text(f"{name}[{key!r}]", item) for key, item in value.items()}


def _return_path(name: str, value: Any) -> str:
    try:
        bare_address(value, "return-path")
    except InvalidMessage as exc:
        raise InvalidOption(f"option {name}: {exc}") from None
    return str(value)


# --- one-click unsubscribe (RFC 8058) ---------------------------------------------------------

#: The salt of unsubscribe tokens: a value Django signs for anything else never passes as one.
UNSUBSCRIBE_SALT = "seacucumber.unsubscribe"
#: Where ``seacucumber.urls`` serves the unsubscribe view, under ``SEACUCUMBER_BASE_URL``.
UNSUBSCRIBE_PATH = "unsubscribe/"
_TOPIC = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: RFC 5322's limit on a line; the List-Unsubscribe line is never folded (a fold inside the
#: URL is something mail clients differ on).
_MAX_LINE = 998
#: Room kept under the size limit for the two headers added per recipient.
UNSUBSCRIBE_ALLOWANCE = 2048


#: Bound to every encrypted token (AES-SIV associated data): its format's version.
_TOKEN_FORMAT = b"seacucumber.unsubscribe/2"
#: No token we make is longer (an address of 254 and a topic of 64 encrypt to about 460).
_MAX_TOKEN = 1024


@functools.lru_cache(maxsize=8)
def _token_cipher(secret: bytes) -> AESSIV:
    """AES-SIV (RFC 5297) keyed from ``secret`` by HKDF with the tokens' salt. SIV is
    deterministic and needs no nonce, so no number of links can wear a key out."""
    key = HKDF(algorithm=SHA256(), length=64, salt=UNSUBSCRIBE_SALT.encode(),
               info=b"unsubscribe token").derive(secret)
    return AESSIV(key)


def _secrets() -> list[bytes]:
    """``SECRET_KEY`` then each of ``SECRET_KEY_FALLBACKS``: tokens are made with the first
    and read with any, so a key dropped from both retires its links (as Django's signing)."""
    return [force_bytes(key) for key in (django_settings.SECRET_KEY,
                                         *getattr(django_settings, "SECRET_KEY_FALLBACKS", ()))]


def unsubscribe_token(address: str, topic: str) -> str:
    """A URL-safe token for ``address`` leaving ``topic``: both encrypted and authenticated
    (AES-SIV), so a forwarded or logged link shows neither and no one without the key can
    make one. No database row per message."""
    plain = json.dumps([address, topic], separators=(",", ":")).encode()
    sealed = _token_cipher(_secrets()[0]).encrypt(plain, [_TOKEN_FORMAT])
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def _refused(token: str, why: str) -> InvalidUnsubscribeToken:
    """The error for a refused token: names at most its first 6 characters, never its
    signature (logged by the view)."""
    return InvalidUnsubscribeToken(f"unsubscribe token {token[:6]!r}... refused: {why}")


def read_unsubscribe_token(token: str) -> tuple[str, str]:
    """(address, topic) of a token ``unsubscribe_token`` made, or one of the signed form
    links had before (``SEACUCUMBER_UNSUBSCRIBE_LEGACY_TOKENS``); ``InvalidUnsubscribeToken``
    when it was altered, made for something else or with a key no longer configured."""
    if len(token) > _MAX_TOKEN:
        raise _refused(token, "too long")
    if ":" in token:  # Django's signed form, never in base64url
        value = _read_signed_token(token)
    else:
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise _refused(token, "not base64") from None
        for secret in _secrets():
            try:
                value = json.loads(_token_cipher(secret).decrypt(sealed, [_TOKEN_FORMAT]))
                break
            except (InvalidTag, ValueError):  # another key's, altered, or too short
                continue
        else:
            raise _refused(token, "not made with SECRET_KEY or SECRET_KEY_FALLBACKS, or altered")
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, str) for v in value)
            or "@" not in value[0] or not _TOPIC.fullmatch(value[1])):
        raise _refused(token, "it does not name an address and a topic")
    return value[0], value[1]


def _read_signed_token(token: str) -> Any:
    """The value of a token of the form links had before they were encrypted: the address
    and topic signed (Django's ``Signer``), readable by anyone. Accepted while
    ``SEACUCUMBER_UNSUBSCRIBE_LEGACY_TOKENS`` is on and its key is configured: links in
    mail already sent keep working."""
    if not conf.SEACUCUMBER_UNSUBSCRIBE_LEGACY_TOKENS:
        raise _refused(token, "a signed-address token (SEACUCUMBER_UNSUBSCRIBE_LEGACY_TOKENS "
                              "is off)")
    try:
        return signing.Signer(salt=UNSUBSCRIBE_SALT).unsign_object(token)
    except signing.BadSignature:  # its message quotes the signature: not passed on
        raise _refused(token, "signature does not match SECRET_KEY or SECRET_KEY_FALLBACKS")\
            from None
    except (ValueError, TypeError):
        raise _refused(token, "not a signed value") from None


def base_url_problem() -> str | None:
    """What is wrong with ``SEACUCUMBER_BASE_URL`` for unsubscribe links, or None."""
    base = conf.SEACUCUMBER_BASE_URL
    if not base:
        return ("SEACUCUMBER_BASE_URL is not set: it is the absolute URL at which "
                "seacucumber.urls are served (https://example.com/ses/)")
    parts = urlsplit(str(base))
    if parts.scheme not in ("http", "https") or not parts.hostname or not str(base).isascii():
        return f"SEACUCUMBER_BASE_URL {base!r} is not an absolute http(s) URL in ASCII"
    if parts.query or parts.fragment:
        return f"SEACUCUMBER_BASE_URL {base!r} has a query or fragment"
    return None


def unsubscribe_url(address: str, topic: str) -> str:
    """The one-click unsubscribe URL for ``address`` leaving ``topic``."""
    return f"{str(conf.SEACUCUMBER_BASE_URL).rstrip('/')}/{UNSUBSCRIBE_PATH}" \
           f"{unsubscribe_token(address, topic)}/"


def check_topic(name: str, value: Any) -> str:
    """``value`` as a topic name (letters, digits, ``_``, ``-`` and ``.``, at most 64), or
    ``InvalidOption`` naming ``name``."""
    return str(_matching(_TOPIC, "a topic name (letters, digits, _, - and ., at most 64)")(
        name, value))


def _unsubscribe_topic(name: str, value: Any) -> str:
    text = check_topic(name, value)
    if (problem := base_url_problem()) is not None:
        raise InvalidOption(f"option {name}={value!r} needs unsubscribe links: {problem}")
    return text


def _message_topic(message: EmailMessage, mailer: MailerOptions) -> str | None:
    """The message's ``unsubscribe_topic``: its own ``seacucumber_options`` override (None
    there: no topic for this message), else the backend's."""
    overrides = getattr(message, "seacucumber_options", None) or {}
    if "unsubscribe_topic" not in overrides:
        return mailer.get("unsubscribe_topic")
    if overrides["unsubscribe_topic"] is None:
        return None
    try:
        return _unsubscribe_topic("unsubscribe_topic", overrides["unsubscribe_topic"])
    except InvalidOption as exc:
        raise InvalidMessage(f"message seacucumber_options: {exc}") from None


_LIST_HEADERS = ("list-unsubscribe", "list-unsubscribe-post")


def _list_headers(address: str, topic: str) -> bytes:
    """The two RFC 8058 header lines for one recipient, put in front of the built MIME (so
    the message is rendered once, not once per recipient)."""
    line = f"List-Unsubscribe: <{unsubscribe_url(address, topic)}>"
    if len(line) > _MAX_LINE:
        raise InvalidMessage(f"recipient {address!r}: the List-Unsubscribe line would be "
                             f"{len(line)} characters, over RFC 5322's {_MAX_LINE}")
    return f"{line}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n".encode("ascii")


#: Every backend option and its check. The checks run when the backend is made (the earliest
#: point), so a mailer with a bad option fails at start-up, not in a worker.
_OPTION_CHECKS: dict[str, Any] = {
    "configuration_set": _configuration_set,
    "queue": _text,
    "region": _matching(_REGION, "an AWS region name (us-east-1)"),
    "endpoint_url": _endpoint_url,
    "profile": _text,
    "return_path": _return_path,
    "source_arn": _matching(_ARN, "an SES identity ARN"),
    "from_arn": _matching(_ARN, "an SES identity ARN"),
    "return_path_arn": _matching(_ARN, "an SES identity ARN"),
    "lane": _lane,
    "tags": _tags,
    "tenant": _v2_only(_matching(_TENANT, "an SES tenant name (letters, digits, _ and -, at "
                                          "most 64)")),
    "list_management": _v2_only(_list_management),
    "unsubscribe_topic": _unsubscribe_topic,
}
OPTION_NAMES = frozenset(_OPTION_CHECKS)
#: Options a message may have in its ``seacucumber_options`` but a backend may not: read by
#: ``build_sends`` itself (``send_at``: ``message_send_at``).
MESSAGE_ONLY_OPTIONS = frozenset({"send_at"})


@dataclass(frozen=True)
class MailerOptions:
    """A backend's options (``SESBackend(**options)``, ``get_connection(**options)``, a
    ``MAILERS`` entry's ``OPTIONS``): each overrides its setting for that backend's mail.

    ``configuration_set``, ``return_path``, ``source_arn``, ``from_arn``, ``return_path_arn``:
    as the ``AWS_SES_*`` settings. ``queue``: the Celery queue (``SEACUCUMBER_QUEUE``).
    ``region``, ``endpoint_url``, ``profile``: the SES client the worker sends with
    (``AWS_SES_REGION_NAME``, ``SEACUCUMBER_ENDPOINT_URL``, ``AWS_SESSION_PROFILE``); the
    shared rate stays the default region's. ``lane``: a lane of ``SEACUCUMBER_LANES`` (its
    queue, its place in the shared rate). ``tags``: SES message tags (``{"campaign":
    "spring"}``). ``tenant`` (v2 ``TenantName``) and ``list_management`` (v2
    ``ListManagementOptions``) need ``USE_SES_V2``. ``unsubscribe_topic``: mail of a topic
    recipients can leave with one click (RFC 8058; needs ``SEACUCUMBER_BASE_URL``), sent one
    recipient per send; the worker drops those who left it.

    A message may override any of them for itself: ``message.seacucumber_options = {...}``
    (``for_message``)."""

    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, options: dict[str, Any]) -> MailerOptions:
        """Checked options; ``InvalidOption`` names a bad value. Unknown names are the
        caller's to refuse (``unknown``)."""
        return cls({name: _OPTION_CHECKS[name](name, value)
                    for name, value in options.items() if value is not None})

    @staticmethod
    def unknown(options: dict[str, Any]) -> list[str]:
        return sorted(name for name in options if name not in OPTION_NAMES)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def for_message(self, message: EmailMessage,
                    anymail: AnymailAttributes | None = None) -> MailerOptions:
        """These options with the message's django-anymail attributes' (``anymail``: their
        tags added to the mailer's) then ``message.seacucumber_options`` over them;
        ``InvalidMessageOption`` (an ``InvalidMessage``) for an unknown or bad one."""
        base = self if anymail is None or not anymail.options else self._with(anymail)
        own = getattr(message, "seacucumber_options", None)
        if not own:
            return base
        return base._with_own(own)

    def _with(self, anymail: AnymailAttributes) -> MailerOptions:
        try:
            parsed = MailerOptions.parse(anymail.options)
        except InvalidOption as exc:
            raise InvalidMessageOption(f"message anymail attributes: {exc}") from None
        values = {**self.values, **parsed.values}
        if self.get("tags") and parsed.get("tags"):
            values["tags"] = {**self.values["tags"], **parsed.values["tags"]}
        return MailerOptions(values)

    def _with_own(self, own: Any) -> MailerOptions:
        if not isinstance(own, Mapping):
            raise InvalidMessageOption("message.seacucumber_options must be a dict of options")
        own = {name: value for name, value in own.items() if name not in MESSAGE_ONLY_OPTIONS}
        unknown = self.unknown(own)
        if unknown:
            raise InvalidMessageOption(
                f"message.seacucumber_options has unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(OPTION_NAMES))}")
        try:
            parsed = MailerOptions.parse(own)
        except InvalidOption as exc:
            raise InvalidMessageOption(f"message.seacucumber_options: {exc}") from None
        return MailerOptions({**self.values, **parsed.values})

    @property
    def lane(self) -> Lane:
        return conf_lane(self.get("lane"))

    @property
    def queue(self) -> str | None:
        """The broker queue for this mail: the ``queue`` option, else its lane's, else
        ``SEACUCUMBER_QUEUE`` (None: Celery's routing)."""
        return self.get("queue") or self.lane.queue or conf.SEACUCUMBER_QUEUE or None


def _options(message: EmailMessage, mailer: MailerOptions) -> dict[str, Any]:
    configuration_set = mailer.get("configuration_set", conf.AWS_SES_CONFIGURATION_SET)
    if callable(configuration_set):
        configuration_set = configuration_set(
            message,
            dkim_domain=conf.DKIM_DOMAIN,
            dkim_key=conf.DKIM_PRIVATE_KEY,
            dkim_selector=conf.DKIM_SELECTOR,
            dkim_headers=conf.DKIM_HEADERS,
        )
    candidates = {
        "configuration_set": configuration_set,
        "source_arn": mailer.get("source_arn", conf.AWS_SES_SOURCE_ARN),
        "from_arn": mailer.get("from_arn", conf.AWS_SES_FROM_ARN),
        "return_path_arn": mailer.get("return_path_arn", conf.AWS_SES_RETURN_PATH_ARN),
        "endpoint_id": conf.AWS_SES_GLOBAL_ENDPOINT_ID,
        "region": mailer.get("region"),
        "endpoint_url": mailer.get("endpoint_url"),
        "profile": mailer.get("profile"),
    }
    options: dict[str, Any] = {key: str(value) for key, value in candidates.items() if value}
    if mailer.lane.rank > 0:  # the first lane is the default: no option, an older payload
        options["lane"] = mailer.lane.name
    for name in ("tags", "tenant", "list_management"):
        if mailer.get(name):
            options[name] = mailer.get(name)
    send_at = message_send_at(message)
    if send_at is not None:  # one due now is sent at once: an unscheduled payload
        options["send_at"] = send_at
    return options


def message_send_at(message: EmailMessage) -> float | None:
    """When ``message`` is due (``schedule.due_time``): its ``seacucumber_options["send_at"]``,
    else its ``send_at`` attribute (django-anymail's); None: at once."""
    own = getattr(message, "seacucumber_options", None)
    if isinstance(own, Mapping) and own.get("send_at") is not None:
        return due_time(own["send_at"], 'seacucumber_options["send_at"]')
    anymails = getattr(message, "send_at", None)  # an AnymailMessage's is UNSET till set
    return None if anymail_attributes.is_unset(anymails) else due_time(anymails)


_NO_OPTIONS = MailerOptions()


def _per_recipient_headers(recipients: list[str], topic: str | None,
                           anymail: AnymailAttributes | None) -> dict[str, bytes] | None:
    """Each recipient's own header lines, put in front of the message built once: the
    unsubscribe link of a topic's mail, the ``X-Metadata`` of anymail's ``merge_metadata``;
    None when every recipient gets the same message."""
    merge = anymail is not None and anymail.recipient_metadata is not None
    if topic is None and not merge:
        return None
    return {r: (_list_headers(r, topic) if topic is not None else b"")
            + (anymail.recipient_headers(r) if anymail is not None else b"")
            for r in recipients}


def _check_size(size: int, topic: str | None) -> None:
    """``InvalidMessage`` when the largest send (``size`` bytes, before a topic's unsubscribe
    headers) would be over SES's size limit."""
    limit = size_limit() - (UNSUBSCRIBE_ALLOWANCE if topic is not None else 0)
    if size > limit:
        api = "SES v2 SendEmail" if conf.USE_SES_V2 else "SES v1 SendRawEmail"
        raise InvalidMessage(
            f"message is {size:,} bytes encoded; {api} takes at most {limit:,} bytes"
        )


def _anymail_options(anymail: AnymailAttributes, options: dict[str, Any],
                     envelope_sender: str) -> None:
    """What the message's anymail attributes add to its payload's options, once the
    configuration set is resolved (``track_clicks``/``track_opens`` are checked against it)."""
    anymail.check_tracking(options.get("configuration_set"))
    if anymail.feedback_address:
        options["feedback_address"] = envelope_sender


#: ``build_sends``'s ``anymail`` when the caller has not read the message's attributes.
_UNREAD: Any = object()


def build_sends(message: EmailMessage, mailer: MailerOptions = _NO_OPTIONS,
                anymail: AnymailAttributes | None = _UNREAD) -> list[OutboundSend]:
    """Check ``message`` and turn it into SES sends of at most 50 recipients each, with the
    sending backend's ``mailer`` options (and the message's own, ``for_message``). With an
    ``unsubscribe_topic`` or django-anymail's ``merge_metadata``, one send per recipient,
    each with its own ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` headers (RFC 8058)
    or ``X-Metadata``. ``anymail``: the message's anymail attributes, when the caller read
    them already (``anymail_attributes.read``).

    Returns ``[]`` for a message with no recipients. Raises ``InvalidMessage`` for anything
    SES would refuse: bad addresses, header injection (``HeaderInjection``, which is also
    Django's ``BadHeaderError``), no sender, over the size limit. The caller's message is not
    changed. Lazy strings are taken wherever Django takes them.
    """
    recipients = _unique([bare_address(r, "recipient") for r in message.recipients()])
    if not recipients:
        return []
    if anymail is _UNREAD:
        anymail = anymail_attributes.read(message)
    mailer = mailer.for_message(message, anymail)
    if not message.from_email:
        raise InvalidMessage("message has no sender (from_email is empty)")
    bare_address(message.from_email, "sender")
    for reply_to in message.reply_to:
        bare_address(reply_to, "reply-to")
    envelope_sender = bare_address(
        mailer.get("return_path", conf.AWS_SES_RETURN_PATH) or message.from_email, "return-path"
    )
    _refuse_line_breaks(message)
    topic = _message_topic(message, mailer)
    if topic is not None and (problem := base_url_problem()) is not None:
        raise InvalidMessage(f"unsubscribe_topic={topic!r} needs unsubscribe links: {problem}")
    if topic is not None and any(h.lower() in _LIST_HEADERS for h in message.extra_headers):
        raise InvalidMessage("message has its own List-Unsubscribe header(s) and an "
                             "unsubscribe_topic, which adds them per recipient: give one")
    try:
        raw = message_bytes(message)
    except (ValueError, errors.MessageError) as exc:  # Django 5.2's BadHeaderError is one too
        raise InvalidMessage(f"message cannot be built: {exc}") from None
    if anymail is not None:
        raw = anymail.headers + raw
    if (problem := header_block_problem(raw)) is not None:  # what the worker checks again
        raise HeaderInjection(f"message cannot be sent: {problem}")
    per_recipient = _per_recipient_headers(recipients, topic, anymail)
    merged = anymail is not None and anymail.recipient_metadata is not None
    _check_size(len(raw) + (max(map(len, per_recipient.values())) if per_recipient and merged
                            else 0), topic)
    options = _options(message, mailer)
    if anymail is not None:
        _anymail_options(anymail, options, envelope_sender)
    groups: list[tuple[tuple[str, ...], bytes]]
    if topic is not None:
        options["unsubscribe_topic"] = topic
    if per_recipient is not None:
        groups = [((r,), per_recipient[r] + raw) for r in recipients]
    else:
        groups = [(tuple(recipients[i : i + MAX_RECIPIENTS_PER_SEND]), raw)
                  for i in range(0, len(recipients), MAX_RECIPIENTS_PER_SEND)]
    base_id = uuid.uuid4().hex
    created = time.time()
    return [
        OutboundSend(
            message_id=base_id if len(groups) == 1 else f"{base_id}-{n}",
            sender=envelope_sender,
            recipients=group,
            raw=group_raw,
            created=created,
            options=options,
        )
        for n, (group, group_raw) in enumerate(groups, start=1)
    ]
