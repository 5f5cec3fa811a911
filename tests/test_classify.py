"""Unit tests: the one mapping of SES errors to outcomes."""

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

from seacucumber.ses import Outcome, classify


def client_error(code: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        "SendRawEmail",
    )


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


def test_code_and_message_are_kept():
    classified = classify(client_error("MessageRejected", "Email address is not verified."))
    assert (classified.code, classified.message) == (
        "MessageRejected", "Email address is not verified.")


def test_other_exceptions_are_not_swallowed():
    with pytest.raises(TypeError):
        classify(KeyError("bug"))
