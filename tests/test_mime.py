"""Unit tests: a message's bytes (``seacucumber.mime``), the quick ways against the email
package's own (no services needed)."""

import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.utils import parsedate_to_datetime

import django
import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.utils.functional import lazy
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from seacucumber.mime import (
    QUICK_FOLD,
    _plain_bytes,
    django_bytes,
    message_bytes,
    seven_bit,
)

# --- the quick fold writes what compat32 writes --------------------------------------------------

_COMPAT32 = policy.compat32.clone(linesep="\r\n")


@hypothesis_settings(max_examples=3000, deadline=None)
@given(name=st.sampled_from(["Subject", "From", "To", "Cc", "Reply-To", "X-Long-Header-Name",
                             "Message-ID", "Content-Type"]),
       value=st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=120))
def test_quick_fold_writes_exactly_what_compat32_writes(name, value):
    """Any value: printable ASCII short enough takes the quick path, anything else (long,
    non-ASCII, tabs, line breaks) compat32's own; the bytes are the same either way."""
    try:
        expected = _COMPAT32.fold_binary(name, value)
    except Exception as exc:  # noqa: BLE001 - compat32 refuses it: so must the quick fold
        with pytest.raises(type(exc)):
            QUICK_FOLD.fold_binary(name, value)
        return
    assert QUICK_FOLD.fold_binary(name, value) == expected


# --- the message's bytes are Django's own ---------------------------------------------------------

def _own_bytes(message) -> bytes:
    """What Django's own ``as_bytes`` writes (for the Django in use), 7-bit converted."""
    if django.VERSION >= (6, 0):
        return seven_bit(message.message(policy=policy.SMTP)).as_bytes()
    return seven_bit(message.message()).as_bytes(linesep="\r\n")


def test_message_bytes_are_django_own_bytes_for_every_kind_of_message():
    """The bytes SES gets are the bytes Django's own ``as_bytes`` writes: short and long,
    ASCII and not, attachments, alternatives; the plain ones written directly among them."""
    long_subject = "A subject long enough to be folded over more than one line " * 3
    messages = [
        EmailMessage("Hi", "Body", "sender@example.com", ["to@example.com"]),
        EmailMessage(long_subject, "Body\nline two", "Sender Name <sender@example.com>",
                     [f"r{n}@example.com" for n in range(12)], cc=["cc@example.com"],
                     reply_to=["Reply Person <reply@example.com>"],
                     headers={"X-Tag": "a  b\tc", "List-Id": "<news.example.com>"}),
        EmailMessage("Grüße aus Köln ✓", "Ünïcödé body ✓", "Jörg <sender@example.com>",
                     ["Zoë <zoe@example.com>"]),
    ]
    with_parts = EmailMultiAlternatives("Parts", "text", "sender@example.com",
                                        ["to@example.com"])
    with_parts.attach_alternative("<p>html ✓</p>", "text/html")
    with_parts.attach("report.csv", "a,b\n1,2\n", "text/csv")
    with_parts.attach("blob.bin", bytes(range(256)) * 4, "application/octet-stream")
    messages.append(with_parts)
    for message in messages:
        # each build has its own Message-ID, Date and MIME boundaries: compare without them
        assert _stable(message_bytes(message)) == _stable(_own_bytes(message))
    assert _plain_bytes(messages[0]) is not None  # the first is written directly
    assert all(_plain_bytes(message) is None for message in messages[1:])


def _stable(raw: bytes) -> bytes:
    """``raw`` with its Date and Message-ID values, which differ build to build, and its MIME
    boundaries replaced by placeholders (the header lines stay, in their place)."""
    raw = re.sub(rb"(?m)^(Message-ID|Date): .*\r\n", rb"\1: *\r\n", raw)
    boundaries = re.findall(rb'boundary="([^"]+)"', raw)
    for n, boundary in enumerate(boundaries):
        raw = raw.replace(boundary, f"BOUNDARY{n}".encode())
    return raw


def _header(raw: bytes, name: bytes) -> bytes:
    return re.search(rb"(?m)^" + name + rb": (.*)\r\n", raw).group(1)


_text = st.text(st.sampled_from([*"aZ09 .,:;<>@\"'()=?\\-_", "\t", "\n", "\r", "é", "✓"]),
                max_size=90)
_words = st.lists(st.sampled_from(["Hello", "a", "Re:", "50%", "x-y", "<id@host>", "1.2"]),
                  min_size=1, max_size=6).map(" ".join)
_bare_address = st.sampled_from(["a@example.com", "first.last+tag@mail.example.org",
                                 "o'neil@example.co.uk", "x_y@sub-domain.example",
                                 "Shop <shop@example.com>", "Ann O'Neil <ann@example.com>"])
_address = st.one_of(_bare_address, _bare_address, st.sampled_from([
    "Name <n@example.com>", '"Last, First" <lf@example.com>', "Jörg <j@example.com>",
    "u@exämple.com", "weird(comment)@example.com", "x@[127.0.0.1]", "q.@example.com"]))
_header_names = st.sampled_from(["X-Tag", "List-Id", "X-Mailer", "Subject", "Date",
                                 "Message-ID", "message-id", "From", "To", "cc", "Sender",
                                 "Bcc", "Comments", "MIME-Version", "Bad Name", "X-Ü"])


