"""Unit tests: turning Django messages into SES sends (no services needed)."""

import base64
import copy
import email
import json
import time
from email import policy

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

from seacucumber.exceptions import InvalidMessage, MalformedPayload
from seacucumber.payload import (
    MAX_RAW_BASE64,
    MAX_SIZE_V1,
    MAX_SIZE_V2,
    OutboundSend,
    build_sends,
)


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def test_one_send_with_every_recipient_and_no_bcc_header():
    message = EmailMessage(
        "Hi", "Body", "Sender <sender@example.com>", ["a@example.com"],
        cc=["c@example.com"], bcc=["hidden@example.com"], reply_to=["r@example.com"],
    )
    [send] = build_sends(message)
    assert send.sender == "sender@example.com"
    assert send.recipients == ("a@example.com", "c@example.com", "hidden@example.com")
    parsed = parse(send.raw)
    assert parsed["Bcc"] is None
    assert b"hidden@example.com" not in send.raw
    assert parsed["Reply-To"] == "r@example.com"


def test_more_than_fifty_recipients_split_into_sends_of_fifty():
    bcc = [f"user{i}@example.com" for i in range(120)]
    message = EmailMessage("Hi", "Body", "sender@example.com", ["to@example.com"], bcc=bcc)
    sends = build_sends(message)
    assert [len(s.recipients) for s in sends] == [50, 50, 21]
    assert len({s.message_id for s in sends}) == 3
    assert {s.raw for s in sends} == {sends[0].raw}
    assert sum((list(s.recipients) for s in sends), []) == ["to@example.com", *bcc]


def test_no_recipients_gives_no_sends():
    assert build_sends(EmailMessage("Hi", "Body", "sender@example.com", [])) == []


def test_duplicate_recipients_are_sent_once():
    message = EmailMessage("Hi", "Body", "s@example.com", ["a@example.com"],
                           cc=["A@example.com"], bcc=["a@example.com"])
    [send] = build_sends(message)
    assert send.recipients == ("a@example.com",)


@pytest.mark.parametrize(
    ("v2", "limit"), [(False, MAX_SIZE_V1), (True, MAX_SIZE_V2)]
)
def test_oversize_message_refused_naming_size_and_limit(settings, v2, limit):
    settings.USE_SES_V2 = v2
    message = EmailMessage("Big", "x", "s@example.com", ["a@example.com"])
    message.attach("big.bin", b"\0" * (limit * 3 // 4 + 1024), "application/octet-stream")
    with pytest.raises(InvalidMessage) as caught:
        build_sends(message)
    assert f"{limit:,} bytes" in str(caught.value)
    assert "SES v2" in str(caught.value) if v2 else "SES v1" in str(caught.value)


def test_message_just_under_v1_limit_is_accepted():
    message = EmailMessage("Big", "x", "s@example.com", ["a@example.com"])
    # base64 in 76-character lines plus CRLF: 78 bytes for every 57
    message.attach("big.bin", b"\0" * (MAX_SIZE_V1 * 57 // 78 - 10_000), "application/octet-stream")
    assert len(build_sends(message)[0].raw) <= MAX_SIZE_V1


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"subject": "Hi\nBcc: victim@example.com"}, "header injection"),
        ({"subject": "Hi\x85there"}, "subject contains a line break \\(U\\+0085\\)"),
        ({"subject": "Hi\u2028there"}, "header injection"),
        ({"headers": {"X-Tag": "a\x0bb"}}, "header 'X-Tag' contains a line break"),
        ({"to": ["not an address"]}, "recipient address"),
        ({"to": ["a@example.com\nBcc: x@example.com"]}, "recipient address"),
        ({"bcc": ["nobody@"]}, "recipient address"),
        ({"from_email": "not-an-address"}, "sender address"),
        ({"reply_to": ["@@"]}, "reply-to address"),
        ({"to": ["jörg@example.com"]}, "non-ASCII local part"),
    ],
)
def test_bad_input_refused_with_clear_error(fields, words):
    base = {"subject": "Hi", "body": "Body", "from_email": "s@example.com",
            "to": ["a@example.com"]}
    with pytest.raises(InvalidMessage, match=words):
        build_sends(EmailMessage(**{**base, **fields}))


