"""The send call: one ``OutboundSend`` to SES v1 ``SendRawEmail`` or v2 ``SendEmail`` (raw).

Errors are botocore's, unchanged: the send task hands them to ``errors.classify``.

Tracing: when OpenTelemetry's API is installed, the call is a client span of its own
(``SES SendRawEmail`` or ``SESv2 SendEmail``, OpenTelemetry's ``aws-api`` RPC attributes)
carrying our id, the lane, the recipient count and, once SES accepts, SES's MessageId; with
``opentelemetry-instrumentation-celery`` it is a child of the send task's span, itself a
child of the span that called ``send_messages``. Without OpenTelemetry nothing is imported
and nothing is traced: it is no dependency.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..conf import conf
from ..conf import lane as conf_lane
from ..payload import OutboundSend
from .clients import client


def message_tags(outbound: OutboundSend) -> list[dict[str, str]]:
    """The send's SES message tags: the caller's (``tags``), then ``seacucumber-id`` (our
    id) and ``seacucumber-lane``, which SES copies into the send's events (``mail.tags``) so
    the webhook matches an event to its send by our id."""
    tags = dict(outbound.options.get("tags") or {})
    tags["seacucumber-id"] = outbound.message_id
    tags["seacucumber-lane"] = outbound.lane or conf_lane().name
    return [{"Name": name, "Value": value} for name, value in tags.items()]


#: span attribute names: OpenTelemetry's where one fits, ours for our id, lane and SES's id
MESSAGE_ID_ATTRIBUTE = "seacucumber.message_id"
LANE_ATTRIBUTE = "seacucumber.lane"
RECIPIENTS_ATTRIBUTE = "seacucumber.recipient_count"
SES_MESSAGE_ID_ATTRIBUTE = "aws.ses.message_id"


def send(outbound: OutboundSend, raw: bytes | None = None) -> str:
    """Send one message through SES; returns SES's MessageId. ``raw`` replaces the payload's
    MIME (a DKIM-signed copy, say). Raises botocore errors: classify them with ``classify``."""
    data = outbound.raw if raw is None else raw
    options = outbound.options
    service = "sesv2" if conf.USE_SES_V2 else "ses"
    ses = client(service, region=options.get("region"), endpoint=options.get("endpoint_url"),
                 profile=options.get("profile"))
    tracer = _tracer()
    if tracer is None:  # no span to open (its context manager costs a send ~3 µs)
        return _call(ses, outbound, data)
    with _span(tracer, outbound, service, ses.meta.region_name) as span:
        ses_message_id = _call(ses, outbound, data)
        span.set_attribute(SES_MESSAGE_ID_ATTRIBUTE, ses_message_id)
        return ses_message_id


def _call(ses: Any, outbound: OutboundSend, data: bytes) -> str:
    """The SES API call itself; SES's MessageId."""
    if conf.USE_SES_V2:
        return str(ses.send_email(**v2_arguments(outbound, data))["MessageId"])
    return str(ses.send_raw_email(**v1_arguments(outbound, data))["MessageId"])


@functools.cache
def _trace_api() -> Any:
    """OpenTelemetry's trace API, or None when it is not installed."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


def _tracer() -> Any:
    """OpenTelemetry's tracer for this package, or None: without OpenTelemetry's API, or
    while no tracer provider is set (the API's default records nothing, and a span of it
    costs the send task ~10 µs for nothing). Read at each send: a provider set later counts."""
    trace = _trace_api()
    if trace is None or isinstance(trace.get_tracer_provider(),
                                   trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return trace.get_tracer("seacucumber")


@contextmanager
def _span(tracer: Any, outbound: OutboundSend, service: str, region: str | None
          ) -> Iterator[Any]:
    """The SES call's client span from ``tracer``; an exception raised in it is recorded on
    the span, which ends in error, and raised on."""
    from opentelemetry.trace import SpanKind

    rpc_service = "SESv2" if service == "sesv2" else "SES"
    method = "SendEmail" if service == "sesv2" else "SendRawEmail"
    attributes = {"rpc.system": "aws-api", "rpc.service": rpc_service, "rpc.method": method,
                  MESSAGE_ID_ATTRIBUTE: outbound.message_id,
                  LANE_ATTRIBUTE: outbound.lane or conf_lane().name,
                  RECIPIENTS_ATTRIBUTE: len(outbound.recipients)}
    if region:
        attributes["cloud.region"] = region
    with tracer.start_as_current_span(f"{rpc_service} {method}", kind=SpanKind.CLIENT,
                                      attributes=attributes) as span:
        yield span


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
    kwargs["Tags"] = message_tags(outbound)
    return kwargs


def v2_arguments(outbound: OutboundSend, data: bytes) -> dict[str, Any]:
    """``SendEmail``'s arguments (raw content), mapped as django-ses maps them:

    - ``FromEmailAddress``: the envelope sender, as v1's ``Source`` (``AWS_SES_RETURN_PATH``,
      else the From address; the raw message keeps its own From header).
    - ``FeedbackForwardingEmailAddress``: the envelope sender again, when
      ``AWS_SES_RETURN_PATH`` or ``AWS_SES_RETURN_PATH_ARN`` is set, or the message gave its
      own (django-anymail's ``envelope_sender``: the payload's ``feedback_address``): bounces
      and complaints go to the return path, and the ARN authorizes this address. With a
      ``feedback_address`` there is no ``FromEmailAddress`` (anymail sends none: SES takes
      the From header's, and a FromEmailAddress would replace that header).
    - ``FromEmailAddressIdentityArn``: ``AWS_SES_FROM_ARN``, else ``AWS_SES_SOURCE_ARN``
      (v2 has one ARN for the sender where v1 had two).
    - ``FeedbackForwardingEmailAddressIdentityArn``: ``AWS_SES_RETURN_PATH_ARN``.
    - ``ConfigurationSetName``, ``EndpointId`` (``AWS_SES_GLOBAL_ENDPOINT_ID``: SigV4a, which
      needs the ``awscrt`` package), ``TenantName`` and ``ListManagementOptions`` (the
      ``tenant`` and ``list_management`` options), ``EmailTags`` (``message_tags``).
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
    if (conf.AWS_SES_RETURN_PATH or "return_path_arn" in options
            or "feedback_address" in options):
        kwargs["FeedbackForwardingEmailAddress"] = outbound.sender
    if "feedback_address" in options:  # as anymail sends its envelope_sender: SES reads
        del kwargs["FromEmailAddress"]  # the From address from the raw message's header
    if "return_path_arn" in options:
        kwargs["FeedbackForwardingEmailAddressIdentityArn"] = options["return_path_arn"]
    if "configuration_set" in options:
        kwargs["ConfigurationSetName"] = options["configuration_set"]
    if "endpoint_id" in options:
        kwargs["EndpointId"] = options["endpoint_id"]
    if "tenant" in options:
        kwargs["TenantName"] = options["tenant"]
    if "list_management" in options:
        kwargs["ListManagementOptions"] = dict(options["list_management"])
    kwargs["EmailTags"] = message_tags(outbound)
    return kwargs
