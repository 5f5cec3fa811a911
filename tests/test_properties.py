"""Property-based: any message a user can build is either refused at ``send_messages`` with
a clear error (exactly those with a line break in a header), or reaches SES with identical
content (parsed back from what the emulator received): subject, text, attachments, and
every recipient exactly once."""

from __future__ import annotations

import base64
import string
import uuid
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any

import django
import pytest
from django.core.mail import EmailMessage, get_connection
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from seacucumber import signals
from seacucumber.exceptions import InvalidMessage
from seacucumber.payload import build_sends
from seacucumber.shared import claimcheck
from seacucumber.tasks import send_email
from tests.conftest import SENDER

MODERN_EMAIL = django.VERSION >= (6, 0)
LOCAL = st.text(string.ascii_letters + string.digits + "._+-'=", min_size=1, max_size=20)
DOMAIN = st.sampled_from(["example.com", "mail.example.org", "sub.domain.example.net",
                          "x-y.example.io"])
NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@st.composite
def addresses(draw) -> tuple[str, str, str]:
    """(what the user writes, the bare address SES gets, the display name used)."""
    bare = f"{draw(LOCAL)}@{draw(DOMAIN)}"
    name = draw(NAME)
    if name and '"' not in name and "\\" not in name:
        return f'"{name}" <{bare}>', bare, name
    return bare, bare, ""


#: What a header may not contain: CR and LF (Django refuses them) and the other characters
#: Python's email package would turn into line breaks (Sea Cucumber refuses those).
LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\x00"),
               max_size=3000)
ATTACHMENT = st.tuples(
    st.text(string.ascii_letters + "äöüé ._-", min_size=1, max_size=30),
    st.binary(max_size=3000),
)


@st.composite
def messages(draw) -> tuple[EmailMessage, dict]:
    to = draw(st.lists(addresses(), min_size=1, max_size=60))
    cc = draw(st.lists(addresses(), max_size=3))
    bcc = draw(st.lists(addresses(), max_size=3))
    subject = draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=200))
    body = draw(TEXT)
    attachments = draw(st.lists(ATTACHMENT, max_size=2))
    message = EmailMessage(subject, body, SENDER, [a[0] for a in to], cc=[a[0] for a in cc],
                           bcc=[a[0] for a in bcc])
    for filename, content in attachments:
        message.attach(filename, content, "application/octet-stream")
    headers = subject + "".join(a[2] for a in to + cc + bcc)
    expected = {
        "subject": subject, "body": body, "attachments": attachments,
        "recipients": {a[1].lower() for a in to + cc + bcc},
        "refused": bool(LINE_BREAKS.intersection(headers)),
    }
    return message, expected


def text_of(part) -> str:
    return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")


