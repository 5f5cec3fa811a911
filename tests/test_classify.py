"""The one mapping of SES errors to outcomes: on constructed errors, on errors botocore
parsed from the SES emulator's answers (v1 and v2), and on botocore's configuration errors
raised by the real client."""

import importlib.util

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    MissingDependencyException,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from django.core.mail import EmailMessage

from seacucumber.payload import build_sends
from seacucumber.ses.errors import Outcome, classify
from seacucumber.ses.send import send
from tests.conftest import SENDER


def client_error(code: str, message: str = "", status: int = 400,
                 operation: str = "SendRawEmail") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


def v2_error(code: str, message: str = "", status: int = 400) -> ClientError:
    return client_error(code, message, status, operation="SendEmail")


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (client_error("Throttling", "Maximum sending rate exceeded."), Outcome.THROTTLED),
        (client_error("Throttling", "Daily message quota exceeded."), Outcome.QUOTA_EXCEEDED),
        (client_error("TooManyRequestsException", "", 429), Outcome.THROTTLED),
        (client_error("LimitExceededException"), Outcome.THROTTLED),
        (client_error("ServiceUnavailable", "", 503), Outcome.TRANSIENT),
        (client_error("InternalFailure", "", 500), Outcome.TRANSIENT),
        (client_error("SomethingNew", "", 502), Outcome.TRANSIENT),
        (client_error("MessageRejected", "Email address is not verified."), Outcome.PERMANENT),
        (client_error("MailFromDomainNotVerifiedException"), Outcome.PERMANENT),
        (client_error("ConfigurationSetDoesNotExistException"), Outcome.PERMANENT),
        (client_error("AccountSendingPausedException"), Outcome.PERMANENT),
        (client_error("AccountSuspendedException"), Outcome.PERMANENT),
        (client_error("SendingPausedException"), Outcome.PERMANENT),
        (client_error("NotFoundException", "", 404), Outcome.PERMANENT),
        (client_error("BadRequestException"), Outcome.PERMANENT),
        (client_error("ConfigurationSetSendingPausedException",
                      "Sending is paused for this configuration set."), Outcome.PERMANENT),
        # SES v2 (SendEmail) codes
        (v2_error("TooManyRequestsException", "Maximum sending rate exceeded.", 429),
         Outcome.THROTTLED),
        (v2_error("LimitExceededException", "Maximum sending rate exceeded."),
         Outcome.THROTTLED),
        (v2_error("LimitExceededException", "Daily message quota exceeded."),
         Outcome.QUOTA_EXCEEDED),
        (v2_error("AccountSuspendedException", "", 400), Outcome.PERMANENT),
        (v2_error("SendingPausedException", "Sending is paused for this account."),
         Outcome.PERMANENT),
        (v2_error("NotFoundException", "Configuration set <cs> does not exist.", 404),
         Outcome.PERMANENT),
        (v2_error("BadRequestException", "Missing required header 'From'."),
         Outcome.PERMANENT),
        (v2_error("MessageRejected", "Email address is not verified."), Outcome.PERMANENT),
        (v2_error("MailFromDomainNotVerifiedException"), Outcome.PERMANENT),
        (v2_error("ServiceUnavailable", "", 503), Outcome.TRANSIENT),
        (v2_error("InternalServerError", "", 500), Outcome.TRANSIENT),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), Outcome.TRANSIENT),
        (ParamValidationError(report="bad"), Outcome.PERMANENT),
    ],
)
def test_ses_errors_map_to_outcomes(error, outcome):
    assert classify(error).outcome is outcome


