"""The task payload: one SES send, as plain JSON.

``build_sends`` turns a Django ``EmailMessage`` into one ``OutboundSend`` per group of at most
50 recipients (SES's limit), after checking everything SES would refuse, so bad input fails at
``send_messages`` and never in a worker. ``OutboundSend.to_json``/``from_json`` are the only
(de)serialisers of the task payload: JSON types only, raw MIME as base64 text.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.message import BadHeaderError, sanitize_address

from .conf import conf
from .exceptions import InvalidMessage, MalformedPayload

PAYLOAD_VERSION = 1
MAX_RECIPIENTS_PER_SEND = 50
MAX_SIZE_V1 = 10 * 1024 * 1024
MAX_SIZE_V2 = 40 * 1024 * 1024
#: Room kept for the DKIM-Signature header the worker adds when signing is on.
DKIM_SIGNATURE_ALLOWANCE = 4096

_OPTION_KEYS = frozenset(
    {"configuration_set", "source_arn", "from_arn", "return_path_arn", "endpoint_id"}
)


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
        """The task payload: JSON types only."""
        return {
            "v": PAYLOAD_VERSION,
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
        if data.get("v") != PAYLOAD_VERSION:
            raise MalformedPayload(f"unknown payload version {data.get('v')!r}")
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
            k in _OPTION_KEYS and isinstance(v, str) for k, v in options.items()
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


#: A bare ASCII address that needs no parsing: nothing for ``sanitize_address`` to change.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9._%+=-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def bare_address(address: str, encoding: str | None, role: str) -> str:
    """The ``local@domain`` part of ``address``, as SES's envelope takes it (IDN domains in
    punycode); ``InvalidMessage`` naming ``role`` when SES could not take it."""
    if _PLAIN_ADDRESS.fullmatch(address) and ".." not in address:
        return address  # the common case, without the email package's parser (~0.1 ms)
    if not parseaddr(address)[1].rpartition("@")[0].isascii():
        raise InvalidMessage(
            f"{role} address {address!r} has a non-ASCII local part, which SES does not accept"
        )
    try:
        sanitized = sanitize_address(address, encoding or "utf-8")
    except (ValueError, TypeError, IndexError) as exc:
        raise InvalidMessage(f"{role} address {address!r} is not valid: {exc}") from None
    bare = parseaddr(sanitized)[1]
    local, _, domain = bare.rpartition("@")
    if not local or not domain or "." not in domain.strip("."):
        raise InvalidMessage(f"{role} address {address!r} is not a full address")
    return bare


#: Characters Python's email package breaks header lines at, beyond CR and LF (which Django
#: refuses itself): in a header they would be silently turned into folds or spaces.
_LINE_BREAKS = frozenset("\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _refuse_line_breaks(message: EmailMessage) -> None:
    fields = [("subject", message.subject),
              *((f"header {name!r}", str(value)) for name, value in message.extra_headers.items()),
              *(("address", a) for a in [message.from_email, *message.recipients(),
                                         *message.reply_to])]
    for name, value in fields:
        found = _LINE_BREAKS.intersection(value or "")
        if found:
            char = min(found)
            raise InvalidMessage(
                f"header injection refused: {name} contains a line break (U+{ord(char):04X})")


def _unique(addresses: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            kept.append(address)
    return kept


def _options(message: EmailMessage) -> dict[str, str]:
    configuration_set = conf.AWS_SES_CONFIGURATION_SET
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
        "source_arn": conf.AWS_SES_SOURCE_ARN,
        "from_arn": conf.AWS_SES_FROM_ARN,
        "return_path_arn": conf.AWS_SES_RETURN_PATH_ARN,
        "endpoint_id": conf.AWS_SES_GLOBAL_ENDPOINT_ID,
    }
    return {key: str(value) for key, value in candidates.items() if value}


def build_sends(message: EmailMessage) -> list[OutboundSend]:
    """Check ``message`` and turn it into SES sends of at most 50 recipients each.

    Returns ``[]`` for a message with no recipients. Raises ``InvalidMessage`` for anything
    SES would refuse: bad addresses, header injection, no sender, over the size limit.
    The caller's message is not changed.
    """
    encoding = message.encoding
    recipients = _unique(
        [bare_address(r, encoding, "recipient") for r in message.recipients()]
    )
    if not recipients:
        return []
    if not message.from_email:
        raise InvalidMessage("message has no sender (from_email is empty)")
    bare_address(message.from_email, encoding, "sender")
    for reply_to in message.reply_to:
        bare_address(reply_to, encoding, "reply-to")
    envelope_sender = bare_address(
        conf.AWS_SES_RETURN_PATH or message.from_email, encoding, "return-path"
    )
    _refuse_line_breaks(message)
    try:
        raw = message.message().as_bytes(linesep="\r\n")
    except BadHeaderError as exc:
        raise InvalidMessage(f"header injection refused: {exc}") from None
    except ValueError as exc:
        raise InvalidMessage(f"message cannot be built: {exc}") from None
    limit = size_limit()
    if len(raw) > limit:
        api = "SES v2 SendEmail" if conf.USE_SES_V2 else "SES v1 SendRawEmail"
        raise InvalidMessage(
            f"message is {len(raw):,} bytes encoded; {api} takes at most {limit:,} bytes"
        )
    options = _options(message)
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
