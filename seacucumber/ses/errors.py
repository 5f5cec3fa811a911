"""The one place that reads what boto3 raises: ``error_info`` takes a botocore
``ClientError`` apart (code, message, HTTP status), ``classify`` maps a send error to what
the send task does (docs/reliability.rst, "SES errors and what the task does": an error of
the worker's own configuration is held, never failed at once; only an error about the
message itself fails it), and ``ses_call`` turns errors of operator commands
(``ses_address``, ``ses_usage``) into one line, naming the IAM action to allow when
permission is missing (IAM actions for SES v1 and v2 are ``ses:<Operation>``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConfigParseError,
    ConnectionClosedError,
    ConnectTimeoutError,
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

from ..exceptions import OperatorError

ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException"})


@dataclass(frozen=True)
class ErrorInfo:
    """What SES said in a ``ClientError``: its code, message, HTTP status and the operation."""

    code: str
    message: str
    status: int
    operation: str

    @property
    def access_denied(self) -> bool:
        return self.code in ACCESS_DENIED_CODES


def error_info(exc: ClientError) -> ErrorInfo:
    """The code (``"Unknown"`` when SES gave none), message, HTTP status (0 when unknown) and
    operation of a botocore ``ClientError``."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return ErrorInfo(
        code=str(error.get("Code") or "Unknown"),
        message=str(error.get("Message") or ""),
        status=int(status),
        operation=str(exc.operation_name),
    )


def error_code(exc: BaseException) -> str | None:
    """SES's error code when ``exc`` is a ``ClientError``, else None."""
    return error_info(exc).code if isinstance(exc, ClientError) else None


# --- send errors ---------------------------------------------------------------------------

class Outcome(enum.Enum):
    """What the send task does with an error."""

    THROTTLED = "throttled"  # too fast: retry soon, slow the shared rate
    QUOTA_EXCEEDED = "quota_exceeded"  # 24-hour quota spent: hold until it frees
    TRANSIENT = "transient"  # 5xx, network: retry with backoff
    #: the worker's own region, credentials, permissions or account resources: held like
    #: TRANSIENT (an operator's fix sends it), but logged at ERROR and counted
    CONFIGURATION = "configuration"
    PERMANENT = "permanent"  # SES refuses this message itself: fail now


@dataclass(frozen=True)
class Classified:
    """An SES error, classified: the outcome, SES's code and message, whether SES may have
    sent the message anyway (a read timeout after the request went out), and for a
    configuration error the fix, in words."""

    outcome: Outcome
    code: str
    message: str
    maybe_sent: bool = False
    fix: str = ""

    @property
    def reason(self) -> str:
        """The message, with the fix when there is one: what the log and a failure record."""
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


_THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException"}
)
_TRANSIENT_CODES = frozenset(
    {"ServiceUnavailable", "ServiceUnavailableException", "InternalFailure",
     "InternalServerError", "InternalError", "RequestTimeout", "RequestTimeoutException"}
)

# --- configuration errors: the worker's, never the message's --------------------------------
# Retrying on the same worker cannot fix these, but an operator can (a setting, a key, a
# policy, a configuration set), and another worker may be configured right: failing the
# message would discard mail for a deployment mistake. So they are held for the message's
# lifetime like transient errors, loudly. v1 (query protocol) and v2 (rest-json) name the
# same problem differently: both spellings are listed.

_CREDENTIALS_FIX = (
    "give this worker valid AWS credentials (AWS_SES_ACCESS_KEY_ID and "
    "AWS_SES_SECRET_ACCESS_KEY, or boto3's chain: environment, ~/.aws, an instance role); "
    "temporary credentials (AWS_SES_SESSION_TOKEN) must be renewed before they expire"
)
_CLOCK_FIX = "the worker's clock is off: synchronise it (NTP)"

