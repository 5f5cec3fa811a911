"""The webhook view SNS posts to.

Answers: 200 applied, duplicate or tolerated (unknown event types); 400 malformed (any JSON
error, nesting too deep included) or stale (a ``Timestamp`` past ``SEACUCUMBER_SNS_MAX_AGE``,
or ahead of this clock: ``sns.check_fresh``); 403 not authentic (signature, certificate host,
topic not allowed); 405 not a POST; 413 too big — none of these changes anything. 503 when
SNS itself could not be reached (or answered 5xx) to fetch a certificate or confirm a
subscription, or when a verified event's send has no SES MessageId on its status record yet
(``AwaitingSend``), or when S3 failed to give a received mail (``MailStoreUnavailable``); 500
when applying a verified event raised: SNS retries all three. A verified receipt notification
that carries no readable mail is refused like a malformed post (400; 413 for a mail over
``SEACUCUMBER_INBOUND_MAX_BYTES``).
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ..conf import conf
from ..exceptions import (
    AwaitingSend,
    InboundTooLarge,
    InvalidNotification,
    MailStoreUnavailable,
    NotAuthentic,
    SNSUnavailable,
)
from . import handlers, sns
from .parse import parse_envelope

logger = logging.getLogger(__name__)

#: SNS messages are at most 256 KB; the envelope's escaping and signature add some.
MAX_BODY = 512 * 1024


def _answer(status: int, text: str) -> HttpResponse:
    return HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")


def _body(request: HttpRequest) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY (checked before reading)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if declared > MAX_BODY:
        return None
    body = request.read(MAX_BODY + 1)
    return None if len(body) > MAX_BODY else body


def _check(request: HttpRequest, message: dict) -> None:
    """Raise ``InvalidNotification`` unless the message is authentic, from an allowed topic
    and recent (``sns.check_fresh``)."""
    header = request.headers.get("x-amz-sns-message-type")
    if header and header != message["Type"]:
        raise InvalidNotification(f"x-amz-sns-message-type {header!r} is not {message['Type']}")
    allowed = conf.SEACUCUMBER_EVENT_TOPIC_ARNS or ()
    if isinstance(allowed, str):  # one ARN given as a string: never a substring match
        allowed = (allowed,)
    if message["TopicArn"] not in allowed:
        if not allowed:
            logger.error("SES event refused: SEACUCUMBER_EVENT_TOPIC_ARNS is empty")
        raise NotAuthentic(f"topic {message['TopicArn']!r} is not allowed")
    if conf.SEACUCUMBER_VERIFY_EVENT_SIGNATURES:
        sns.verify(message)
    sns.check_fresh(message)  # after the signature: a refusal for age names a genuine replay


@csrf_exempt
@require_POST
def events(request: HttpRequest) -> HttpResponse:
    """Take one SNS post: Notification, SubscriptionConfirmation or UnsubscribeConfirmation."""
    body = _body(request)
    if body is None:
        logger.warning("SNS post refused: body over %d bytes", MAX_BODY)
        return _answer(413, "too large")
    try:
        message = parse_envelope(body)
        _check(request, message)
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            return _answer(200, handlers.confirm_subscription(message))
    except InvalidNotification as exc:
        logger.warning("SNS post refused (%d): %s", exc.status, exc)
        return _answer(exc.status, "refused")
    except SNSUnavailable as exc:
        logger.error("SNS post not handled, SNS unreachable: %s", exc)
        return _answer(503, "try again")
    if kind == "UnsubscribeConfirmation":
        logger.warning("SNS unsubscribed this endpoint from %s", message["TopicArn"])
        return _answer(200, "noted")
    try:
        outcome = handlers.handle_notification(message)
    except AwaitingSend as exc:
        logger.info("SNS notification %s deferred (SNS will deliver it again): %s",
                    message["MessageId"], exc)
        return _answer(503, "not yet")
    except InvalidNotification as exc:  # a verified notification with no mail we can take
        level = logging.ERROR if isinstance(exc, InboundTooLarge) else logging.WARNING
        logger.log(level, "SNS notification %s refused (%d): %s", message["MessageId"],
                   exc.status, exc)
        return _answer(exc.status, "too large" if exc.status == 413 else "refused")
    except MailStoreUnavailable as exc:
        logger.error("SNS notification %s not taken in, S3 failed (SNS will deliver it "
                     "again): %s", message["MessageId"], exc)
        return _answer(503, "try again")
    except Exception:  # noqa: BLE001 - any handler error: log it, let SNS retry
        logger.exception("SNS notification %s failed; SNS will deliver it again",
                         message["MessageId"])
        return _answer(500, "error")
    return _answer(200, outcome)
