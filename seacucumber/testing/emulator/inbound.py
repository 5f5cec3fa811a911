"""The emulator's receiving side: a mail handed to it comes out as SES's receipt notification
(``notificationType: "Received"``), wrapped in an SNS Notification signed with the
emulator's key and posted to the webhook, as a receipt rule does with either action:

- ``action="SNS"``: the mail inside the notification (``content``), UTF-8 text (lossy for
  other bytes, as SES warns) or base64 (``encoding="BASE64"``);
- ``action="S3"``: the mail put into an S3 bucket first (any S3 endpoint: moto's server in
  tests), the notification naming ``bucketName`` and ``objectKey`` (the SES message id).

``SESEmulator.receive(raw, ...)`` in-process, ``POST /_emulator/receive`` over HTTP
(``EmulatorClient.receive``).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr
from typing import Any

from ..sns_signing import Signer
from .events import post_sns, sns_notification, timestamp

DEFAULT_BUCKET = "inbound-mail"
VERDICT_NAMES = ("spam", "virus", "spf", "dkim", "dmarc")


def new_message_id() -> str:
    """An id shaped like SES's for received mail (lowercase letters and digits)."""
    return secrets.token_hex(20)


def receipt_notification(raw: bytes, *, sender: str = "", recipients: list[str] | None = None,
                         action: str = "SNS", topic_arn: str = "", encoding: str = "UTF8",
                         bucket: str = DEFAULT_BUCKET, ses_message_id: str | None = None,
                         verdicts: dict[str, str] | None = None) -> dict[str, Any]:
    """SES's receipt notification for ``raw`` (the ``Message`` of the SNS notification)."""
    headers = BytesHeaderParser().parsebytes(raw)
    ses_message_id = ses_message_id or new_message_id()

    def values(name: str) -> list[str]:
        return [str(v) for v in headers.get_all(name) or []]

    to, cc = values("To"), values("Cc")
    destination = [a for _, a in getaddresses(to + cc) if a]
    sender = sender or parseaddr(str(headers.get("From", "")))[1]
    action = action.upper()
    verdicts = {name: "PASS" for name in VERDICT_NAMES} | (verdicts or {})
    action_obj: dict[str, Any] = {"type": action, "topicArn": topic_arn}
    if action == "S3":
        action_obj |= {"bucketName": bucket, "objectKey": ses_message_id}
    else:
        action_obj["encoding"] = encoding.upper()
    common: dict[str, Any] = {
        "returnPath": sender, "from": values("From"), "date": str(headers.get("Date", "")),
        "to": to, "messageId": str(headers.get("Message-ID", "")),
        "subject": str(headers.get("Subject", "")),
    }
    if cc:
        common["cc"] = cc
    notification: dict[str, Any] = {
        "notificationType": "Received",
        "mail": {
            "timestamp": timestamp(), "source": sender, "messageId": ses_message_id,
            "destination": destination or list(recipients or []), "headersTruncated": False,
            "headers": [{"name": k, "value": str(v)} for k, v in headers.items()],
            "commonHeaders": common,
        },
        "receipt": {
            "timestamp": timestamp(), "processingTimeMillis": 120,
            "recipients": list(recipients or destination),
            **{f"{name}Verdict": {"status": verdicts[name]} for name in VERDICT_NAMES},
            "action": action_obj,
        },
    }
    if action == "SNS":
        notification["content"] = (base64.b64encode(raw).decode("ascii")
                                   if encoding.upper() == "BASE64"
                                   else raw.decode("utf-8", errors="replace"))
    return notification


@dataclass
class Received:
    """What ``receive`` did: the webhook's HTTP status (0: no answer; None: not posted), the
    ids, and the signed SNS message (post it again to act out a redelivery)."""

    status: int | None
    ses_message_id: str
    sns_message_id: str
    notification: dict[str, Any] = field(repr=False)

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "ses_message_id": self.ses_message_id,
                "sns_message_id": self.sns_message_id, "notification": self.notification}


@dataclass
class Receiver:
    """Turns mail into signed receipt notifications for one topic, and delivers them."""

    signer: Signer
    topic_arn: str
    cert_url: str
    webhook_url: str | None = None
    s3_endpoint_url: str | None = None
    region: str = "us-east-1"

    def receive(self, raw: bytes, *, action: str = "SNS", sender: str = "",
                recipients: list[str] | None = None, encoding: str = "UTF8",
                bucket: str = DEFAULT_BUCKET, verdicts: dict[str, str] | None = None,
                webhook_url: str | None = None, post: bool = True,
                signature_version: str = "1") -> Received:
        ses_message_id = new_message_id()
        if action.upper() == "S3":
            self.put_object(bucket, ses_message_id, raw)
        notification = receipt_notification(
            raw, sender=sender, recipients=recipients, action=action,
            topic_arn=self.topic_arn, encoding=encoding, bucket=bucket,
            ses_message_id=ses_message_id, verdicts=verdicts)
        signed = self.signer.sign(sns_notification(notification, self.topic_arn),
                                  version=signature_version, cert_url=self.cert_url)
        url = webhook_url or self.webhook_url
        status = None
        if post:
            if not url:
                raise ValueError("no webhook URL: start the emulator with webhook_url")
            status = post_sns(url, signed)
        return Received(status, ses_message_id, signed["MessageId"], signed)

    def put_object(self, bucket: str, key: str, raw: bytes) -> None:
        """Store ``raw`` as SES's S3 action does (the bucket is made if it is missing)."""
        import boto3

        if not self.s3_endpoint_url:
            raise ValueError("the S3 action needs the emulator's s3_endpoint_url")
        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint_url, region_name=self.region)
        try:
            s3.head_bucket(Bucket=bucket)
        except s3.exceptions.ClientError:
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=raw)