#: SES's answers that are about the worker's credentials, permissions or account resources,
#: with the fix. Not here, and so PERMANENT: MessageRejected (an unverified sender or, in the
#: sandbox, recipient of this message; virus; bad content), MailFromDomainNotVerifiedException
#: (this sender's MAIL FROM domain), BadRequestException (this message's content), and the
#: account's own state (sending paused, suspended), which is AWS's decision, not a setting.
_CONFIGURATION_CODES: dict[str, str] = {
    # a key id SES does not know (deleted, mistyped, another partition): v1, v2
    "InvalidClientTokenId": _CREDENTIALS_FIX,
    "UnrecognizedClientException": _CREDENTIALS_FIX,
    # a session token past its expiry: v1, v2
    "ExpiredToken": _CREDENTIALS_FIX,
    "ExpiredTokenException": _CREDENTIALS_FIX,
    # a secret that does not belong to the key id (or a clock far off): v1, v2
    "SignatureDoesNotMatch": "the secret access key does not match the access key id on "
                             "this worker (or its clock is off)",
    "InvalidSignatureException": "the secret access key does not match the access key id on "
                                 "this worker (or its clock is off)",
    # a request signed with part of the credentials, or not at all: v1, v2
    "IncompleteSignature": _CREDENTIALS_FIX,
    "IncompleteSignatureException": _CREDENTIALS_FIX,
    "MissingAuthenticationToken": _CREDENTIALS_FIX,
    "MissingAuthenticationTokenException": _CREDENTIALS_FIX,
    # signed too long ago by this worker's clock (SigV4 allows 5 minutes)
    "RequestExpired": _CLOCK_FIX,
    # the AWS account has not signed up for SES: account setup, before any message
    "OptInRequired": "sign the AWS account up for SES in this region",
    # IAM: the worker's credentials may not send. A policy limiting senders (ses:FromAddress,
    # an identity resource) also answers this for one message's sender: held too, sent once
    # the policy allows it, failed with this reason at the end of its lifetime.
    "AccessDenied": "allow the IAM action ses:SendRawEmail (SES v1) or ses:SendEmail (v2) "
                    "for this worker's credentials, on the sender's identity and "
                    "configuration set",
    "AccessDeniedException": "allow the IAM action ses:SendEmail (v2) or ses:SendRawEmail "
                             "(v1) for this worker's credentials, on the sender's identity "
                             "and configuration set",
    # the configuration set (AWS_SES_CONFIGURATION_SET, a mailer's) does not exist in this
    # account and region: v1's wire code, and the name of botocore's modelled exception
    "ConfigurationSetDoesNotExist": "create the configuration set in this account and "
                                    "region, or correct AWS_SES_CONFIGURATION_SET (or the "
                                    "mailer's configuration_set)",
    "ConfigurationSetDoesNotExistException": "create the configuration set in this account "
                                             "and region, or correct "
                                             "AWS_SES_CONFIGURATION_SET (or the mailer's "
                                             "configuration_set)",
    # v2 SendEmail's only NotFound: a resource the send names from the settings or a
    # mailer (configuration set, contact list, tenant), all the account's, none the message's
    "NotFoundException": "create the configuration set (or contact list, tenant) the send "
                         "names in this account and region, or correct the setting or "
                         "mailer option that names it",
}

#: botocore errors raised before any request goes out, from the worker's settings, files,
#: credential providers or installed packages, with the fix. ``NoCredentialsError`` and
#: ``CredentialRetrievalError`` may also follow an instance role's metadata service that
#: timed out, which heals by itself: held either way, so both cases end well.
_CONFIGURATION_ERRORS: tuple[tuple[type[BotoCoreError], str], ...] = (
    (NoRegionError, "set AWS_SES_REGION_NAME or AWS_DEFAULT_REGION on this worker"),
    (InvalidRegionError, "set AWS_SES_REGION_NAME (or the mailer's region) to a region name "
                         "such as us-east-1"),
    (NoCredentialsError, _CREDENTIALS_FIX + "; on an instance role or container "
                         "credentials, check that the metadata service answers"),
    (PartialCredentialsError, "complete this worker's AWS credentials: a key id needs its "
                              "secret access key"),
    (CredentialRetrievalError, "check this worker's credential provider (instance role, "
                               "container credentials, credential_process, SSO login)"),
    (ProfileNotFound, "add the profile to this worker's ~/.aws/config, or correct "
                      "AWS_SESSION_PROFILE (or the mailer's profile)"),
    (ConfigParseError, "correct this worker's AWS config file (~/.aws/config)"),
    (InvalidConfigError, "correct AWS_SES_CONFIG (a botocore Config) on this worker"),
    (MissingDependencyException, "SES v2 EndpointId (AWS_SES_GLOBAL_ENDPOINT_ID) is signed "
                                 "with SigV4a, which botocore does with the 'awscrt' "
                                 "package: install it on the workers with: "
                                 "pip install 'botocore[crt]'"),
    (EndpointResolutionError, "correct AWS_SES_GLOBAL_ENDPOINT_ID (a host label) or the "
                              "SES endpoint settings on this worker"),
)

