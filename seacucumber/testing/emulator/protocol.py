"""The SES wire protocol, as far as the emulator speaks it.

SES v1 is AWS's query protocol: a form-encoded POST to ``/`` naming an ``Action``, answered
in XML. SES v2 is REST with JSON bodies. This module turns requests into plain values and
``Answer`` verdicts into (status, headers, body); it keeps no state.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from email import message_from_bytes
from email.utils import getaddresses
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from .state import Answer, Config, Verdict

V1_NS = "http://ses.amazonaws.com/doc/2010-12-01/"
V2_SEND_PATH = "/v2/email/outbound-emails"
V2_ACCOUNT_PATH = "/v2/email/account"


@dataclass
class SendRequest:
    source: str
    destinations: list[str]
    raw: bytes
    tags: dict[str, str] = field(default_factory=dict)
    #: what else the call named (``_V1_OPTIONS``, ``_V2_OPTIONS``): ConfigurationSetName,
    #: TenantName, ListManagementOptions, FeedbackForwardingEmailAddress, the ARNs...
    options: dict[str, Any] = field(default_factory=dict)


_TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: The send parameters recorded in ``SendRequest.options`` (what a sender sets besides the
#: message, its envelope and its tags), v1 ``SendRawEmail``'s and v2 ``SendEmail``'s.
_V1_OPTIONS = ("ConfigurationSetName", "SourceArn", "FromArn", "ReturnPathArn")
_V2_OPTIONS = ("ConfigurationSetName", "TenantName", "ListManagementOptions",
               "FromEmailAddressIdentityArn",
               "FeedbackForwardingEmailAddress", "FeedbackForwardingEmailAddressIdentityArn",
               "ReplyToAddresses", "EndpointId")


def _checked_tags(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Message tags as SES checks them (names and values of ASCII letters, digits, _ and -)."""
    for name, value in pairs:
        if not _TAG.fullmatch(name) or not _TAG.fullmatch(value):
            raise BadRequest("InvalidParameterValue",
                             f"Invalid tag {name!r}={value!r}: tag names and values may only "
                             "contain ASCII letters, numbers, underscores and dashes")
    return dict(pairs)


class BadRequest(Exception):
    """A request the emulator cannot read: answered 400 with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Response = tuple[int, dict[str, str], bytes]

# verdict -> (status, v1 code, v2 code, message)
_ERRORS: dict[Verdict, tuple[int, str, str, str]] = {
    Verdict.THROTTLE: (400, "Throttling", "TooManyRequestsException",
                       "Maximum sending rate exceeded."),
    Verdict.QUOTA: (400, "Throttling", "LimitExceededException",
                    "Daily message quota exceeded."),
    Verdict.FAIL_5XX: (503, "ServiceUnavailable", "ServiceUnavailable",
                       "Service is unavailable. Please try again later."),
    Verdict.PAUSED: (400, "AccountSendingPausedException", "SendingPausedException",
                     "Sending is paused for this account."),
    Verdict.REJECT: (400, "MessageRejected", "MessageRejected",
                     "Email address is not verified. The following identities failed the "
                     "check in region {region}: {detail}"),
}


# --- requests ------------------------------------------------------------------------------

def v1_params(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}


def v1_send_request(params: dict[str, str]) -> SendRequest:
    """SendRawEmail's Source, Destinations and raw message (headers fill in what is absent)."""
    try:
        raw = base64.b64decode(params["RawMessage.Data"], validate=True)
    except (KeyError, ValueError) as exc:
        raise BadRequest("InvalidParameterValue", f"RawMessage.Data: {exc}") from None
    destinations = [v for k, v in sorted(params.items(), key=lambda kv: _member_index(kv[0]))
                    if k.startswith("Destinations.member.")]
    source = params.get("Source", "")
    if not destinations or not source:
        headers = message_from_bytes(raw)
        if not destinations:
            fields = [headers.get_all(h, []) for h in ("To", "Cc", "Bcc")]
            destinations = [a for _, a in getaddresses([f for fs in fields for f in fs]) if a]
        source = source or str(headers.get("From", ""))
    if not destinations:
        raise BadRequest("InvalidParameterValue", "Missing final '@domain'")
    indexes = sorted({int(k.split(".")[2]) for k in params
                      if k.startswith("Tags.member.") and k.split(".")[2].isdigit()})
    tags = _checked_tags([(params.get(f"Tags.member.{i}.Name", ""),
                           params.get(f"Tags.member.{i}.Value", "")) for i in indexes])
    options = {k: params[k] for k in _V1_OPTIONS if k in params}
    return SendRequest(source=source, destinations=destinations, raw=raw, tags=tags,
                       options=options)


