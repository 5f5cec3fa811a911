"""Hostile input on the send path (issue 26): what ``send_messages`` refuses (header names,
line breaks in attachment file names, per message under ``fail_silently``), and what the
send task does with a task someone wrote into the broker by hand: a payload naming an SES
endpoint, region or profile the worker's settings do not, a claim check of another send or of
the wrong kind or in a store the worker has not got, arguments of the wrong type. Each ends
failed with its reason (``message_failed``), and no request leaves for an endpoint the
worker does not trust.

The task runs in this process (``send_email.apply``), SES is the project's emulator, the
claim check's store a private redis-server."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator

import pytest
from django.core import mail
from django.core.mail import BadHeaderError, EmailMessage

from seacucumber import clients, signals
from seacucumber.exceptions import HeaderInjection, MalformedPayload
from seacucumber.payload import build_sends
from seacucumber.ses import clients as ses_clients
from seacucumber.shared import claimcheck, store
from seacucumber.tasks import send_email
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER


@pytest.fixture
def outcomes() -> Iterator[dict[str, list[dict]]]:
    """What ``message_failed`` and ``message_sent`` said, in order."""
    got: dict[str, list[dict]] = {"failed": [], "sent": []}

    def failed(sender, **kwargs):
        got["failed"].append(kwargs)

    def sent(sender, **kwargs):
        got["sent"].append(kwargs)

    signals.message_failed.connect(failed)
    signals.message_sent.connect(sent)
    try:
        yield got
    finally:
        signals.message_failed.disconnect(failed)
        signals.message_sent.disconnect(sent)


def payload(subject: str = "Hi", **options) -> dict:
    """A task payload as ``send_messages`` writes it, through JSON."""
    [outbound] = build_sends(EmailMessage(subject, "Body", SENDER, ["to@example.com"]))
    data = json.loads(json.dumps(outbound.to_json()))
    if options:
        data["options"].update(options)
        data["v"] = 2
    return data


def run(data: dict, **kwargs):
    """The send task run as a worker runs it (its failure returned, not raised)."""
    return send_email.apply(args=[data], kwargs=kwargs, task_id=str(uuid.uuid4()))


def assert_failed(result, outcomes, code: str, *words: str) -> dict:
    assert result.state == "FAILURE", result.state
    [failure] = outcomes["failed"]
    assert failure["code"] == code, failure
    for word in words:
        assert word in failure["reason"], failure["reason"]
    assert outcomes["sent"] == []
    return failure


# --- send_messages: header names, file names, one bad message in a batch ------------------------

@pytest.mark.parametrize("name", [
    "X-A\r\nBcc: victim@example.com\r\nX-B",  # a Bcc line
    "X-A\r\n\r\nnot the body",  # the body replaced
    "X-A\r\nFrom: someone@evil.example\r\nX-B",  # a second From
    "X A", "X:A", "", "Xé", "X-A\n",
])
def test_a_header_name_that_is_no_field_name_is_refused(name):
    message = EmailMessage("Hi", "Body", SENDER, ["a@example.com"], headers={name: "v"})
    with pytest.raises(HeaderInjection, match="header name") as caught:
        build_sends(message)
    assert isinstance(caught.value, BadHeaderError)  # what views written for Django catch


@pytest.mark.parametrize("filename", ["a\r\nb.txt", "a\nContent-Type: text/html.txt",
                                      "a\rb", "a\u2028b"])
def test_a_line_break_in_an_attachment_file_name_is_refused(filename):
    message = EmailMessage("Hi", "Body", SENDER, ["a@example.com"])
    message.attach(filename, b"data", "application/octet-stream")
    with pytest.raises(HeaderInjection, match="attachment file name"):
        build_sends(message)


def test_a_line_break_in_an_attachment_or_alternative_type_is_refused():
    message = EmailMessage("Hi", "Body", SENDER, ["a@example.com"])
    message.attach("a.txt", "text", "text/plain\r\nBcc: victim@example.com")
    with pytest.raises(HeaderInjection, match="attachment type"):
        build_sends(message)
    alternative = mail.EmailMultiAlternatives("Hi", "Body", SENDER, ["a@example.com"])
    alternative.attach_alternative("<p>x</p>", "text/html\nX: y")
    with pytest.raises(HeaderInjection, match="alternative type"):
        build_sends(alternative)


def bad_file_name() -> EmailMessage:
    message = EmailMessage("Bad", "Body", SENDER, ["bad@example.com"])
    message.attach("a\r\nb.txt", b"x", "text/plain")
    return message


@pytest.mark.parametrize("bad", [
    bad_file_name,
    lambda: EmailMessage("Bad", "B", SENDER, ["bad@example.com"], headers={"X\r\nBcc": "v"}),
    lambda: EmailMessage("Bad", "B", SENDER, ["bad@example.com\r\nBcc: victim@example.com"]),
    lambda: EmailMessage("Bad", "B", "sender@example.com\nBcc: victim@example.com",
                         ["bad@example.com"]),
])
def test_a_bad_message_in_a_batch_is_refused_alone_under_fail_silently(bad, ses_emulator,
                                                                       eager):
    batch = [EmailMessage("One", "B", SENDER, ["one@example.com"]), bad(),
             EmailMessage("Two", "B", SENDER, ["two@example.com"])]
    assert mail.get_connection(fail_silently=True).send_messages(batch) == 2
    assert sorted(m.destinations[0] for m in ses_emulator.messages()) == [
        "one@example.com", "two@example.com"]
    with pytest.raises(HeaderInjection):  # and without fail_silently, the batch is refused
        mail.get_connection().send_messages(batch)
    assert len(ses_emulator.messages()) == 2


# --- the worker: a payload's header block and envelope checked again -----------------------------

@pytest.mark.parametrize(("change", "words"), [
    ({"to": ["to@example.com\r\nBcc: victim@example.com"]}, "recipient"),
    ({"to": ["to@example.com", "x@example.com\n"]}, "recipient"),
    ({"from": "sender@example.com\r\nBcc: victim@example.com"}, "sender"),
    ({"from": "sender@example.com\x00"}, "sender"),
    ({"raw": base64.b64encode(b"X-A\r\nBcc: victim@example.com\r\nX-B: v\r\n\r\nBody\r\n")
      .decode()}, "header line"),
])
def test_a_forged_envelope_or_header_block_fails_with_its_reason(change, words, ses_emulator,
                                                                 outcomes):
    result = run({**payload(), **change})
    assert_failed(result, outcomes, "MalformedPayload", words, "header injection refused")
    assert ses_emulator.messages() == []


# --- the worker: a payload's SES client ---------------------------------------------------------

@pytest.fixture
def listener() -> Iterator[SESEmulator]:
    """Another SES endpoint on loopback: the one a forged payload names."""
    with SESEmulator(rate=0) as other:
        yield other


def test_a_payload_naming_an_endpoint_the_settings_do_not_is_failed_unsent(
        ses_emulator, listener, outcomes):
    result = run(payload(endpoint_url=listener.url))
    assert_failed(result, outcomes, "UntrustedClientOptions", listener.url,
                  "SEACUCUMBER_TRUSTED_ENDPOINT_URLS")
    assert listener.messages() == [] and listener.stats()["requests"] == 0
    assert ses_emulator.messages() == []


@pytest.mark.parametrize(("option", "value", "setting"), [
    ("region", "eu-west-1", "SEACUCUMBER_TRUSTED_REGIONS"),
    ("profile", "admin", "SEACUCUMBER_TRUSTED_PROFILES"),
])
def test_a_payload_naming_a_region_or_profile_the_settings_do_not_is_failed(
        ses_emulator, outcomes, option, value, setting):
    assert_failed(run(payload(**{option: value})), outcomes, "UntrustedClientOptions",
                  repr(value), setting)
    assert ses_emulator.messages() == []


def test_the_settings_and_mailers_name_the_clients_a_payload_may_use(
        ses_emulator, listener, outcomes, settings):
    settings.SEACUCUMBER_TRUSTED_ENDPOINT_URLS = [listener.url + "/"]
    settings.MAILERS = {"bulk": {"BACKEND": "seacucumber.backend.SESBackend",
                                 "OPTIONS": {"region": "eu-west-1"}}}
    assert run(payload(endpoint_url=listener.url)).successful()
    assert run(payload(region="eu-west-1")).successful()
    assert run(payload(region="us-east-1", endpoint_url=ses_emulator.url)).successful()
    assert outcomes["failed"] == [] and len(outcomes["sent"]) == 3
    assert len(listener.messages()) == 1 and len(ses_emulator.messages()) == 2
    outcomes["sent"].clear()
    assert_failed(run(payload(region="ap-south-1")), outcomes, "UntrustedClientOptions")


def test_the_ses_client_cache_is_bounded(ses_emulator):
    clients.clear()
    try:
        regions = [f"xx-test-{n}" for n in range(ses_clients.MAX_CLIENTS + 4)]
        made = [ses_clients.client(region=region) for region in regions]
        cache = clients.shared(("boto3", "ses-clients"), dict)
        assert len(cache) == ses_clients.MAX_CLIENTS
        assert ses_clients.client(region="xx-test-0") is not made[0]  # dropped: made anew
        assert ses_clients.client(region=regions[-1]) is made[-1]  # kept
    finally:
        clients.clear()


# --- the worker: claim checks -------------------------------------------------------------------

@pytest.fixture
def claim_store(redis_url, settings) -> str:
    """The claim check's store in a private Redis, under a prefix of the test's own."""
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/11"
    settings.SEACUCUMBER_REDIS_PREFIX = f"hostile-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_CLAIM_CHECK_THRESHOLD = 1024
    return settings.SEACUCUMBER_REDIS_PREFIX


def claimed(subject: str) -> dict:
    """The payload of a large message, its raw message stored in the claim check."""
    message = EmailMessage(subject, "x" * 4000, SENDER, ["to@example.com"])
    [[outbound]] = claimcheck.check_in([build_sends(message)], timeout=5)
    return json.loads(json.dumps(outbound.to_json()))


def test_a_claim_of_another_send_is_not_fetched(claim_store, ses_emulator, outcomes):
    victim, forged = claimed("Victim"), claimed("Forged")
    forged["claim"] = victim["claim"]  # another send's stored message, sha256 and all
    forged["to"] = ["attacker@example.com"]
    assert_failed(run(forged), outcomes, "ClaimCheckCorrupt", "not send", forged["id"])
    assert ses_emulator.messages() == []
    assert store.redis_client().exists(victim["claim"]["key"])  # the victim's is intact
    assert run(victim).successful()
    [sent] = ses_emulator.messages()
    assert sent.destinations == ["to@example.com"]
    assert hashlib.sha256(sent.raw).hexdigest() == victim["claim"]["sha256"]


def test_a_claim_key_of_the_wrong_kind_fails_at_once(claim_store, ses_emulator, outcomes):
    data = claimed("Wrong kind")
    client = store.redis_client()
    client.delete(data["claim"]["key"])
    client.hset(data["claim"]["key"], "field", "value")
    result = run(data)
    assert_failed(result, outcomes, "ClaimCheckCorrupt", "not a stored message")
    assert "retry" not in str(result.result).lower()


def test_a_claim_in_s3_on_a_worker_without_a_bucket_fails_with_its_reason(
        claim_store, ses_emulator, outcomes, settings):
    data = claimed("S3")
    data["claim"] = {**data["claim"], "store": "s3",
                     "key": claimcheck.key_for("s3", data["id"])}
    settings.SEACUCUMBER_CLAIM_CHECK_BUCKET = None
    assert_failed(run(data), outcomes, "ClaimCheckNoStore", "SEACUCUMBER_CLAIM_CHECK_BUCKET")


# --- the worker: the task's own arguments --------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "words"), [
    ({"due": "soon"}, "due='soon'"),
    ({"due": float("nan")}, "due=nan"),
    ({"due": 1e300}, "further ahead"),
    ({"reserved_at": [1]}, "reserved_at"),
    ({"failures": "3"}, "failures='3'"),
    ({"failures": -1}, "failures=-1"),
    ({"held": -5.0}, "held=-5.0"),
    ({"held": True}, "held=True"),
    ({"surprise": 1}, "'surprise'"),
])
def test_task_arguments_of_the_wrong_kind_fail_with_a_reason(kwargs, words, ses_emulator,
                                                            outcomes):
    data = payload()
    failure = assert_failed(run(data, **kwargs), outcomes, "MalformedPayload", words)
    assert failure["message_id"] == data["id"]
    assert ses_emulator.messages() == []


def test_a_task_with_no_payload_or_more_arguments_fails_with_a_reason(ses_emulator, outcomes):
    result = send_email.apply(args=[], task_id="t-none")
    assert_failed(result, outcomes, "MalformedPayload", "NoneType")
    outcomes["failed"].clear()
    result = send_email.apply(args=[payload(), None, 0, 0.0, None, "extra"], task_id="t-more")
    assert_failed(result, outcomes, "MalformedPayload", "1 more positional")
    assert isinstance(result.result, MalformedPayload)
