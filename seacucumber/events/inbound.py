"""Received mail: SES receipt notifications (``notificationType: "Received"``) read, and the
mail they carry parsed into an ``InboundMessage``.

A receipt rule hands a mail over in one of two ways: the SNS action puts it in the
notification itself (``content``, UTF-8 text or base64; SNS caps it at 150 KB), the S3 action
stores it in a bucket and the notification names the object (``seacucumber.events.s3``
fetches it). Either way the bytes are parsed by the standard library's ``email`` package
(``BytesFeedParser``, ``policy.default``), fed in chunks from a stream: a 10 MB mail is never
held whole as bytes and again as text beside its parsed form (BENCHMARKS.md, "Receiving a
large mail"). The ``email`` package is the well-kept parser of the field: it keeps broken
mail readable (defects are recorded, not raised) and undecodable bytes as they came.

Anyone may mail the inbound address, so parsing runs in a worker (``inbound_task``), never
in the webhook's request, and within ``Limits``: size, part count, nesting depth and header
length. The parser stops at the first limit passed (``InboundTooLarge``), before the
``email`` package recurses into a deeper part (it recurses per level and dies near 1,000)
or spends its time on the next of 100,000 empty parts; a header's decoding, which costs
more than linear time in its length, is bounded by the header length.
"""

from __future__ import annotations

import base64
import binascii
import codecs
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import policy as email_policy
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from typing import IO, Any, NamedTuple

from ..conf import SETTINGS, conf
from ..exceptions import InboundTooLarge, InvalidNotification

#: ``mail.messageId`` of the notification SES sends when a receipt rule with an SNS action is
#: saved (and the object it writes when an S3 action is): not a mail anybody sent.
SETUP_NOTIFICATION_ID = "AMAZON_SES_SETUP_NOTIFICATION"
CHUNK = 64 * 1024
#: The verdicts SES reports on a received mail (``receipt.<name>Verdict.status``): PASS,
#: FAIL, GRAY, PROCESSING_FAILED (and DISABLED when the rule does not scan).
VERDICTS = ("spam", "virus", "spf", "dkim", "dmarc")


class Attachment(NamedTuple):
    """One attachment of a received mail: file name (``None`` when it has none), content type,
    decoded bytes."""

    name: str | None
    content_type: str
    content: bytes