def v2_send_request(body: bytes) -> SendRequest:
    try:
        data = json.loads(body)
        raw = base64.b64decode(data["Content"]["Raw"]["Data"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest("BadRequestException", f"Content.Raw.Data: {exc}") from None
    destination = data.get("Destination") or {}
    destinations = [a for key in ("ToAddresses", "CcAddresses", "BccAddresses")
                    for a in destination.get(key, [])]
    source = data.get("FromEmailAddress") or str(message_from_bytes(raw).get("From", ""))
    if not destinations:
        destinations = [a for _, a in getaddresses(message_from_bytes(raw).get_all("To", []))]
    tags = _checked_tags([(str(t.get("Name", "")), str(t.get("Value", "")))
                          for t in data.get("EmailTags") or []])
    options = {k: data[k] for k in _V2_OPTIONS if k in data}
    return SendRequest(source=source, destinations=destinations, raw=raw, tags=tags,
                       options=options)


def _member_index(name: str) -> int:
    tail = name.rpartition(".")[2]
    return int(tail) if tail.isdigit() else 0


# --- responses -----------------------------------------------------------------------------

def v1_result(action: str, inner: str) -> Response:
    body = (
        f'<{action}Response xmlns="{V1_NS}"><{action}Result>{inner}</{action}Result>'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return 200, {"Content-Type": "text/xml"}, body.encode()


def v1_error(status: int, code: str, message: str) -> Response:
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        f'<ErrorResponse xmlns="{V1_NS}"><Error><Type>{kind}</Type><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    )
    return status, {"Content-Type": "text/xml"}, body.encode()


def v2_result(data: dict) -> Response:
    """A v2 answer, with the request id header SES sends (botocore reads it into
    ``ResponseMetadata["RequestId"]``, which django-ses logs)."""
    headers = {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}
    return 200, headers, json.dumps(data).encode()


def v2_error(status: int, code: str, message: str) -> Response:
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code}
    return status, headers, json.dumps({"message": message}).encode()


def send_answer(answer: Answer, v2: bool, region: str) -> Response:
    """The response to a send that was not dropped."""
    if answer.verdict in (Verdict.ACCEPT, Verdict.DROP_AFTER_ACCEPT):
        if v2:
            return v2_result({"MessageId": answer.ses_id})
        return v1_result("SendRawEmail", f"<MessageId>{answer.ses_id}</MessageId>")
    status, v1_code, v2_code, message = _ERRORS[answer.verdict]
    message = message.format(region=region.upper(), detail=answer.detail)
    return v2_error(status, v2_code, message) if v2 else v1_error(status, v1_code, message)


def quota_answer(quota: dict[str, float], v2: bool, config: Config | None = None) -> Response:
    """GetSendQuota's XML, or GetAccount's JSON with the account's state from ``config``
    (sandbox, sending enabled, enforcement status)."""
    if v2:
        config = config or Config()
        return v2_result({
            "SendQuota": quota, "SendingEnabled": config.sending_enabled,
            "ProductionAccessEnabled": not config.sandbox,
            "EnforcementStatus": config.enforcement_status,
            "DedicatedIpAutoWarmupEnabled": False,
        })
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in quota.items())
    return v1_result("GetSendQuota", inner)


def access_denied(action: str, v2: bool) -> Response:
    message = (f"User: arn:aws:iam::123456789012:user/emulator is not authorized to perform: "
               f"ses:{action}")
    if v2:
        return v2_error(403, "AccessDeniedException", message)
    return v1_error(403, "AccessDenied", message)


def statistics_answer(points: list[dict[str, object]]) -> Response:
    members = "".join(
        "<member>" + "".join(f"<{k}>{v}</{k}>" for k, v in point.items()) + "</member>"
        for point in points
    )
    return v1_result("GetSendStatistics", f"<SendDataPoints>{members}</SendDataPoints>")
