"""The task payload: one SES send, as plain JSON.

``build_sends`` turns a Django ``EmailMessage`` into one ``OutboundSend`` per group of at most
50 recipients (SES's limit), after checking everything SES would refuse, so bad input fails at
``send_messages`` and never in a worker. ``OutboundSend.to_json``/``from_json`` are the only
(de)serialisers of the task payload: JSON types only, raw MIME as base64 text.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import time
import uuid
from dataclasses import dataclass, field
from email import errors, headerregistry, policy, quoprimime
from email.message import Message
from typing import Any, TypeVar
from urllib.parse import urlsplit

import django
from django.core.mail import EmailMessage

from .conf import conf
from .exceptions import HeaderInjection, InvalidMessage, InvalidOption, MalformedPayload

#: The payload version this code writes when a send needs nothing a version-1 reader lacks.
#: Version 2 adds the per-mailer client options (``region``, ``endpoint_url``, ``profile``);
#: it is written only for sends that use them, so during a rolling deploy old workers keep
#: reading everything else. Upgrade workers before web processes when mailers use them.
PAYLOAD_VERSION = 1
MAX_RECIPIENTS_PER_SEND = 50
MAX_SIZE_V1 = 10 * 1024 * 1024
MAX_SIZE_V2 = 40 * 1024 * 1024
#: Room kept for the DKIM-Signature header the worker adds when signing is on.
DKIM_SIGNATURE_ALLOWANCE = 4096

#: Options a send carries to the worker, each a string, by the payload version that has it.
PAYLOAD_OPTIONS = {
    "configuration_set": 1, "source_arn": 1, "from_arn": 1, "return_path_arn": 1,
    "endpoint_id": 1, "region": 2, "endpoint_url": 2, "profile": 2,
}
_V1_OPTIONS = frozenset(k for k, v in PAYLOAD_OPTIONS.items() if v == 1)


@dataclass(frozen=True)
class OutboundSend:
    """One call to SES: raw MIME, envelope, our id, and per-message options."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    raw: bytes
    created: float
    options: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The task payload: JSON types only; the lowest version that holds its options."""
        return {
            "v": max((PAYLOAD_OPTIONS[k] for k in self.options), default=PAYLOAD_VERSION),
            "id": self.message_id,
            "from": self.sender,
            "to": list(self.recipients),
            "raw": base64.b64encode(self.raw).decode("ascii"),
            "created": self.created,
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, data: Any) -> OutboundSend:
        """Parse a task payload; anything our backend would not have written raises
        ``MalformedPayload`` with the reason."""
        if not isinstance(data, dict):
            raise MalformedPayload(f"payload is {type(data).__name__}, not an object")
        version = data.get("v")
        if version not in (1, 2) or isinstance(version, bool):
            raise MalformedPayload(f"unknown payload version {version!r}")
        known = _V1_OPTIONS if version == 1 else PAYLOAD_OPTIONS
        message_id, sender, recipients = data.get("id"), data.get("from"), data.get("to")
        raw, created, options = data.get("raw"), data.get("created"), data.get("options", {})
        if not isinstance(message_id, str) or not message_id:
            raise MalformedPayload("payload has no message id")
        if not isinstance(sender, str) or "@" not in sender:
            raise MalformedPayload(f"payload sender {sender!r} is not an address")
        if (
            not isinstance(recipients, list)
            or not recipients
            or len(recipients) > MAX_RECIPIENTS_PER_SEND
            or not all(isinstance(r, str) and "@" in r for r in recipients)
        ):
            raise MalformedPayload("payload recipients are not 1 to 50 addresses")
        if not isinstance(created, int | float) or isinstance(created, bool):
            raise MalformedPayload("payload has no creation time")
        if not isinstance(options, dict) or not all(
            k in known and isinstance(v, str) for k, v in options.items()
        ):
            raise MalformedPayload("payload options are not known string options")
        if not isinstance(raw, str):
            raise MalformedPayload("payload has no raw message")
        try:
            raw_bytes = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedPayload(f"raw message is not base64: {exc}") from None
        return cls(message_id, sender, tuple(recipients), raw_bytes, float(created), options)


def size_limit() -> int:
    """SES's message size limit for the API in use, less room for a DKIM signature when
    the worker will sign."""
    limit = MAX_SIZE_V2 if conf.USE_SES_V2 else MAX_SIZE_V1
    if conf.DKIM_PRIVATE_KEY or conf.SEACUCUMBER_DKIM_KEYS:
        limit -= DKIM_SIGNATURE_ALLOWANCE
    return limit


#: A bare ASCII address that needs no parsing (the common case, ~0.1 ms saved per address).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._%+=-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
#: Line breaks the email package folds or splits headers at: CR and LF (what Django refuses),
#: and the others Python's ``str.splitlines`` knows, which would be turned silently into folds
#: or spaces.
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _line_break(value: str) -> str | None:
    found = _LINE_BREAKS.intersection(value)
    return f"U+{ord(min(found)):04X}" if found else None


def bare_address(address: Any, role: str) -> str:
    """The ``local@domain`` part of ``address`` (a string or a lazy string), as SES's envelope
    takes it, IDN domains in punycode. ``InvalidMessage`` naming ``role`` when SES could not
    take it; ``HeaderInjection`` (also Django's ``BadHeaderError``) for a line break."""
    text = str(address)
    if _PLAIN_ADDRESS.fullmatch(text) and ".." not in text:
        return text
    if (char := _line_break(text)) is not None:
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
    email package's ``ValueError``)."""
    fields = [("subject", message.subject),
              *((f"header {name!r}", value) for name, value in message.extra_headers.items())]
    for name, value in fields:
        if (char := _line_break(str(value))) is not None:
            raise HeaderInjection(
                f"header injection refused: {name} contains a line break ({char})")


def _unique(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            kept.append(address)
    return kept


#: Django 6.0 builds messages with Python's modern email API (``message(policy=...)``);
#: Django 5.2 with its own legacy MIME classes.
_MODERN_EMAIL = django.VERSION >= (6, 0)


def _raw(message: EmailMessage) -> bytes:
    """The message's bytes, CRLF line ends (as SES and SMTP want them), built as the Django
    version in use intends (on 6.x with the SMTP email policy), 7-bit clean (``seven_bit``)."""
    if _MODERN_EMAIL:
        return bytes(seven_bit(message.message(policy=policy.SMTP)).as_bytes())
    return bytes(seven_bit(message.message()).as_bytes(linesep="\r\n"))


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


def _return_path(name: str, value: Any) -> str:
    try:
        bare_address(value, "return-path")
    except InvalidMessage as exc:
        raise InvalidOption(f"option {name}: {exc}") from None
    return str(value)


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
}
OPTION_NAMES = frozenset(_OPTION_CHECKS)


@dataclass(frozen=True)
class MailerOptions:
    """A backend's options (``SESBackend(**options)``, ``get_connection(**options)``, a
    ``MAILERS`` entry's ``OPTIONS``): each overrides its setting for that backend's mail.

    ``configuration_set``, ``return_path``, ``source_arn``, ``from_arn``, ``return_path_arn``:
    as the ``AWS_SES_*`` settings. ``queue``: the Celery queue (``SEACUCUMBER_QUEUE``).
    ``region``, ``endpoint_url``, ``profile``: the SES client the worker sends with
    (``AWS_SES_REGION_NAME``, ``SEACUCUMBER_ENDPOINT_URL``, ``AWS_SESSION_PROFILE``); the
    shared rate stays the default region's."""

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

    @property
    def queue(self) -> str | None:
        return self.get("queue", conf.SEACUCUMBER_QUEUE) or None


def _options(message: EmailMessage, mailer: MailerOptions) -> dict[str, str]:
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
    return {key: str(value) for key, value in candidates.items() if value}


_NO_OPTIONS = MailerOptions()


def build_sends(message: EmailMessage, mailer: MailerOptions = _NO_OPTIONS) -> list[OutboundSend]:
    """Check ``message`` and turn it into SES sends of at most 50 recipients each, with the
    sending backend's ``mailer`` options.

    Returns ``[]`` for a message with no recipients. Raises ``InvalidMessage`` for anything
    SES would refuse: bad addresses, header injection (``HeaderInjection``, which is also
    Django's ``BadHeaderError``), no sender, over the size limit. The caller's message is not
    changed. Lazy strings are taken wherever Django takes them.
    """
    recipients = _unique([bare_address(r, "recipient") for r in message.recipients()])
    if not recipients:
        return []
    if not message.from_email:
        raise InvalidMessage("message has no sender (from_email is empty)")
    bare_address(message.from_email, "sender")
    for reply_to in message.reply_to:
        bare_address(reply_to, "reply-to")
    envelope_sender = bare_address(
        mailer.get("return_path", conf.AWS_SES_RETURN_PATH) or message.from_email, "return-path"
    )
    _refuse_line_breaks(message)
    try:
        raw = _raw(message)
    except ValueError as exc:  # Django 5.2's BadHeaderError is one too
        raise InvalidMessage(f"message cannot be built: {exc}") from None
    limit = size_limit()
    if len(raw) > limit:
        api = "SES v2 SendEmail" if conf.USE_SES_V2 else "SES v1 SendRawEmail"
        raise InvalidMessage(
            f"message is {len(raw):,} bytes encoded; {api} takes at most {limit:,} bytes"
        )
    options = _options(message, mailer)
    base_id = uuid.uuid4().hex
    created = time.time()
    chunks = [
        recipients[i : i + MAX_RECIPIENTS_PER_SEND]
        for i in range(0, len(recipients), MAX_RECIPIENTS_PER_SEND)
    ]
    return [
        OutboundSend(
            message_id=base_id if len(chunks) == 1 else f"{base_id}-{n}",
            sender=envelope_sender,
            recipients=tuple(chunk),
            raw=raw,
            created=created,
            options=options,
        )
        for n, chunk in enumerate(chunks, start=1)
    ]