@st.composite
def _messages(draw):
    """Any message; half of them near the plain shape, where the direct way is tried."""
    near = draw(st.booleans())
    text, address = (_words, _bare_address) if near else (st.one_of(_words, _text), _address)
    kind = draw(st.sampled_from([EmailMessage, EmailMultiAlternatives]))
    lines = st.lists(st.one_of(_words, st.just("")), max_size=4).map("\n".join)
    body = draw(lines if near else st.one_of(
        _words, _text, st.text(st.sampled_from("ab \n"), min_size=70, max_size=200),
        st.just("x" * 998), st.just("x" * 999)))
    names = st.sampled_from(["X-Tag", "List-Id", "X-Mailer"]) if near else _header_names
    message = kind(draw(text), body, draw(address), draw(st.lists(address, max_size=3)),
                   cc=draw(st.lists(address, max_size=2)),
                   reply_to=draw(st.lists(address, max_size=1)),
                   headers=draw(st.dictionaries(names, st.one_of(text, address), max_size=3)))
    message.content_subtype = draw(st.sampled_from(["plain", "plain", "html", "xml"]))
    message.encoding = draw(st.sampled_from([None, None, "utf-8", "iso-8859-1"]))
    return message


@hypothesis_settings(max_examples=1500, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])
@given(message=_messages())
def test_plain_bytes_are_exactly_what_django_writes(message):
    """Whatever the message, the direct way writes Django's bytes or declines (None); where
    Django refuses a message, the direct way declines it too."""
    try:
        expected = django_bytes(message)
    except Exception:  # noqa: BLE001 - Django refuses it (BadHeaderError, ValueError, ...)
        assert _plain_bytes(message) is None
        return
    found = _plain_bytes(message)
    event(f"written directly: {found is not None}")
    if found is not None:
        assert _stable(found) == _stable(expected)


def test_plain_messages_of_every_day_are_written_directly():
    """The shapes of most mail take the direct way (else it would save nothing): send_mail's
    EmailMultiAlternatives, display names, extra headers, an HTML body, a lazy subject, a
    blank body."""
    lazy_subject = lazy(lambda: "Password reset", str)()
    messages = [
        EmailMultiAlternatives("Hi", "Body\nline two\n", "sender@example.com",
                               ["to@example.com"]),
        EmailMessage(lazy_subject, "Follow the link:\r\nhttps://example.com/r/abc\n",
                     "sender@example.com", ["a@example.com", "b@example.com"],
                     cc=["c@example.com"], reply_to=["help@example.com"],
                     headers={"X-Tag": "reset", "List-Id": "<news.example.com>"}),
        EmailMessage("Empty", "", "sender@example.com", ["to@example.com"]),
    ]
    html = EmailMessage("News", "<p>Hello</p>", "sender@example.com", ["to@example.com"])
    html.content_subtype = "html"
    messages.append(html)
    messages.append(EmailMessage("Hi", "Body", "Shop <shop@example.com>",
                                 ["Ann Smith <ann@example.com>", "bob@example.com"]))
    for message in messages:
        found = _plain_bytes(message)
        assert found is not None
        assert _stable(found) == _stable(django_bytes(message))


@pytest.mark.parametrize("localtime", [False, True])
def test_plain_date_and_message_id_are_made_as_django_makes_them(settings, localtime):
    """The two values the comparison above leaves out: the same forms as Django's, made at
    the same moment, in the zone Django uses."""
    settings.EMAIL_USE_LOCALTIME = localtime
    settings.TIME_ZONE = "America/Chicago"
    message = EmailMessage("Hi", "Body", "sender@example.com", ["to@example.com"])
    found, expected = _plain_bytes(message), django_bytes(message)
    found_date, expected_date = _header(found, b"Date"), _header(expected, b"Date")
    assert found_date[-5:] == expected_date[-5:]  # the zone: +0000, or Chicago's offset
    assert re.sub(rb"\d", b"0", found_date) == re.sub(rb"\d", b"0", expected_date)
    when = parsedate_to_datetime(found_date.decode())  # naive for -0000 (5.2's UTC): UTC
    assert abs(when - parsedate_to_datetime(expected_date.decode())) <= timedelta(seconds=2)
    assert abs(when.replace(tzinfo=when.tzinfo or UTC) - datetime.now(UTC)) <= timedelta(
        seconds=5)
    found_id, expected_id = _header(found, b"Message-ID"), _header(expected, b"Message-ID")
    assert found_id != expected_id  # each message its own
    assert re.sub(rb"\d+", b"N", found_id) == re.sub(rb"\d+", b"N", expected_id)


def test_a_subclass_is_built_by_django():
    """A subclass may build its own MIME (its own ``message()``): it is never written
    directly."""

    class Branded(EmailMessage):
        def message(self, *args, **kwargs):
            built = super().message(*args, **kwargs)
            built["X-Brand"] = "ours"
            return built

    message = Branded("Hi", "Body", "sender@example.com", ["to@example.com"])
    assert _plain_bytes(message) is None
    assert b"X-Brand: ours\r\n" in message_bytes(message)