@pytest.mark.django_db
@hypothesis_settings(max_examples=80, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=messages())
def test_refused_clearly_or_delivered_identically(case, ses_emulator, eager):
    message, expected = case
    ses_emulator.reset()
    event("refused" if expected["refused"] else "sent")
    if expected["refused"]:  # a line break in a header: refused, saying so
        with pytest.raises(InvalidMessage, match="header injection refused"):
            get_connection().send_messages([message])
        assert ses_emulator.messages() == []
        return
    assert get_connection().send_messages([message]) == 1  # anything else is sent
    sends = ses_emulator.messages()
    assert len(sends) == -(-len(expected["recipients"]) // 50)  # 50 recipients a send at most
    delivered = [d.lower() for s in sends for d in s.destinations]
    assert sorted(delivered) == sorted(expected["recipients"])
    parsed = message_from_bytes(sends[0].raw)
    assert all(s.raw == sends[0].raw for s in sends)  # one MIME for every part of a split
    assert "Bcc" not in parsed
    # header parsing drops a header value's leading and trailing whitespace (RFC 5322)
    assert str(make_header(decode_header(parsed["Subject"]))).strip() == \
        expected["subject"].strip()
    parts = list(parsed.walk()) if parsed.is_multipart() else [parsed]
    texts = [p for p in parts if p.get_content_type() == "text/plain"
             and p.get_content_disposition() is None]
    if expected["body"] or not expected["attachments"]:  # Django omits an empty body part
        got = text_of(texts[0]).replace("\r\n", "\n")
        # Django 6 builds bodies with the email package's set_content, which ends text with
        # a newline when it has none (Django's own backends send the same)
        assert got == expected["body"] or (MODERN_EMAIL and got == expected["body"] + "\n")
    else:
        assert texts == []
    found = [((p.get_filename() or "").strip(), p.get_payload(decode=True)) for p in parts
             if p.get_content_disposition() == "attachment"]
    # as with the subject, parsing drops a parameter value's surrounding whitespace
    assert found == [(name.strip(), content) for name, content in expected["attachments"]]


# --- the worker: any payload someone writes into the broker ------------------------------------

#: JSON values of every kind, as a payload decoded from the broker may hold.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6)
#: Text with what header injection is made of (line breaks, NUL, colons) among the rest.
HOSTILE = st.lists(st.sampled_from(["a", "@", ".", ":", " ", "é", "\r", "\n", "\x00", "\u2028",
                                    "example.com"]), max_size=8).map("".join)
BREAK = st.sampled_from(["\r", "\n", "\r\n", "\x00"])
PAYLOAD_KEYS = ("v", "id", "from", "to", "raw", "created", "options", "claim")
#: Options a payload may carry, with values a forger would try (a listener of their own on
#: loopback, another region or profile) and values SES refuses.
OPTIONS = {
    "region": st.sampled_from(["eu-west-1", "us-east-1", "xx-evil-1"]),
    "endpoint_url": st.sampled_from(["http://127.0.0.1:9", "http://127.0.0.1:9/x"]),
    "profile": st.sampled_from(["admin", "default"]),
    "tags": st.dictionaries(st.sampled_from(["a", "b c", ""]), st.sampled_from(["1", "\n"]),
                            max_size=2),
    "lane": st.sampled_from(["bulk", "nope"]),
    "configuration_set": st.sampled_from(["tracking", "bad name"]),
    "unsubscribe_topic": st.sampled_from(["news", "x\r\ny"]),
    "evil": st.just("1"),
}
#: A claim's key made the send's own (``claimcheck.key_for`` its id).
OWN_KEY = "<own key>"


@st.composite
def corruptions(draw) -> tuple[list[tuple[str, Any]], dict]:
    """(one to three edits to make to a payload ``send_messages`` wrote, the task's keyword
    arguments): an edit is (key, value) to set, or (key, None) with a key starting "-" to
    drop."""
    edits: list[tuple[str, Any]] = []
    kwargs: dict = {}
    for kind in draw(st.lists(st.sampled_from([
            "drop", "replace", "version", "recipients", "injected", "raw", "options", "claim",
            "sizes", "arguments"]), min_size=1, max_size=3)):
        if kind == "drop":
            key = draw(st.sampled_from(PAYLOAD_KEYS))
            edits.append(("-" + key, None))
        elif kind == "replace":
            edits.append((draw(st.sampled_from(PAYLOAD_KEYS)), draw(JSON)))
        elif kind == "version":
            edits.append(("v", draw(st.integers(-1, 5) | JSON)))
        elif kind == "recipients":
            edits.append(("to", draw(st.lists(HOSTILE | JSON, max_size=4))))
        elif kind == "injected":  # a line break in the envelope: always refused
            text = f"a{draw(BREAK)}Bcc: victim@example.com"
            edits.append(draw(st.sampled_from([("from", text), ("to", ["to@example.com", text])])))
        elif kind == "raw":  # a header block with a line that is no field
            head = draw(st.sampled_from([b"X-A", b"X A: v", b"Subject: a\nb", b": v", b"\x00"]))
            edits.append(("raw", BadRaw(base64.b64encode(
                head + b"\r\nSubject: Hi\r\n\r\n" + draw(st.binary(max_size=50))).decode())))
        elif kind == "options":  # version 3 reads every option: plausible values or junk
            names = draw(st.lists(st.sampled_from(list(OPTIONS)), min_size=1, max_size=3,
                                  unique=True))
            edits += [("v", 3), ("options", {
                name: draw(OPTIONS[name] | HOSTILE | JSON) for name in names})]
        elif kind == "claim":  # instead of the raw message: another's, or none stored
            edits += [("v", 3), ("-raw", None), ("claim", draw(st.fixed_dictionaries({
                "store": st.sampled_from(["redis", "s3", "disk"]),
                "key": st.just(OWN_KEY) | HOSTILE, "sha256": st.sampled_from(["0" * 64, "x"]),
                "size": st.integers(-1, 10**12)})))]
        elif kind == "sizes":
            count = draw(st.integers(51, 60))
            edits.append(("to", [f"r{n}@example.com" for n in range(count)]))
        else:  # the task's own arguments
            kwargs.update(draw(st.dictionaries(
                st.sampled_from(["reserved_at", "failures", "held", "due", "extra"]),
                JSON | st.floats(allow_nan=True) | st.just(1e300), min_size=1, max_size=2)))
    return edits, kwargs


class BadRaw(str):
    """A raw message (base64) whose header block has a line that is no field."""


def corrupted(edits: list[tuple[str, Any]]) -> tuple[dict, bool]:
    """A payload ``send_messages`` wrote with ``edits`` made, and whether it must be refused
    for what it is alone: a field missing, a line break in its envelope, over 50
    recipients, a raw message with a header line that is no field."""
    [outbound] = build_sends(EmailMessage("Hi", "Body", SENDER, ["to@example.com"]))
    payload = outbound.to_json()
    for key, value in edits:
        if key.startswith("-"):
            payload.pop(key[1:], None)
        else:
            payload[key] = value
    to = payload.get("to") if isinstance(payload.get("to"), list) else []
    envelope = [text for text in (payload.get("from"), *to) if isinstance(text, str)]
    must_fail = (
        any(key not in payload for key in ("v", "id", "from", "to", "created"))
        or any(char in text for text in envelope for char in "\r\n\0")
        or len(to) > 50
        or isinstance(payload.get("raw"), BadRaw))
    claim = payload.get("claim")
    if isinstance(claim, dict) and claim.get("key") == OWN_KEY:
        claim["key"] = claimcheck.key_for(claim["store"], str(payload.get("id")))
    return payload, must_fail


@pytest.mark.django_db
@hypothesis_settings(max_examples=300, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@given(case=corruptions())
def test_every_corrupted_task_ends_failed_with_a_reason_or_sent(case, ses_emulator):
    """No payload or argument a broker may hand the task makes it fail unrecorded: each run
    ends failed with a code and a reason (``message_failed``), or sent (``message_sent``),
    and never retries a payload that no retry can mend."""
    edits, kwargs = case
    payload, must_fail = corrupted(edits)
    done = (edits, kwargs)
    failed, sent = [], []
    signals.message_failed.connect(failed_receiver := lambda sender, **kw: failed.append(kw))
    signals.message_sent.connect(sent_receiver := lambda sender, **kw: sent.append(kw))
    try:
        result = send_email.apply(args=[payload], kwargs=kwargs, task_id=uuid.uuid4().hex)
    finally:
        signals.message_failed.disconnect(failed_receiver)
        signals.message_sent.disconnect(sent_receiver)
    event("sent" if result.successful() else f"failed: {failed[0]['code']}" if failed
          else f"unrecorded: {result.state}")
    if result.successful():
        assert not must_fail, done
        assert failed == [] and len(sent) == 1
        return
    assert result.state == "FAILURE", (result.state, result.result)
    assert len(failed) == 1 and sent == [], (done, result.result)
    assert failed[0]["code"] and failed[0]["reason"], failed