def test_idn_domain_goes_to_ses_in_punycode():
    [send] = build_sends(EmailMessage("Hi", "B", "s@example.com", ["user@bücher.example"]))
    assert send.recipients == ("user@xn--bcher-kva.example",)


def test_callers_message_is_not_changed():
    message = EmailMultiAlternatives(
        "Grüße", "Text", "Zoë <s@example.com>", ["a@example.com"], bcc=["b@example.com"],
        headers={"X-Tag": "1"},
    )
    message.attach_alternative("<p>Hi</p>", "text/html")
    message.attach("a.txt", "hello", "text/plain")
    before = copy.deepcopy(message.__dict__)
    build_sends(message)
    assert message.__dict__ == before


def test_configuration_set_from_setting_or_callable(settings):
    settings.AWS_SES_CONFIGURATION_SET = "tracking"
    settings.AWS_SES_SOURCE_ARN = "arn:aws:ses:us-east-1:1:identity/example.com"
    message = EmailMessage("Hi", "B", "s@example.com", ["a@example.com"])
    [send] = build_sends(message)
    assert send.options == {"configuration_set": "tracking",
                            "source_arn": "arn:aws:ses:us-east-1:1:identity/example.com"}
    seen = []

    def choose(msg, dkim_domain=None, dkim_key=None, dkim_selector=None, dkim_headers=None):
        seen.append(msg)
        return "per-message"

    settings.AWS_SES_CONFIGURATION_SET = choose
    [send] = build_sends(message)
    assert send.options["configuration_set"] == "per-message"
    assert seen == [message]


def test_return_path_setting_sets_envelope_sender(settings):
    settings.AWS_SES_RETURN_PATH = "bounces@example.com"
    [send] = build_sends(EmailMessage("Hi", "B", "s@example.com", ["a@example.com"]))
    assert send.sender == "bounces@example.com"


def test_payload_is_plain_json_and_round_trips():
    message = EmailMessage("Hi ☃", "Body ☃", "s@example.com", ["a@example.com"])
    message.attach("x.bin", bytes(range(256)), "application/octet-stream")
    [send] = build_sends(message)
    wire = json.dumps(send.to_json())
    assert OutboundSend.from_json(json.loads(wire)) == send


#: A payload exactly as the release before the regrouped layout (commit 7825418) wrote it.
#: During a rolling deploy old and new workers share one queue: the new code must read this,
#: and write nothing an old worker would refuse (the same keys, types and version).
WRITTEN_BY_THE_PREVIOUS_RELEASE = {
    "v": 1,
    "id": "5f0c2b9e8d7a4c3b9a1e2d3c4b5a6978-2",
    "from": "bounces@example.com",
    "to": ["a@example.com", "b@xn--bcher-kva.example"],
    "raw": "U3ViamVjdDogSGkNCg0KQm9keQ0K",
    "created": 1764500000.25,
    "options": {"configuration_set": "transactional", "from_arn": "arn:aws:ses:x"},
}


