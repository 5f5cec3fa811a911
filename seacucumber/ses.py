"""boto3 clients for SES, the send call, and the one mapping of SES errors to outcomes.

Clients are made once per process (re-made after a fork) and per client settings, and shared
by the threads of that process: boto3 clients are thread-safe, sessions are not, so creation
is locked. boto3's own retries are off (``total_max_attempts=1``): the send task retries with
backoff through Celery, and two retry layers would multiply each other.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    EndpointResolutionError,
    InvalidRegionError,
    MissingDependencyException,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from .conf import conf
from .payload import OutboundSend

logger = logging.getLogger(__name__)

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def endpoint_url() -> str | None:
    """The SES endpoint from settings, or ``None`` to let boto3 resolve it."""
    url = conf.SEACUCUMBER_ENDPOINT_URL or conf.AWS_SES_REGION_ENDPOINT
    if url and "://" not in url:
        url = f"https://{url}"
    return url or None


def client(service: str | None = None) -> Any:
    """The shared boto3 client for ``service`` ("ses" or "sesv2"; default: per USE_SES_V2)."""
    service = service or ("sesv2" if conf.USE_SES_V2 else "ses")
    key = (
        os.getpid(),
        service,
        conf.AWS_SES_REGION_NAME,
        endpoint_url(),
        conf.AWS_SES_ACCESS_KEY_ID,
        conf.AWS_SES_SECRET_ACCESS_KEY,
        conf.AWS_SES_SESSION_TOKEN,
        conf.SEACUCUMBER_CONNECT_TIMEOUT,
        conf.SEACUCUMBER_READ_TIMEOUT,
    )
    found = _clients.get(key)
    if found is not None:
        return found
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            found = _make_client(service)
            if any(k[0] != key[0] for k in _clients):  # forked: drop the parent's clients
                _clients.clear()
            _clients[key] = found
        return found


def _make_client(service: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=conf.AWS_SES_ACCESS_KEY_ID,
        aws_secret_access_key=conf.AWS_SES_SECRET_ACCESS_KEY,
        aws_session_token=conf.AWS_SES_SESSION_TOKEN,
        region_name=conf.AWS_SES_REGION_NAME,
    )
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=conf.SEACUCUMBER_CONNECT_TIMEOUT,
        read_timeout=conf.SEACUCUMBER_READ_TIMEOUT,
        max_pool_connections=64,
    )
    made = session.client(service, endpoint_url=endpoint_url(), config=config)
    logger.info("SES client made: %s in %s at %s", service, made.meta.region_name,
                made.meta.endpoint_url)
    return made


def send(outbound: OutboundSend, raw: bytes | None = None) -> str:
    """Send one message through SES; returns SES's MessageId. ``raw`` replaces the payload's
    MIME (a DKIM-signed copy, say). Raises botocore errors: classify them with ``classify``."""
    data = outbound.raw if raw is None else raw
    if conf.USE_SES_V2:
        return client("sesv2").send_email(**v2_arguments(outbound, data))["MessageId"]
    return client("ses").send_raw_email(**v1_arguments(outbound, data))["MessageId"]


def v1_arguments(outbound: OutboundSend, data: bytes) -> dict[str, Any]:
    """``SendRawEmail``'s arguments: ``Source`` is the envelope sender (``AWS_SES_RETURN_PATH``
    or the From address); each sending-authorization ARN goes to its own parameter."""
    options = outbound.options
    kwargs: dict[str, Any] = {
        "Source": outbound.sender,
        "Destinations": list(outbound.recipients),
        "RawMessage": {"Data": data},
    }
    for option, argument in (
        ("configuration_set", "ConfigurationSetName"),
        ("source_arn", "SourceArn"),
        ("from_arn", "FromArn"),
        ("return_path_arn", "ReturnPathArn"),
    ):
        if option in options:
            kwargs[argument] = options[option]
    return kwargs


def v2_arguments(outbound: OutboundSend, data: bytes) -> dict[str, Any]:
    """``SendEmail``'s arguments (raw content), mapped as django-ses maps them:

    - ``FromEmailAddress``: the envelope sender, as v1's ``Source`` (``AWS_SES_RETURN_PATH``,
      else the From address; the raw message keeps its own From header).
    - ``FeedbackForwardingEmailAddress``: the envelope sender again, when
      ``AWS_SES_RETURN_PATH`` or ``AWS_SES_RETURN_PATH_ARN`` is set: bounces and complaints
      go to the return path, and the ARN authorizes this address.
    - ``FromEmailAddressIdentityArn``: ``AWS_SES_FROM_ARN``, else ``AWS_SES_SOURCE_ARN``
      (v2 has one ARN for the sender where v1 had two).
    - ``FeedbackForwardingEmailAddressIdentityArn``: ``AWS_SES_RETURN_PATH_ARN``.
    - ``ConfigurationSetName``, ``EndpointId`` (``AWS_SES_GLOBAL_ENDPOINT_ID``: SigV4a, which
      needs the ``awscrt`` package).
    """
    options = outbound.options
    kwargs: dict[str, Any] = {
        "FromEmailAddress": outbound.sender,
        "Destination": {"ToAddresses": list(outbound.recipients)},
        "Content": {"Raw": {"Data": data}},
    }
    from_arn = options.get("from_arn") or options.get("source_arn")
    if from_arn:
        kwargs["FromEmailAddressIdentityArn"] = from_arn
    if conf.AWS_SES_RETURN_PATH or "return_path_arn" in options:
        kwargs["FeedbackForwardingEmailAddress"] = outbound.sender
    if "return_path_arn" in options:
        kwargs["FeedbackForwardingEmailAddressIdentityArn"] = options["return_path_arn"]
    if "configuration_set" in options:
        kwargs["ConfigurationSetName"] = options["configuration_set"]
    if "endpoint_id" in options:
        kwargs["EndpointId"] = options["endpoint_id"]
    return kwargs


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
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if code in _THROTTLING_CODES:
            if "daily message quota" in message.lower():
                return Classified(Outcome.QUOTA_EXCEEDED, code, message)
            return Classified(Outcome.THROTTLED, code, message)
        if code in _TRANSIENT_CODES or status >= 500:
            return Classified(Outcome.TRANSIENT, code, message)
        return Classified(Outcome.PERMANENT, code, message)
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
