"""The SES call itself, on the project's SES emulator: boto3's own retries are off, and the
per-message options (configuration set, sending-authorization ARNs, return path, endpoint
id) reach SES under the right names, v1 and v2; v1's form is encoded once, to the bytes
botocore would send.

The emulator records sender, recipients and raw message, not the other request parameters,
so the request is read where botocore serializes it: an observer registered on the real
client's ``before-call`` event (nothing is patched or stubbed; the request still goes to the
emulator, which must accept it).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError
from django.core.mail import EmailMessage
from hypothesis import given
from hypothesis import strategies as st

from seacucumber.payload import build_sends
from seacucumber.ses import clients
from seacucumber.ses import errors as ses
from seacucumber.ses import send as ses_send
from tests.conftest import SENDER

FROM_ARN = "arn:aws:ses:us-east-1:123456789012:identity/from.example.com"
SOURCE_ARN = "arn:aws:ses:us-east-1:123456789012:identity/source.example.com"
RETURN_PATH_ARN = "arn:aws:ses:us-east-1:123456789012:identity/bounces.example.com"
RETURN_PATH = "Bounces <bounces@example.com>"


@pytest.fixture
def requests_sent(ses_emulator, settings) -> Iterator[list[dict]]:
    """Every SendRawEmail / SendEmail request body as botocore sends it (form fields for v1,
    the JSON document for v2)."""
    seen: list[dict] = []

    def observe(params, **_):
        body = params["body"]
        seen.append(json.loads(body) if isinstance(body, bytes | str) else dict(body))

    registered = []
    for service, event in (("ses", "before-call.ses.SendRawEmail"),
                           ("sesv2", "before-call.sesv2.SendEmail")):
        events = clients.client(service).meta.events
        events.register(event, observe)
        registered.append((events, event))
    try:
        yield seen
    finally:
        for events, event in registered:
            events.unregister(event, observe)


def send_one(**message) -> str:
    [outbound] = build_sends(EmailMessage("Hi", "Body", SENDER, ["to@example.com"], **message))
    return ses_send.send(outbound)


# --- boto3's retries --------------------------------------------------------------------------

@pytest.mark.parametrize("service", ["ses", "sesv2"])
def test_boto3_retries_are_off(ses_emulator, service):
    retries = clients.client(service).meta.config.retries
    assert retries["total_max_attempts"] == 1


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize(("fault", "outcome"), [({"fail_5xx": 1.0}, ses.Outcome.TRANSIENT),
                                              ({"rate": 0.5}, ses.Outcome.THROTTLED)],
                         ids=["503", "throttle"])
def test_one_request_per_send_even_for_retryable_errors(ses_emulator, settings, v2, fault,
                                                        outcome):
    """boto3 would retry 503s and throttling (3 to 5 attempts) before Celery saw them."""
    settings.USE_SES_V2 = v2
    ses_emulator.configure(**fault)
    if "rate" in fault:
        send_one()  # spends the bucket: the next send is throttled
    before = ses_emulator.stats()["requests"]
    with pytest.raises(ClientError) as raised:
        send_one()
    assert ses.classify(raised.value).outcome is outcome
    assert ses_emulator.stats()["requests"] - before == 1


# --- options reaching SES ------------------------------------------------------------------------

def test_v1_options_reach_ses(ses_emulator, settings, requests_sent):
    settings.AWS_SES_CONFIGURATION_SET = "transactional"
    settings.AWS_SES_SOURCE_ARN = SOURCE_ARN
    settings.AWS_SES_FROM_ARN = FROM_ARN
    settings.AWS_SES_RETURN_PATH_ARN = RETURN_PATH_ARN
    settings.AWS_SES_RETURN_PATH = RETURN_PATH
    ses_id = send_one()
    [request] = requests_sent
    assert request["Action"] == "SendRawEmail"
    assert request["Source"] == "bounces@example.com"
    assert request["ConfigurationSetName"] == "transactional"
    assert request["SourceArn"] == SOURCE_ARN
    assert request["FromArn"] == FROM_ARN
    assert request["ReturnPathArn"] == RETURN_PATH_ARN
    [accepted] = ses_emulator.messages()
    assert (accepted.ses_id, accepted.source) == (ses_id, "bounces@example.com")
    assert b"From: sender@example.com" in accepted.raw


def test_v1_without_options_sends_none(ses_emulator, settings, requests_sent):
    send_one()
    [request] = requests_sent
    assert request["Source"] == SENDER
    assert not {"ConfigurationSetName", "SourceArn", "FromArn", "ReturnPathArn"} & set(request)


def test_v2_options_reach_ses(ses_emulator, settings, requests_sent):
    settings.USE_SES_V2 = True
    settings.AWS_SES_CONFIGURATION_SET = "transactional"
    settings.AWS_SES_SOURCE_ARN = SOURCE_ARN
    settings.AWS_SES_FROM_ARN = FROM_ARN
    settings.AWS_SES_RETURN_PATH_ARN = RETURN_PATH_ARN
    settings.AWS_SES_RETURN_PATH = RETURN_PATH
    ses_id = send_one(cc=["cc@example.com"], bcc=["bcc@example.com"])
    [request] = requests_sent
    assert request["FromEmailAddress"] == "bounces@example.com"
    assert request["FeedbackForwardingEmailAddress"] == "bounces@example.com"
    assert request["FromEmailAddressIdentityArn"] == FROM_ARN  # FROM_ARN wins over SOURCE_ARN
    assert request["FeedbackForwardingEmailAddressIdentityArn"] == RETURN_PATH_ARN
    assert request["ConfigurationSetName"] == "transactional"
    assert request["Destination"] == {
        "ToAddresses": ["to@example.com", "cc@example.com", "bcc@example.com"]}
    assert "EndpointId" not in request
    [accepted] = ses_emulator.messages()
    assert accepted.ses_id == ses_id
    assert b"From: sender@example.com" in accepted.raw  # the header From is the message's


def test_v2_source_arn_stands_in_for_the_from_arn(ses_emulator, settings, requests_sent):
    settings.USE_SES_V2 = True
    settings.AWS_SES_SOURCE_ARN = SOURCE_ARN
    send_one()
    [request] = requests_sent
    assert request["FromEmailAddressIdentityArn"] == SOURCE_ARN


def test_v2_return_path_goes_to_feedback_forwarding(ses_emulator, settings, requests_sent):
    settings.USE_SES_V2 = True
    settings.AWS_SES_RETURN_PATH = RETURN_PATH
    send_one()
    [request] = requests_sent
    assert request["FromEmailAddress"] == "bounces@example.com"
    assert request["FeedbackForwardingEmailAddress"] == "bounces@example.com"
    assert "FeedbackForwardingEmailAddressIdentityArn" not in request


def test_v2_return_path_arn_names_the_address_it_authorizes(ses_emulator, settings,
                                                            requests_sent):
    settings.USE_SES_V2 = True
    settings.AWS_SES_RETURN_PATH_ARN = RETURN_PATH_ARN
    send_one()
    [request] = requests_sent
    assert request["FeedbackForwardingEmailAddress"] == SENDER
    assert request["FeedbackForwardingEmailAddressIdentityArn"] == RETURN_PATH_ARN


def test_v2_without_options_sends_none(ses_emulator, settings, requests_sent):
    settings.USE_SES_V2 = True
    send_one()
    [request] = requests_sent
    assert request["FromEmailAddress"] == SENDER
    assert not {
        "FeedbackForwardingEmailAddress", "FeedbackForwardingEmailAddressIdentityArn",
        "FromEmailAddressIdentityArn", "ConfigurationSetName", "EndpointId",
    } & set(request)


def test_v2_configuration_set_from_a_callable(ses_emulator, settings, requests_sent):
    settings.USE_SES_V2 = True
    settings.AWS_SES_CONFIGURATION_SET = (
        lambda message, **_: "bulk" if "list" in message.subject else "transactional")
    [outbound] = build_sends(EmailMessage("A list mail", "Body", SENDER, ["to@example.com"]))
    ses_send.send(outbound)
    assert requests_sent[0]["ConfigurationSetName"] == "bulk"


# --- the form, encoded once ---------------------------------------------------------------------

def botocore_form(fields: dict) -> bytes:
    """What botocore itself sends for a query-protocol body of ``fields``."""
    return AWSRequest(method="POST", url="https://email.example.com/", data=dict(fields)).body


def test_v1_form_is_encoded_once_to_the_bytes_botocore_would_send(ses_emulator, settings,
                                                                  requests_sent):
    """The v1 client encodes SendRawEmail's form once, before the call (botocore would
    encode it at signing and again at sending); the bytes are botocore's own, and SES
    reads them back whole."""
    settings.AWS_SES_CONFIGURATION_SET = "transactional"
    settings.AWS_SES_SOURCE_ARN = SOURCE_ARN
    sent: list[bytes] = []
    events = clients.client("ses").meta.events

    def after_ours(params, **_):
        sent.append(params["body"])

    events.register_last("before-call.ses.SendRawEmail", after_ours)
    try:
        [outbound] = build_sends(EmailMessage(
            "Grüße + 1/2 = ½", "Körper & more " * 300, "Zoë <sender@example.com>",
            ["to@example.com", "Ünïcode <b@example.com>"]))
        outbound.options["tags"] = {"campaign": "spring"}
        ses_send.send(outbound)
    finally:
        events.unregister("before-call.ses.SendRawEmail", after_ours)
    [fields], [body] = requests_sent, sent
    assert isinstance(body, bytes)
    assert body == botocore_form(fields)
    assert b"RawMessage.Data=" in body and b"Tags.member.1.Name=campaign" in body
    [accepted] = ses_emulator.messages()
    assert accepted.raw == outbound.raw
    assert accepted.tags["campaign"] == "spring"


FORM_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(st.dictionaries(FORM_TEXT, FORM_TEXT | st.binary(max_size=300).map(
    lambda data: base64.b64encode(data).decode()), max_size=8))
def test_the_form_encoded_once_is_botocores_for_any_text(fields):
    params = {"body": dict(fields)}
    clients.encode_form_once(params)
    assert params["body"] == botocore_form(fields)


def test_a_form_that_is_not_all_text_is_left_to_botocore():
    for body in ({"Action": "SendRawEmail", "Count": 3}, b"Action=SendRawEmail", None):
        params = {"body": body}
        clients.encode_form_once(params)
        assert params["body"] is body