class InboundMessage(EmailMessage):
    """A received mail: the ``email.message.EmailMessage`` parsed from the bytes SES received
    (so ``message["Subject"]``, ``get_body()``, ``walk()`` work as usual), with the
    conveniences below and what SES told about its delivery: the envelope (``MAIL FROM`` and
    the ``RCPT TO`` addresses the rule matched, which Bcc recipients are only in) and the
    verdicts of its scans (``spam_verdict`` ... ``dmarc_verdict``: ``"PASS"``, ``"FAIL"``,
    ``"GRAY"``, ``"PROCESSING_FAILED"``, ``"DISABLED"``, or None when SES sent none)."""

    def __init__(self, policy: Any = None) -> None:
        super().__init__(policy=policy or email_policy.default)
        self.envelope_sender: str = ""
        self.envelope_recipients: list[str] = []
        self.ses_message_id: str = ""
        self.spam_verdict: str | None = None
        self.virus_verdict: str | None = None
        self.spf_verdict: str | None = None
        self.dkim_verdict: str | None = None
        self.dmarc_verdict: str | None = None

    # --- headers ---------------------------------------------------------------------------
    @property
    def subject(self) -> str:
        return _header(self, "Subject")

    @property
    def from_email(self) -> str:
        """The first From address, formatted ``"Ann <ann@example.com>"``; "" when none."""
        addresses = _addresses(self, "From")
        return addresses[0] if addresses else ""

    @property
    def to(self) -> list[str]:
        return _addresses(self, "To")

    @property
    def cc(self) -> list[str]:
        return _addresses(self, "Cc")

    # --- body ------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The plain-text body ("" when there is none), decoded with its declared charset;
        bytes that charset cannot decode (or an unknown charset) become U+FFFD."""
        return _body_text(self, "plain")

    @property
    def html(self) -> str:
        """The HTML body ("" when there is none), decoded as ``text`` is."""
        return _body_text(self, "html")

    @property
    def attachments(self) -> list[Attachment]:
        """Every attachment as (name, content type, bytes), decoded on each access (a large
        mail's attachments are not kept twice). A forwarded mail (``message/rfc822``) is one
        attachment, its bytes the whole forwarded mail."""
        bodies = {id(part) for part in (self.get_body(("plain",)), self.get_body(("html",)))
                  if part is not None}
        return [_attachment(part) for part in _leaves(self) if id(part) not in bodies]

    @property
    def verdicts(self) -> dict[str, str | None]:
        return {name: getattr(self, f"{name}_verdict") for name in VERDICTS}


def _raw_values(message: Message, name: str) -> list[str]:
    return [value for key, value in message.raw_items() if key.lower() == name.lower()]


def _header(message: Message, name: str) -> str:
    """Header ``name`` decoded (RFC 2047 words), or as written if it cannot be parsed."""
    try:
        return str(message.get(name, ""))
    except (IndexError, ValueError, TypeError, AttributeError):
        return " ".join(_raw_values(message, name))


def _addresses(message: Message, name: str) -> list[str]:
    """Each address of header ``name`` as ``"Name <addr>"`` (or the bare address); a header
    too broken to parse as addresses is given as written."""
    try:
        # policy.default parses address headers into objects with ``.addresses``
        return [str(address) for value in message.get_all(name) or []
                for address in getattr(value, "addresses", ())]
    except (IndexError, ValueError, TypeError, AttributeError):  # the parser gave up
        return [v.strip() for v in _raw_values(message, name) if v.strip()]


def _decode(payload: bytes, charset: str | None) -> str:
    try:
        codec = codecs.lookup(charset or "us-ascii").name
    except (LookupError, ValueError, TypeError):  # a charset Python does not know: UTF-8
        codec = "utf-8"
    if codec == "ascii":  # mislabelled 8-bit mail is common; UTF-8 is ASCII's superset
        codec = "utf-8"
    return payload.decode(codec, errors="replace")


def _payload_bytes(part: Message) -> bytes:
    """A leaf part's content, transfer encoding undone. Base64 (nearly every attachment) is
    decoded by ``binascii`` straight from the parsed text: ``get_payload(decode=True)`` makes
    four passing copies of it on the way (BENCHMARKS.md, "Receiving a large mail"), and is
    kept for everything else, and for base64 that ``binascii`` finds broken (it repairs
    what it can, recording defects)."""
    payload = part.get_payload()
    if isinstance(payload, str) and str(
            part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64":
        try:
            return binascii.a2b_base64(payload)
        except (binascii.Error, ValueError):  # bad padding, non-ASCII text
            pass
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""


def _body_text(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    return "" if part is None else _decode(_payload_bytes(part), part.get_content_charset())


def _leaves(part: Message) -> Iterable[Message]:
    """The parts that are not containers, depth first; a ``message/rfc822`` is one leaf.
    Walked with a stack of its own, not recursion."""
    stack = [part]
    while stack:
        part = stack.pop()
        if part.get_content_type() == "message/rfc822" or not part.is_multipart():
            yield part
        else:
            stack.extend(reversed([c for c in part.get_payload() if isinstance(c, Message)]))


def _parts(message: Message) -> Iterable[Message]:
    """Every part of ``message``, itself and forwarded mail's included, without recursion."""
    stack = [message]
    while stack:
        part = stack.pop()
        yield part
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(child for child in payload if isinstance(child, Message))


def _attachment(part: Message) -> Attachment:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        content = (inner[0].as_bytes() if isinstance(inner, list) and inner
                   and isinstance(inner[0], Message) else b"")
    else:
        content = _payload_bytes(part)
    return Attachment(part.get_filename(), part.get_content_type(), content)


@dataclass(frozen=True)
class Limits:
    """What a received mail may cost to parse; each a setting (``from_settings``)."""

    max_bytes: int
    max_parts: int
    max_depth: int
    max_header_bytes: int

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(*(int(getattr(conf, name)) for name in LIMIT_SETTINGS))

    @classmethod
    def defaults(cls) -> Limits:
        """The settings' defaults, read without Django's settings (benchmarks, scripts)."""
        declared = {setting.name: setting.default for setting in SETTINGS}
        return cls(*(int(declared[name]) for name in LIMIT_SETTINGS))


#: The deepest ``SEACUCUMBER_INBOUND_MAX_DEPTH`` may be: the ``email`` package recurses per
#: level, its parser dies near 1,000 levels and ``as_bytes()`` near 300.
DEEPEST = 100
#: The settings of ``Limits``' fields, in their order.
LIMIT_SETTINGS = ("SEACUCUMBER_INBOUND_MAX_BYTES", "SEACUCUMBER_INBOUND_MAX_PARTS",
                  "SEACUCUMBER_INBOUND_MAX_DEPTH", "SEACUCUMBER_INBOUND_MAX_HEADER_BYTES")


class _LimitedParser(BytesFeedParser):
    """``BytesFeedParser`` refusing a part past the part count or the nesting depth as the
    part begins: before the parser's recursion goes a level deeper, before more work."""

    def __init__(self, limits: Limits) -> None:
        super().__init__(policy=email_policy.default)
        self.limits = limits
        self.parts = 0

    def _new_message(self) -> None:  # the feed parser calls it as each part begins
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise InboundTooLarge(f"more than {self.limits.max_parts} MIME parts "
                                  "(SEACUCUMBER_INBOUND_MAX_PARTS)")
        depth = len(self._msgstack) + 1  # type: ignore[attr-defined]
        if depth > self.limits.max_depth:
            raise InboundTooLarge(f"MIME parts nested more than {self.limits.max_depth} deep "
                                  "(SEACUCUMBER_INBOUND_MAX_DEPTH)")
        super()._new_message()  # type: ignore[misc]


def _check_headers(message: Message, limit: int) -> None:
    """``InboundTooLarge`` when a header field of any part is longer than ``limit``: checked
    on the raw text, before anything decodes it."""
    for part in _parts(message):
        for name, value in part.raw_items():
            if len(name) + len(value) > limit:
                raise InboundTooLarge(
                    f"header {name[:64]!r} is {len(name) + len(value)} bytes, over "
                    f"{limit} (SEACUCUMBER_INBOUND_MAX_HEADER_BYTES)")


def parse_stream(chunks: Iterable[bytes], limits: Limits | None = None) -> InboundMessage:
    """An ``InboundMessage`` parsed from ``chunks`` of the raw mail, fed one at a time, within
    ``limits`` (None: the settings'); ``InboundTooLarge`` names the first limit passed."""
    limits = limits or Limits.from_settings()
    parser = _LimitedParser(limits)
    read = 0
    for chunk in chunks:
        read += len(chunk)
        if read > limits.max_bytes:
            raise InboundTooLarge(f"mail over {limits.max_bytes} bytes "
                                  "(SEACUCUMBER_INBOUND_MAX_BYTES)")
        parser.feed(chunk)
    parsed = parser.close()
    _check_headers(parsed, limits.max_header_bytes)
    # The top part becomes an InboundMessage; its parts stay EmailMessages (they have no
    # envelope of their own). The parsed state moves over by reference, nothing is copied.
    message = InboundMessage(policy=parsed.policy)
    message.__dict__.update(parsed.__dict__)
    return message


def parse_file(stream: IO[bytes], limits: Limits | None = None) -> InboundMessage:
    """An ``InboundMessage`` parsed from a binary file (a spooled download, say)."""
    return parse_stream(iter(lambda: stream.read(CHUNK), b""), limits)


def parse_bytes(raw: bytes, limits: Limits | None = None) -> InboundMessage:
    return parse_stream((raw[i:i + CHUNK] for i in range(0, len(raw), CHUNK)), limits)


# --- the notification ------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceivedEvent:
    """One SES receipt notification, without the mail itself: SES's ``mail`` object
    (``messageId``, ``source``, ``destination``, ``headers``, ``commonHeaders``), its
    ``receipt`` object (``recipients``, the verdicts, ``action``), and the SNS message's
    ``MessageId`` and ``TopicArn``. Sent with ``inbound_received`` as ``event``."""

    mail: dict[str, Any]
    receipt: dict[str, Any]
    sns_message_id: str = ""
    topic_arn: str = ""
    content: str | None = field(default=None, repr=False)  # SNS action only; dropped once read

    @property
    def action(self) -> dict[str, Any]:
        action = self.receipt.get("action")
        return action if isinstance(action, dict) else {}

    @property
    def action_type(self) -> str:
        return str(self.action.get("type", ""))

    @property
    def ses_message_id(self) -> str:
        value = self.mail.get("messageId")
        return value if isinstance(value, str) else ""

    @property
    def whereabouts(self) -> str:
        """How logs name the mail: its SES id, and its S3 object for an S3 action."""
        if self.action_type == "S3":
            return (f"{self.ses_message_id} (s3://{self.action.get('bucketName')}/"
                    f"{self.action.get('objectKey')})")
        return self.ses_message_id or "(no SES messageId)"

    @property
    def is_setup_notification(self) -> bool:
        return self.ses_message_id == SETUP_NOTIFICATION_ID

    def verdict(self, name: str) -> str | None:
        """SES's ``status`` for verdict ``name`` ("spam", "virus", "spf", "dkim", "dmarc")."""
        value = self.receipt.get(f"{name}Verdict")
        status = value.get("status") if isinstance(value, dict) else None
        return status if isinstance(status, str) else None

    @property
    def s3_location(self) -> tuple[str, str]:
        """(bucket, key) of an S3 action; ``InvalidNotification`` when either is missing."""
        bucket, key = self.action.get("bucketName"), self.action.get("objectKey")
        if not (isinstance(bucket, str) and bucket and isinstance(key, str) and key):
            raise InvalidNotification("S3 receipt notification without bucketName/objectKey")
        return bucket, key

    def inline_content(self) -> bytes:
        """The mail an SNS action put in the notification, as bytes: base64-decoded for
        ``encoding: BASE64``, UTF-8-encoded otherwise (SES's default encoding, UTF8)."""
        if not isinstance(self.content, str):
            raise InvalidNotification("SNS receipt notification without content")
        if str(self.action.get("encoding", "UTF8")).upper() == "BASE64":
            try:
                return base64.b64decode(self.content, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidNotification("content is not base64") from None
        return self.content.encode("utf-8", errors="replace")

    def without_content(self) -> ReceivedEvent:
        return ReceivedEvent(self.mail, self.receipt, self.sns_message_id, self.topic_arn)


def parse_received(data: dict[str, Any], sns_message: dict[str, Any]) -> ReceivedEvent:
    """The receipt notification in ``data`` (SES's decoded ``Message``); raises
    ``InvalidNotification`` when it lacks what SES always sends (a ``mail`` and a
    ``receipt`` object with an action of type SNS or S3)."""
    mail, receipt = data.get("mail"), data.get("receipt")
    if not isinstance(mail, dict) or not isinstance(receipt, dict):
        raise InvalidNotification("receipt notification without mail or receipt object")
    event = ReceivedEvent(mail=mail, receipt=receipt,
                          sns_message_id=str(sns_message.get("MessageId", "")),
                          topic_arn=str(sns_message.get("TopicArn", "")),
                          content=data.get("content"))
    if event.action_type not in ("SNS", "S3"):
        raise InvalidNotification(
            f"receipt action {event.action_type or '(none)'!r} carries no mail: use an SNS "
            "or S3 action")
    return event


def annotate(message: InboundMessage, event: ReceivedEvent) -> InboundMessage:
    """Set what SES told about the delivery on ``message``: envelope, SES id, verdicts."""
    source = event.mail.get("source")
    message.envelope_sender = source if isinstance(source, str) else ""
    recipients = event.receipt.get("recipients")
    message.envelope_recipients = [r for r in recipients if isinstance(r, str)] if isinstance(
        recipients, list) else []
    message.ses_message_id = event.ses_message_id
    for name in VERDICTS:
        setattr(message, f"{name}_verdict", event.verdict(name))
    return message