#: what looks like an AWS access key id, or a secret access key (40 base64 characters):
#: masked from what a configuration error's message carries into logs and records
_SECRET_LIKE = re.compile(
    r"(?<![A-Za-z0-9/+=])(?:(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}|[A-Za-z0-9/+]{40})"
    r"(?![A-Za-z0-9/+=])"
)


def _redact(text: str) -> str:
    """``text`` with anything shaped like an AWS access key id or secret masked."""
    return _SECRET_LIKE.sub(lambda found: found.group(0)[:4] + "...", text)


def _configuration(exc: BaseException) -> Classified | None:
    """The CONFIGURATION classification of ``exc``, or None when it is not about the
    worker's configuration."""
    if isinstance(exc, ClientError):
        info = error_info(exc)
        fix = _CONFIGURATION_CODES.get(info.code)
        if fix is None:
            return None
        return Classified(Outcome.CONFIGURATION, info.code, _redact(info.message), fix=fix)
    for kind, fix in _CONFIGURATION_ERRORS:
        if isinstance(exc, kind):
            return Classified(Outcome.CONFIGURATION, type(exc).__name__, _redact(str(exc)),
                              fix=fix)
    return None


def classify(exc: BaseException) -> Classified:
    """Map an exception from ``send`` to an ``Outcome`` (see docs/reliability.rst: "SES
    errors and what the task does")."""
    configuration = _configuration(exc)
    if configuration is not None:
        return configuration
    if isinstance(exc, ClientError):
        info = error_info(exc)
        if info.code in _THROTTLING_CODES:
            if "daily message quota" in info.message.lower():
                return Classified(Outcome.QUOTA_EXCEEDED, info.code, info.message)
            return Classified(Outcome.THROTTLED, info.code, info.message)
        if info.code in _TRANSIENT_CODES or info.status >= 500:
            return Classified(Outcome.TRANSIENT, info.code, info.message)
        return Classified(Outcome.PERMANENT, info.code, info.message)
    if isinstance(exc, ReadTimeoutError | ConnectionClosedError):
        return Classified(Outcome.TRANSIENT, type(exc).__name__, str(exc), maybe_sent=True)
    if isinstance(exc, ParamValidationError):
        return Classified(Outcome.PERMANENT, "ParamValidationError", str(exc))
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | BotoCoreError):
        return Classified(Outcome.TRANSIENT, type(exc).__name__, str(exc))
    if isinstance(exc, OSError):
        return Classified(Outcome.TRANSIENT, type(exc).__name__, str(exc))
    raise TypeError(f"not an SES error: {exc!r}") from exc


# --- operator commands ---------------------------------------------------------------------

def explain(exc: ClientError) -> str:
    """One line saying what SES refused and, for a missing permission, what to allow."""
    info = error_info(exc)
    message = " ".join(info.message.split()) or "no message"
    if info.access_denied:
        return (
            f"SES denied {info.operation} ({info.code}): allow the IAM action "
            f"ses:{info.operation} for these credentials. SES said: {message}"
        )
    return f"SES refused {info.operation}: {info.code}: {message}"


@contextmanager
def ses_call() -> Iterator[None]:
    """Run SES calls; boto3 errors come out as ``OperatorError`` with a one-line message."""
    try:
        yield
    except ClientError as exc:
        raise OperatorError(explain(exc)) from None
    except NoCredentialsError:
        raise OperatorError(
            "no AWS credentials found: set AWS_SES_ACCESS_KEY_ID and AWS_SES_SECRET_ACCESS_KEY, "
            "or give boto3 credentials (environment, ~/.aws, an instance role)") from None
    except BotoCoreError as exc:
        raise OperatorError(f"cannot reach SES: {exc}") from None
