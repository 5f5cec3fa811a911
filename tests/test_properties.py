"""Property-based: any message a user can build is either refused at ``send_messages`` with
a clear error (exactly those with a line break in a header), or reaches SES with identical
content (parsed back from what the emulator received): subject, text, attachments, and
every recipient exactly once."""

from __future__ import annotations

import string
from email import message_from_bytes
from email.header import decode_header, make_header

import django
import pytest
from django.core.mail import EmailMessage, get_connection
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from seacucumber.exceptions import InvalidMessage
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