def test_read_timeout_is_transient_and_may_have_sent():
    classified = classify(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert classified.outcome is Outcome.TRANSIENT
    assert classified.maybe_sent


def test_connection_closed_is_transient_and_may_have_sent():
    classified = classify(ConnectionClosedError(endpoint_url="http://127.0.0.1:1"))
    assert classified.outcome is Outcome.TRANSIENT
    assert classified.maybe_sent
    assert classified.code == "ConnectionClosedError"


def test_code_and_message_are_kept():
    classified = classify(client_error("MessageRejected", "Email address is not verified."))
    assert (classified.code, classified.message) == (
        "MessageRejected", "Email address is not verified.")


def test_other_exceptions_are_not_swallowed():
    with pytest.raises(TypeError):
        classify(KeyError("bug"))


# --- errors as botocore parses them from the wire (the project's SES emulator) -------------

def send_error(settings, v2: bool, sends: int = 1) -> BaseException:
    """The error ``ses.send`` raises for one message to two recipients, sent up to ``sends``
    times (a throttle needs the rate spent first)."""
    settings.USE_SES_V2 = v2
    [outbound] = build_sends(
        EmailMessage("Hi", "Body", SENDER, ["to@example.com", "other@example.com"]))
    for _ in range(sends):
        try:
            send(outbound)
        except Exception as exc:  # noqa: BLE001 - which one is the point
            return exc
    raise AssertionError(f"SES accepted {sends} send(s)")


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize(
    ("fault", "outcome", "v1_code", "v2_code"),
    [
        ({"sending_paused": True}, Outcome.PERMANENT,
         "AccountSendingPausedException", "SendingPausedException"),
        ({"daily_quota": 0}, Outcome.QUOTA_EXCEEDED, "Throttling", "LimitExceededException"),
        ({"rate": 0.5, "burst_seconds": 1}, Outcome.THROTTLED,
         "Throttling", "TooManyRequestsException"),
        ({"fail_5xx": 1.0}, Outcome.TRANSIENT, "ServiceUnavailable", "ServiceUnavailable"),
        ({"verified": ("someone-else@example.com",)}, Outcome.PERMANENT,
         "MessageRejected", "MessageRejected"),
    ],
    ids=["paused", "daily-quota", "throttled", "503", "unverified"],
)
def test_errors_from_the_wire(ses_emulator, settings, v2, fault, outcome, v1_code, v2_code):
    ses_emulator.configure(**fault)
    error = send_error(settings, v2, sends=2)  # the first spends the rate's burst
    assert isinstance(error, ClientError)
    classified = classify(error)
    assert (classified.outcome, classified.code) == (outcome, v2_code if v2 else v1_code)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_connection_dropped_on_the_wire_is_transient_maybe_sent(ses_emulator, settings, v2):
    ses_emulator.configure(drop=1.0)
    classified = classify(send_error(settings, v2))
    assert (classified.outcome, classified.code) == (Outcome.TRANSIENT, "ConnectionClosedError")
    assert classified.maybe_sent


# --- the worker's own configuration -------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("awscrt") is not None,
                    reason="awscrt is installed: SigV4a works")
def test_global_endpoint_without_awscrt_fails_at_once_naming_the_package(ses_emulator,
                                                                          settings):
    settings.AWS_SES_GLOBAL_ENDPOINT_ID = "abcd1234.efgh"
    error = send_error(settings, v2=True)
    assert isinstance(error, MissingDependencyException)  # botocore's own, from SigV4a
    classified = classify(error)
    assert classified.outcome is Outcome.PERMANENT
    assert classified.code == "MissingDependencyException"
    assert "awscrt" in classified.message
    assert "botocore[crt]" in classified.message
    assert ses_emulator.stats()["requests"] == 0  # refused before anything went out


def test_endpoint_id_that_is_not_a_host_label_is_permanent(ses_emulator, settings):
    settings.AWS_SES_GLOBAL_ENDPOINT_ID = "not a host!"
    classified = classify(send_error(settings, v2=True))
    assert (classified.outcome, classified.code) == (
        Outcome.PERMANENT, "EndpointResolutionError")


def test_no_region_is_permanent(ses_emulator, settings, monkeypatch):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    settings.AWS_SES_REGION_NAME = None
    classified = classify(send_error(settings, v2=False))
    assert (classified.outcome, classified.code) == (Outcome.PERMANENT, "NoRegionError")
    assert "region" in classified.message


def test_partial_credentials_are_permanent():
    error = PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY")
    assert classify(error).outcome is Outcome.PERMANENT


def test_no_credentials_is_transient(ses_emulator, settings, no_aws_credentials):
    """An instance role's metadata service that timed out leaves botocore with no
    credentials: that heals by itself, so the message retries (see docs/reliability.rst)."""
    settings.AWS_SES_ACCESS_KEY_ID = None
    settings.AWS_SES_SECRET_ACCESS_KEY = None
    error = send_error(settings, v2=False)
    assert isinstance(error, NoCredentialsError)
    assert classify(error).outcome is Outcome.TRANSIENT