def test_payloads_of_the_previous_release_are_read_and_written_alike():
    read = OutboundSend.from_json(json.loads(json.dumps(WRITTEN_BY_THE_PREVIOUS_RELEASE)))
    assert read.raw == b"Subject: Hi\r\n\r\nBody\r\n"
    assert read.recipients == ("a@example.com", "b@xn--bcher-kva.example")
    assert read.to_json() == WRITTEN_BY_THE_PREVIOUS_RELEASE  # what an old worker reads
    [fresh] = build_sends(EmailMessage("S", "B", "s@example.com", ["a@example.com"]))
    written = fresh.to_json()
    assert {k: type(v) for k, v in written.items()} == {
        k: type(v) for k, v in WRITTEN_BY_THE_PREVIOUS_RELEASE.items()}
    assert written["v"] == WRITTEN_BY_THE_PREVIOUS_RELEASE["v"]


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda p: "just a string", "not an object"),
        (lambda p: {**p, "v": 99}, "version"),
        (lambda p: {**p, "id": ""}, "message id"),
        (lambda p: {**p, "from": 5}, "sender"),
        (lambda p: {**p, "to": []}, "recipients"),
        (lambda p: {**p, "to": ["x@example.com"] * 51}, "recipients"),
        (lambda p: {**p, "raw": "***not base64***"}, "base64"),
        (lambda p: {**p, "raw": None}, "raw message"),
        (lambda p: {**p, "created": "yesterday"}, "creation time"),
        (lambda p: {**p, "options": {"Evil": "1"}}, "options"),
        # a task written into the broker by hand: what send_messages refuses, refused again
        (lambda p: {**p, "to": ["a@example.com\r\nBcc: x@example.com"]}, "recipient .* not "
                                                                          "printable ASCII"),
        (lambda p: {**p, "to": ["a@example.com", "b@example.com\n"]}, "header injection"),
        (lambda p: {**p, "from": "s@example.com\x00"}, "sender .* not printable ASCII"),
        (lambda p: {**p, "id": "abc\r\nERROR forged log line"}, "message id"),
        (lambda p: {**p, "created": float("nan")}, "creation time"),
        (lambda p: {**p, "created": time.time() + 2 * 86400}, "in the future"),
        (lambda p: {**p, "raw": b64(b"X-A\r\nBcc: x@evil.example\r\nX-B: v\r\n\r\nBody")},
         "header line b'X-A'"),
        (lambda p: {**p, "raw": b64(b"Subject: a\nBcc: x@evil.example\r\n\r\nBody")},
         "header line"),
        (lambda p: {**p, "raw": b64(b"Subject: a\r\n\r\n\r\nX: b\r\n")}, None),
        (lambda p: {**p, "raw": b64(b"X-A: a\x00\r\n\r\nBody")}, "header line"),
        (lambda p: {**p, "raw": b64(b"Subject: no empty line ends me")}, "header block"),
    ],
)
def test_malformed_payload_refused_with_reason(mutate, words):
    [send] = build_sends(EmailMessage("Hi", "B", "s@example.com", ["a@example.com"]))
    if words is None:  # a header block as message_bytes writes it: read
        assert OutboundSend.from_json(mutate(send.to_json())).raw.startswith(b"Subject: a")
        return
    with pytest.raises(MalformedPayload, match=words):
        OutboundSend.from_json(mutate(send.to_json()))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def test_a_raw_message_over_ses_largest_is_refused_before_it_is_decoded():
    [send] = build_sends(EmailMessage("Hi", "B", "s@example.com", ["a@example.com"]))
    with pytest.raises(MalformedPayload, match="over SES's largest"):
        OutboundSend.from_json({**send.to_json(), "raw": "A" * (MAX_RAW_BASE64 + 4)})


def test_folded_and_encoded_headers_pass_the_workers_check():
    message = EmailMultiAlternatives(
        "Grüße " * 30, "Text", "Zoë Longname <s@example.com>",
        [f"recipient{n}@example.com" for n in range(10)], headers={"X-Long": "word " * 60})
    message.attach("ä.txt", "hello", "text/plain")
    [send] = build_sends(message)
    assert b"\r\n " in send.raw.split(b"\r\n\r\n")[0]  # folded lines among the headers
    assert OutboundSend.from_json(send.to_json()) == send


def test_dkim_signing_keeps_room_for_its_header(settings):
    settings.DKIM_DOMAIN = "example.com"
    settings.DKIM_PRIVATE_KEY = "key"
    from seacucumber.payload import DKIM_SIGNATURE_ALLOWANCE, size_limit

    assert size_limit() == MAX_SIZE_V1 - DKIM_SIGNATURE_ALLOWANCE
