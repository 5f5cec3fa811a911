"""The one place that reads what boto3 raises: ``error_info`` takes a botocore
``ClientError`` apart (code, message, HTTP status), ``classify`` maps a send error to what
the send task does (README: "SES errors"), and ``ses_call`` turns errors of operator commands
(``ses_address``, ``ses_usage``) into one line, naming the IAM action to allow when
permission is missing (IAM actions for SES v1 and v2 are ``ses:<Operation>``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    EndpointResolutionError,
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
    PERMANENT = "permanent"  # SES refuses this message or the account: fail now


@dataclass(frozen=True)
class Classified:
    """An SES error, classified: the outcome, SES's code and message, and whether SES may
    have sent the message anyway (a read timeout after the request went out)."""

    outcome: Outcome
    code: str
    message: str
    maybe_sent: bool = False


_THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "LimitExceededException"}
)
_TRANSIENT_CODES = frozenset(
    {"ServiceUnavailable", "ServiceUnavailableException", "InternalFailure",
     "InternalServerError", "InternalError", "RequestTimeout", "RequestTimeoutException"}
)


#: botocore errors raised before any request goes out, from the worker's settings or its
#: installed packages: retrying the same call on the same worker cannot change them, so they
#: fail the message at once with a reason naming the fix (rather than retrying for a whole
#: lifetime). ``NoCredentialsError`` and ``CredentialRetrievalError`` are not here: on
#: instance roles and container credentials they follow a metadata service that timed out
#: or throttled, which heals by itself.
_CONFIGURATION_ERRORS = (
    MissingDependencyException,  # EndpointId (SigV4a) without awscrt
    NoRegionError,
    InvalidRegionError,
    PartialCredentialsError,
    ProfileNotFound,  # AWS_SESSION_PROFILE, or a mailer's profile, not in the worker's ~/.aws
    EndpointResolutionError,  # e.g. an EndpointId that is not a host label
)


def _configuration_message(exc: BotoCoreError) -> str:
    if isinstance(exc, MissingDependencyException):
        return (
            "the 'awscrt' package is missing: SES v2 EndpointId (AWS_SES_GLOBAL_ENDPOINT_ID) "
            "is signed with SigV4a, which botocore does with awscrt; install it on the "
            f"workers with: pip install 'botocore[crt]' ({exc})"
        )
    return f"SES client configuration error: {exc}"


def classify(exc: BaseException) -> Classified:
    """Map an exception from ``send`` to an ``Outcome`` (see README: "SES errors")."""
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
    if isinstance(exc, _CONFIGURATION_ERRORS):
        return Classified(Outcome.PERMANENT, type(exc).__name__, _configuration_message(exc))
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
