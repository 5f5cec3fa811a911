"""Received mail's fixtures and helpers (tests/test_inbound*.py): an SES emulator the
webhook trusts, moto's S3 with the inbound bucket allowed, the ``inbound_received`` signals
a test saw, and posting a notification to the real webhook view as SNS does."""

from __future__ import annotations

import json
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import boto3
import pytest
from django.test import Client, TestCase

from seacucumber.events import inbound, sns
from seacucumber.models import InboundMail
from seacucumber.signals import inbound_received
from seacucumber.testing.emulator import SESEmulator
from seacucumber.testing.emulator.events import DEFAULT_TOPIC_ARN
from seacucumber.testing.sns_signing import DEFAULT_CERT_URL

WEBHOOK = "/ses/events/"
BUCKET = "inbound-mail"


def reply_mail(**headers: str) -> bytes:
    """A reply with a plain and an HTML body and a PDF attached."""
    message = MIMEMultipart("mixed")
    body = MIMEMultipart("alternative")
    body.attach(MIMEText("Thanks, that works.\n", "plain", "utf-8"))
    body.attach(MIMEText("<p>Thanks, that <b>works</b>.</p>", "html", "utf-8"))
    message.attach(body)
    pdf = MIMEApplication(b"%PDF-1.4 not really", "pdf")
    pdf.add_header("Content-Disposition", "attachment", filename="invoice.pdf")
    message.attach(pdf)
    message["From"] = "Ann Reader <ann@example.org>"
    message["To"] = "Support <support@inbound.example.com>"
    message["Cc"] = "boss@example.org"
    message["Subject"] = "Re: your order"
    message["Message-ID"] = "<reply-1@example.org>"
    for name, value in headers.items():
        del message[name]
        message[name] = value
    return message.as_bytes()


@pytest.fixture
def inbound_signals():
    """The ``inbound_received`` signals sent during the test: (message, event) pairs."""
    got: list[tuple[inbound.InboundMessage, inbound.ReceivedEvent]] = []

    def receiver(sender, message, event, **kwargs):
        got.append((message, event))

    inbound_received.connect(receiver)
    yield got
    inbound_received.disconnect(receiver)


@pytest.fixture
def inbound_s3(moto_server, settings):
    """moto's S3 (emptied), and settings fetching received mail from it."""
    moto_server.reset()
    settings.SEACUCUMBER_S3_ENDPOINT_URL = moto_server.url
    settings.SEACUCUMBER_INBOUND_S3_BUCKETS = [BUCKET]
    return boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")


@pytest.fixture
def inbound_emulator(settings, moto_server):
    """An emulator that receives mail (S3 action into moto), and settings trusting it:
    its topic allowed, its signing certificate pinned."""
    with SESEmulator(rate=0, s3_endpoint_url=moto_server.url) as running:
        sns.clear_cache()
        settings.SEACUCUMBER_EVENT_TOPIC_ARNS = [DEFAULT_TOPIC_ARN]
        settings.SEACUCUMBER_SNS_CERTIFICATES = {DEFAULT_CERT_URL: running.cert_pem().decode()}
        yield running
    sns.clear_cache()


def post(notification: dict | str | bytes):
    """POST to the real webhook view as SNS does (Django's test client); what the view
    leaves to run on commit (queueing the inbound task) runs as the test's transaction
    would commit it."""
    body = notification if isinstance(notification, str | bytes) else json.dumps(notification)
    content_type = "text/plain" if isinstance(body, bytes) else "text/plain; charset=UTF-8"
    with TestCase.captureOnCommitCallbacks(execute=True):
        return Client().post(WEBHOOK, data=body, content_type=content_type)


def record(sns_message_id: str) -> InboundMail:
    return InboundMail.objects.get(sns_message_id=sns_message_id)


def answer(response) -> tuple[int, str]:
    return response.status_code, response.content.decode().strip()
