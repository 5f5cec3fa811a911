"""The emulator's event feedback: what the mailbox simulator addresses do, as signed SNS posts.

For each accepted message, recipients at ``simulator.amazonses.com`` behave as SES documents
(``bounce@`` and ``suppressionlist@`` bounce permanently, ``complaint@`` is delivered and then
complains; ``success@``, ``ooto@`` and any other address are delivered). The SES
notifications are wrapped in SNS ``Notification`` messages signed with the emulator's own key
and posted to a webhook URL from a background thread, with retries as SNS does.
"""

from __future__ import annotations

import datetime
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from email import message_from_bytes
from typing import Any

from ..sns_signing import DEFAULT_CERT_URL, Signer
from .state import Accepted, is_simulator

logger = logging.getLogger(__name__)

DEFAULT_TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ses-events"


def timestamp() -> str:
    """Now, as SES and SNS write times (ISO 8601 with milliseconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _local(address: str) -> str:
    return address.partition("@")[0].partition("+")[0].lower()


def ses_notifications(message: Accepted) -> list[dict[str, Any]]:
    """The SES notifications (``notificationType`` style) one accepted message produces."""
    headers = message_from_bytes(message.raw) if message.raw else None
    mail = {
        "timestamp": datetime.datetime.fromtimestamp(message.time, datetime.UTC)
        .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "messageId": message.ses_id,
        "source": message.source,
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/emulator",
        "destination": list(message.destinations),
        "headersTruncated": False,
        "headers": [{"name": name, "value": str(value)} for name, value in headers.items()]
        if headers else [],
        "commonHeaders": {
            "from": [str(headers.get("From", ""))] if headers else [],
            "to": [str(headers.get("To", ""))] if headers and headers.get("To") else [],
            "subject": str(headers.get("Subject", "")) if headers else "",
        },
    }
    if "ConfigurationSetName" in message.options:  # event publishing: the send's tags come
        tags = {name: [value] for name, value in message.tags.items()}  # as lists of values
        tags["ses:configuration-set"] = [message.options["ConfigurationSetName"]]
        mail["tags"] = tags
    bounced, complained, delivered = [], [], []
    for address in message.destinations:
        kind = _local(address) if is_simulator(address) else "success"
        if kind in ("bounce", "suppressionlist"):
            bounced.append((address, kind))
        else:
            delivered.append(address)
            if kind == "complaint":
                complained.append(address)
    notes: list[dict[str, Any]] = []
    if delivered:
        notes.append({"notificationType": "Delivery", "mail": mail, "delivery": {
            "timestamp": timestamp(), "processingTimeMillis": 500, "recipients": delivered,
            "smtpResponse": "250 2.6.0 Message received", "reportingMTA": "emulator",
        }})
    if bounced:
        notes.append({"notificationType": "Bounce", "mail": mail, "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": ("OnAccountSuppressionList" if bounced[0][1] == "suppressionlist"
                              else "General"),
            "bouncedRecipients": [{
                "emailAddress": address, "action": "failed", "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            } for address, _ in bounced],
            "timestamp": timestamp(), "feedbackId": f"{uuid.uuid4().hex}-000000",
            "reportingMTA": "dsn; emulator",
        }})
    if complained:
        notes.append({"notificationType": "Complaint", "mail": mail, "complaint": {
            "complainedRecipients": [{"emailAddress": a} for a in complained],
            "timestamp": timestamp(), "feedbackId": f"{uuid.uuid4().hex}-000000",
            "complaintFeedbackType": "abuse",
        }})
    return notes


def sns_notification(event: dict[str, Any], topic_arn: str) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Message": json.dumps(event),
        "Timestamp": timestamp(),
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&"
                          f"SubscriptionArn={topic_arn}:emulator",
    }


def post_sns(url: str, message: dict[str, Any], timeout: float = 10.0) -> int:
    """POST a (signed) SNS message as SNS does; the HTTP status, 0 when nothing answered."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook URL must be http(s): {url!r}")
    request = urllib.request.Request(  # noqa: S310 - http(s) checked above
        url, data=json.dumps(message).encode(), method="POST", headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": message.get("Type", "Notification"),
            "x-amz-sns-topic-arn": message.get("TopicArn", ""),
        })
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


class EventPoster:
    """Posts signed SNS notifications to ``webhook_url`` from one background thread."""

    def __init__(self, webhook_url: str, signer: Signer, on_result: Callable[[bool], None],
                 topic_arn: str = DEFAULT_TOPIC_ARN, cert_url: str = DEFAULT_CERT_URL,
                 delay: float = 0.2, attempts: int = 3, timeout: float = 5.0) -> None:
        if not webhook_url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http(s): {webhook_url!r}")
        self.webhook_url = webhook_url
        self.signer = signer
        self.on_result = on_result
        self.topic_arn = topic_arn
        self.cert_url = cert_url
        self.delay = delay
        self.attempts = attempts
        self.timeout = timeout
        self.pending: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="emulator-events", daemon=True)
        self.thread.start()

    def submit(self, message: Accepted) -> None:
        due = time.monotonic() + self.delay
        for event in ses_notifications(message):
            self.pending.put((due, event))

    def idle(self) -> bool:
        return self.pending.unfinished_tasks == 0

    def close(self) -> None:
        self.pending.put(None)
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            item = self.pending.get()
            try:
                if item is None:
                    return
                due, event = item
                time.sleep(max(0.0, due - time.monotonic()))
                self.on_result(self._post(event))
            finally:
                self.pending.task_done()

    def _post(self, event: dict[str, Any]) -> bool:
        message = self.signer.sign(sns_notification(event, self.topic_arn),
                                   version="1", cert_url=self.cert_url)
        for attempt in range(self.attempts):
            status = post_sns(self.webhook_url, message, timeout=self.timeout)
            if 0 < status < 300:
                return True
            logger.info("emulator: event post to %s failed (HTTP %s), attempt %d",
                        self.webhook_url, status or "no answer", attempt + 1)
            time.sleep(0.2 * 2 ** attempt)
        return False
