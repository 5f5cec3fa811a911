"""The one mapping of SES errors to outcomes: on constructed errors, on errors botocore
parsed from the SES emulator's answers and from a loopback endpoint's (v1 and v2), and on
botocore's configuration errors raised by the real client. Errors from the worker's own
configuration are CONFIGURATION (held, never failed at once); only errors about the message
itself are PERMANENT."""

import importlib.util

import pytest
from botocore.exceptions import (
    ClientError,
    ConfigParseError,
    ConnectionClosedError,
    CredentialRetrievalError,
    EndpointConnectionError,
    EndpointResolutionError,
    InvalidConfigError,
    InvalidRegionError,
    MissingDependencyException,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from django.core.mail import EmailMessage

from seacucumber.payload import build_sends
from seacucumber.ses.errors import Outcome, classify
from seacucumber.ses.send import send
from tests.conftest import SENDER
from tests.fixtures_ops import v1_error as ops_v1_error
from tests.fixtures_ops import v2_error as ops_v2_error


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
        (client_error("AccountSendingPausedException"), Outcome.PERMANENT),
        (client_error("AccountSuspendedException"), Outcome.PERMANENT),
        (client_error("SendingPausedException"), Outcome.PERMANENT),
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


# --- the worker's own configuration: held (CONFIGURATION), never failed at once ---------------

@pytest.mark.parametrize(
    "error",
    [
        # invalid or unknown access key id
        client_error("InvalidClientTokenId",
                     "The security token included in the request is invalid.", 403),
        v2_error("UnrecognizedClientException",
                 "The security token included in the request is invalid.", 403),
        # expired session token
        client_error("ExpiredToken", "The security token included in the request is expired",
                     403),
        v2_error("ExpiredTokenException",
                 "The security token included in the request is expired", 403),
        # a secret that does not match the key id
        client_error("SignatureDoesNotMatch", "The request signature we calculated does not "
                     "match the signature you provided.", 403),
        v2_error("InvalidSignatureException", "The request signature we calculated does not "
                 "match the signature you provided.", 403),
        # signed with part of the credentials, or unsigned
        client_error("IncompleteSignature", "Authorization header requires 'Credential'"),
        v2_error("IncompleteSignatureException", "Authorization header requires 'Credential'"),
        client_error("MissingAuthenticationToken", "Request is missing Authentication Token",
                     403),
        v2_error("MissingAuthenticationTokenException", "Missing Authentication Token", 403),
        # the worker's clock
        client_error("RequestExpired", "Request has expired.", 400),
        # the account has not signed up for SES
        client_error("OptInRequired", "The AWS Access Key Id needs a subscription for the "
                     "service", 403),
        # IAM
        client_error("AccessDenied", "User: arn:aws:iam::123456789012:user/app is not "
                     "authorized to perform: ses:SendRawEmail", 403),
        v2_error("AccessDeniedException", "User: arn:aws:iam::123456789012:user/app is not "
                 "authorized to perform: ses:SendEmail", 403),
        # the configuration set: v1's wire code, botocore's modelled name, v2's NotFound
        client_error("ConfigurationSetDoesNotExist", "Configuration set <cs> does not exist."),
        client_error("ConfigurationSetDoesNotExistException",
                     "Configuration set <cs> does not exist."),
        v2_error("NotFoundException", "Configuration set <cs> does not exist.", 404),
    ],
    ids=lambda error: f"{error.operation_name}-{error.response['Error']['Code']}",
)
def test_worker_configuration_answers_are_held_with_a_fix(error):
    classified = classify(error)
    assert classified.outcome is Outcome.CONFIGURATION
    assert classified.code == error.response["Error"]["Code"]
    assert classified.message == error.response["Error"]["Message"]
    assert classified.fix
    assert classified.reason == f"{classified.message} (fix: {classified.fix})"


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (NoRegionError(), "AWS_SES_REGION_NAME or AWS_DEFAULT_REGION"),
        (InvalidRegionError(region_name="us east 1"), "AWS_SES_REGION_NAME"),
        (NoCredentialsError(), "AWS_SES_ACCESS_KEY_ID"),
        (PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
         "secret access key"),
        (CredentialRetrievalError(provider="container-role", error_msg="timed out"),
         "credential provider"),
        (ProfileNotFound(profile="mail"), "AWS_SESSION_PROFILE"),
        (ConfigParseError(path="~/.aws/config"), "config file"),
        (InvalidConfigError(error_msg="bad retry mode"), "AWS_SES_CONFIG"),
        (MissingDependencyException(msg="awscrt"), "botocore[crt]"),
        (EndpointResolutionError(msg="not a host label"), "AWS_SES_GLOBAL_ENDPOINT_ID"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_botocore_configuration_errors_are_held_naming_the_fix(error, words):
    classified = classify(error)
    assert (classified.outcome, classified.code) == (Outcome.CONFIGURATION,
                                                     type(error).__name__)
    assert words in classified.fix
    assert classified.message == str(error)


def test_an_unverified_sender_is_about_the_message_and_fails():
    """SES v1 and v2 say "Email address is not verified" of this message's sender (or, in
    the sandbox, recipient): no setting of the worker fixes it."""
    for error in (client_error("MessageRejected", "Email address is not verified. The "
                               "following identities failed the check in region US-EAST-1: "
                               "sender@example.com"),
                  v2_error("MessageRejected", "Email address is not verified.")):
        classified = classify(error)
        assert (classified.outcome, classified.fix) == (Outcome.PERMANENT, "")
        assert classified.reason == classified.message


def test_what_looks_like_a_key_is_masked_from_a_configuration_error():
    key_id, secret = "AKIAABCDEFGHIJKLMNOP", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    error = CredentialRetrievalError(provider="custom-process",
                                     error_msg=f"bad output: {key_id} {secret}")
    answered = client_error("InvalidClientTokenId", f"The key {key_id} is invalid.", 403)
    for classified in (classify(error), classify(answered)):
        assert key_id not in classified.reason and secret not in classified.reason
        assert "AKIA..." in classified.reason


# errors as botocore parses them from a loopback endpoint's answers (the emulator has no
# credentials or IAM of its own)

V2_SEND = "POST /v2/email/outbound-emails"


@pytest.mark.parametrize(
    ("v2", "answer", "code"),
    [
        (False, ops_v1_error("InvalidClientTokenId", "The security token included in the "
                             "request is invalid."), "InvalidClientTokenId"),
        (False, ops_v1_error("SignatureDoesNotMatch", "The request signature we calculated "
                             "does not match the signature you provided."),
         "SignatureDoesNotMatch"),
        (False, ops_v1_error("ExpiredToken", "The security token included in the request "
                             "is expired"), "ExpiredToken"),
        (False, ops_v1_error("AccessDenied", "User: arn:aws:iam::123456789012:user/app is "
                             "not authorized to perform: ses:SendRawEmail"), "AccessDenied"),
        (False, ops_v1_error("ConfigurationSetDoesNotExist",
                             "Configuration set mail-events does not exist.", 400),
         "ConfigurationSetDoesNotExist"),
        (True, ops_v2_error("UnrecognizedClientException", "The security token included in "
                            "the request is invalid."), "UnrecognizedClientException"),
        (True, ops_v2_error("InvalidSignatureException", "The request signature we "
                            "calculated does not match the signature you provided."),
         "InvalidSignatureException"),
        (True, ops_v2_error("ExpiredTokenException", "The security token included in the "
                            "request is expired"), "ExpiredTokenException"),
        (True, ops_v2_error("AccessDeniedException", "User: arn:aws:iam::123456789012:user/"
                            "app is not authorized to perform: ses:SendEmail"),
         "AccessDeniedException"),
        (True, ops_v2_error("NotFoundException", "Configuration set mail-events does not exist.",
                            404), "NotFoundException"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_configuration_answers_from_the_wire(fake_endpoint, settings, v2, answer, code):
    fake_endpoint.routes["SendRawEmail" if not v2 else V2_SEND] = answer
    error = send_error(settings, v2)
    assert isinstance(error, ClientError)
    assert fake_endpoint.requests == ["SendRawEmail" if not v2 else V2_SEND]
    classified = classify(error)
    assert (classified.outcome, classified.code) == (Outcome.CONFIGURATION, code)


# botocore's configuration errors raised by the real client, before any request goes out

@pytest.mark.skipif(importlib.util.find_spec("awscrt") is not None,
                    reason="awscrt is installed: SigV4a works")
def test_global_endpoint_without_awscrt_is_held_naming_the_package(ses_emulator, settings):
    settings.AWS_SES_GLOBAL_ENDPOINT_ID = "abcd1234.efgh"
    error = send_error(settings, v2=True)
    assert isinstance(error, MissingDependencyException)  # botocore's own, from SigV4a
    classified = classify(error)
    assert (classified.outcome, classified.code) == (Outcome.CONFIGURATION,
                                                     "MissingDependencyException")
    assert "awscrt" in classified.reason
    assert "botocore[crt]" in classified.reason
    assert ses_emulator.stats()["requests"] == 0  # refused before anything went out


def test_endpoint_id_that_is_not_a_host_label_is_held(ses_emulator, settings):
    settings.AWS_SES_GLOBAL_ENDPOINT_ID = "not a host!"
    classified = classify(send_error(settings, v2=True))
    assert (classified.outcome, classified.code) == (
        Outcome.CONFIGURATION, "EndpointResolutionError")
    assert ses_emulator.stats()["requests"] == 0


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_no_region_is_held_naming_the_setting(ses_emulator, settings, monkeypatch, v2):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    settings.AWS_SES_REGION_NAME = None
    error = send_error(settings, v2=v2)
    assert isinstance(error, NoRegionError)
    classified = classify(error)
    assert (classified.outcome, classified.code) == (Outcome.CONFIGURATION, "NoRegionError")
    assert "AWS_SES_REGION_NAME" in classified.reason
    assert ses_emulator.stats()["requests"] == 0


def test_no_credentials_is_held(ses_emulator, settings, no_aws_credentials):
    """No credentials anywhere, or an instance role's metadata service that timed out:
    held either way (the second heals by itself, the first once an operator adds them)."""
    settings.AWS_SES_ACCESS_KEY_ID = None
    settings.AWS_SES_SECRET_ACCESS_KEY = None
    error = send_error(settings, v2=False)
    assert isinstance(error, NoCredentialsError)
    classified = classify(error)
    assert (classified.outcome, classified.code) == (Outcome.CONFIGURATION,
                                                     "NoCredentialsError")
    assert ses_emulator.stats()["requests"] == 0


def test_a_profile_the_worker_lacks_is_held(ses_emulator, settings, no_aws_credentials):
    settings.AWS_SESSION_PROFILE = "mail-sender"
    error = send_error(settings, v2=False)
    assert isinstance(error, ProfileNotFound)
    assert classify(error).outcome is Outcome.CONFIGURATION
    assert ses_emulator.stats()["requests"] == 0
