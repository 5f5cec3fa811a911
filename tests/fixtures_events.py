"""Fixtures for the event webhook: a signing key and self-signed certificate made here, SNS
messages signed exactly as SNS signs them, SES events in both styles, and a loopback HTTP
server standing in for SNS (certificate downloads, subscription confirmations)."""

from __future__ import annotations

import datetime
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from seacucumber.events import sns
from seacucumber.testing.sns_signing import DEFAULT_CERT_URL, Signer, make_certificate

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
CERT_URL = DEFAULT_CERT_URL
WEBHOOK = "/ses/events/"


__all__ = ["Signer", "make_certificate"]  # re-exported for the tests


@pytest.fixture(scope="session")
def signer() -> Signer:
    return Signer()


def ses_event(kind: str, ses_message_id: str, style: str = "eventType",
              **detail: Any) -> dict[str, Any]:
    """An SES event of ``kind`` ("Bounce", "Delivery", ...) for ``ses_message_id``."""
    keys = {"Rendering Failure": "failure", "DeliveryDelay": "deliveryDelay"}
    key = keys.get(kind, kind[:1].lower() + kind[1:])
    return {
        style: kind,
        "mail": {
            "timestamp": "2026-01-01T00:00:00.000Z",
            "messageId": ses_message_id,
            "source": "sender@example.com",
            "destination": ["to@example.com"],
            "commonHeaders": {"subject": "Hi"},
            "someFutureField": {"nested": True},
        },
        key: detail,
    }


def bounce(ses_message_id: str, *addresses: str, bounce_type: str = "Permanent",
           style: str = "eventType") -> dict[str, Any]:
    return ses_event(
        "Bounce", ses_message_id, style, bounceType=bounce_type, bounceSubType="General",
        bouncedRecipients=[{"emailAddress": a, "diagnosticCode": "smtp; 550 5.1.1 unknown"}
                           for a in addresses],
        timestamp="2026-01-01T00:00:01.000Z", feedbackId="f-1",
    )


def notification(event: dict[str, Any] | str, topic: str = TOPIC,
                 message_id: str | None = None, subject: str | None = None) -> dict[str, Any]:
    """An (unsigned) SNS Notification carrying ``event``."""
    message = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": event if isinstance(event, str) else json.dumps(event),
        "Timestamp": published(),  # the webhook refuses an SNS message older than an hour
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    }
    if subject is not None:
        message["Subject"] = subject
    return message


def published(seconds_ago: float = 0.0) -> str:
    """An SNS ``Timestamp`` ``seconds_ago`` seconds before now, as SNS writes it."""
    when = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds_ago)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def confirmation(topic: str = TOPIC, kind: str = "SubscriptionConfirmation",
                 subscribe_url: str | None = None) -> dict[str, Any]:
    token = uuid.uuid4().hex
    return {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": topic,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": subscribe_url or (
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
            f"&TopicArn={topic}&Token={token}"),
        "Timestamp": published(),
    }


@pytest.fixture
def webhook(settings, signer):
    """Settings for the webhook: our topic allowed, our certificate pinned. Returns a function
    posting a (signed) SNS message with Django's test client."""
    from django.test import Client

    sns.clear_cache()
    settings.SEACUCUMBER_EVENT_TOPIC_ARNS = [TOPIC]
    settings.SEACUCUMBER_SNS_CERTIFICATES = {CERT_URL: signer.pem.decode()}
    client = Client()

    def post(message: dict[str, Any] | bytes | str, sign: bool = True, **headers: Any):
        if isinstance(message, dict):
            body = json.dumps(signer.sign(message) if sign else message)
            headers.setdefault("headers", {"x-amz-sns-message-type": message["Type"]})
        else:
            body = message
        content_type = "text/plain" if isinstance(body, bytes) else "text/plain; charset=UTF-8"
        return client.post(WEBHOOK, data=body, content_type=content_type, **headers)

    return post


@dataclass
class FakeSNS:
    """A loopback HTTP server answering like SNS: certificates by path, confirmations.
    ``codes`` makes a path answer that HTTP status instead (0: a broken, non-HTTP answer)."""

    url: str
    files: dict[str, bytes]
    requests: list[str]
    delay: float = 0.0
    codes: dict[str, int] = field(default_factory=dict)


@pytest.fixture
def fake_sns(settings) -> Iterator[FakeSNS]:
    """A loopback server; SEACUCUMBER_SNS_ENDPOINT_URL points SNS fetches at it."""
    state = FakeSNS(url="", files={}, requests=[])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            state.requests.append(self.path)
            if state.delay:
                threading.Event().wait(state.delay)
            path = self.path.split("?")[0]
            if state.codes.get(path) == 0:
                self.wfile.write(b"garbage, not HTTP\r\n\r\n")
                return
            if path in state.codes:
                body, code = b"failing", state.codes[path]
            elif path == "/" and "Action=ConfirmSubscription" in self.path:
                body, code = b"<ConfirmSubscriptionResponse/>", 200
            elif path in state.files:
                body, code = state.files[path], 200
            else:
                body, code = b"not found", 404
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.SEACUCUMBER_SNS_ENDPOINT_URL = state.url
    sns.clear_cache()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        sns.clear_cache()
