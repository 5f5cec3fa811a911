"""Receiving mail (docs/inbound.rst): SES receipt notifications made and signed by the
project's SES emulator, posted to the real webhook view, the S3 action against moto's S3
server on loopback. Every refusal is checked to change nothing and send no signal."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import boto3
import pytest
from django.core import checks
from django.test import Client

from seacucumber.checks import check_django_ses_inbound
from seacucumber.events import inbound, sns
from seacucumber.models import SeenNotification
from seacucumber.signals import inbound_received
from seacucumber.testing.emulator import EmulatorClient, SESEmulator
from seacucumber.testing.emulator.events import DEFAULT_TOPIC_ARN, post_sns
from seacucumber.testing.emulator.inbound import receipt_notification
from seacucumber.testing.processes import free_port
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
def received():
    """The ``inbound_received`` signals sent during the test: (message, event) pairs."""
    got: list[tuple[inbound.InboundMessage, inbound.ReceivedEvent]] = []

    def receiver(sender, message, event, **kwargs):
        got.append((message, event))

    inbound_received.connect(receiver)
    yield got
    inbound_received.disconnect(receiver)


@pytest.fixture
def s3(moto_server, settings):
    """moto's S3 (emptied), and settings fetching received mail from it."""
    moto_server.reset()
    settings.SEACUCUMBER_S3_ENDPOINT_URL = moto_server.url
    return boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1")


@pytest.fixture
def emulator(settings, moto_server):
    """An emulator that receives mail (S3 action into moto), and settings trusting it:
    its topic allowed, its signing certificate pinned."""
    with SESEmulator(rate=0, s3_endpoint_url=moto_server.url) as running:
        sns.clear_cache()
        settings.SEACUCUMBER_EVENT_TOPIC_ARNS = [DEFAULT_TOPIC_ARN]
        settings.SEACUCUMBER_SNS_CERTIFICATES = {DEFAULT_CERT_URL: running.cert_pem().decode()}
        yield running
    sns.clear_cache()


def post(notification: dict | str | bytes):
    """POST to the real webhook view as SNS does (Django's test client)."""
    body = notification if isinstance(notification, str | bytes) else json.dumps(notification)
    content_type = "text/plain" if isinstance(body, bytes) else "text/plain; charset=UTF-8"
    return Client().post(WEBHOOK, data=body, content_type=content_type)


def answer(response) -> tuple[int, str]:
    return response.status_code, response.content.decode().strip()


# --- both actions end to end, over HTTP --------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["SNS", "S3"])
def test_a_received_mail_reaches_the_signal_over_http(live_server, emulator, s3, received,
                                                      action):
    """The emulator posts its signed notification to the live webhook (through its HTTP
    control API); the mail arrives parsed, with envelope and verdicts, once."""
    emulator.webhook_url = f"{live_server.url}{WEBHOOK}"
    remote = EmulatorClient(emulator.url)
    result = remote.receive(
        reply_mail(), action=action, sender="bounce-ann@example.org",
        recipients=["support@inbound.example.com", "hidden@inbound.example.com"])
    assert result["status"] == 200
    [(message, event)] = received
    assert isinstance(message, EmailMessage) and isinstance(message, inbound.InboundMessage)
    assert message["Subject"] == message.subject == "Re: your order"
    assert message.from_email == "Ann Reader <ann@example.org>"
    assert message.to == ["Support <support@inbound.example.com>"]
    assert message.cc == ["boss@example.org"]
    assert message.text == "Thanks, that works.\n"
    assert message.html == "<p>Thanks, that <b>works</b>.</p>"
    assert message.attachments == [("invoice.pdf", "application/pdf", b"%PDF-1.4 not really")]
    assert message.envelope_sender == "bounce-ann@example.org"
    assert message.envelope_recipients == ["support@inbound.example.com",
                                           "hidden@inbound.example.com"]
    assert message.verdicts == dict.fromkeys(["spam", "virus", "spf", "dkim", "dmarc"], "PASS")
    assert message.ses_message_id == event.ses_message_id == result["ses_message_id"]
    assert event.sns_message_id == result["sns_message_id"]
    assert event.action_type == action and event.content is None
    # SNS redelivers with the same MessageId: answered, not sent again
    assert post_sns(emulator.webhook_url, result["notification"]) == 200
    assert len(received) == 1
    assert SeenNotification.objects.filter(sns_message_id=result["sns_message_id"]).count() == 1


@pytest.mark.django_db
def test_inline_base64_keeps_8bit_mail_in_other_charsets(emulator, received):
    """BASE64 encoding keeps every byte: a Latin-1 body, a windows-1252 encoded-word subject
    and an unknown charset all come out as text."""
    raw = (b"From: =?windows-1252?q?Andr=E9?= <andre@example.fr>\r\n"
           b"To: support@inbound.example.com\r\n"
           b"Subject: =?windows-1252?q?Caf=E9_cr=E8me_=80?=\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: multipart/alternative; boundary=XX\r\n\r\n"
           b"--XX\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\nUn caf\xe9 cr\xe8me, s'il vous pla\xeet.\r\n"
           b"--XX\r\nContent-Type: text/html; charset=x-no-such-charset\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n<p>caf\xc3\xa9 \xff</p>\r\n--XX--\r\n")
    result = emulator.receive(raw, encoding="BASE64", post=False)
    assert answer(post(result.notification)) == (200, "received")
    [(message, _)] = received
    assert message.subject == "Café crème €"
    assert message.from_email == "André <andre@example.fr>"
    # the line break before a boundary belongs to the boundary (RFC 2046)
    assert message.text == "Un café crème, s'il vous plaît."
    assert message.html == "<p>café \ufffd</p>"


@pytest.mark.django_db
def test_inline_utf8_content_with_undecodable_bytes_is_read_not_crashed_on(emulator, received):
    """With SES's default UTF8 encoding non-UTF-8 bytes arrive as U+FFFD (SES warns of it):
    the mail is still taken in."""
    raw = (b"From: a@example.org\r\nTo: b@inbound.example.com\r\nSubject: latin\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n")
    result = emulator.receive(raw, post=False)
    assert answer(post(result.notification)) == (200, "received")
    [(message, _)] = received
    assert message.text.startswith("caf") and message.subject == "latin"


@pytest.mark.django_db
def test_malformed_mail_is_taken_in_as_well_as_it_parses(emulator, received):
    """Garbage where a mail should be, broken address headers, binary junk: the parser keeps
    what it can (defects recorded), the conveniences answer, nothing crashes."""
    raw = (b"To: <<<@@>>>, \"unclosed\r\nFrom: ,,,@\r\nSubject: \xff\xfe\r\n"
           b"Content-Type: multipart/mixed; boundary=\"never-closed\"\r\n\r\n"
           b"--never-closed\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n")
    result = emulator.receive(raw, encoding="BASE64", post=False)
    assert answer(post(result.notification)) == (200, "received")
    [(message, _)] = received
    assert isinstance(message.to, list) and isinstance(message.from_email, str)
    assert isinstance(message.subject, str) and message.text == "" and message.html == ""
    assert [(a.name, a.content_type) for a in message.attachments] == [
        (None, "application/octet-stream")]
    assert message.defects or message.get_payload()[0].defects


def test_a_forwarded_mail_is_one_attachment():
    inner = b"From: x@example.org\r\nSubject: inner\r\n\r\nhello\r\n"
    outer = EmailMessage()
    outer["Subject"] = "Fwd: inner"
    outer.set_content("see below")
    outer.add_attachment(message_from_bytes(inner, policy=policy.default))  # message/rfc822
    message = inbound.parse_bytes(outer.as_bytes())
    [(name, content_type, content)] = message.attachments
    assert (name, content_type) == (None, "message/rfc822")
    assert b"Subject: inner" in content and b"hello" in content
    assert message.text == "see below\n"
    # only the top part is an InboundMessage: sub-parts have no envelope of their own
    assert all(type(part) is EmailMessage for part in message.iter_parts())


@pytest.mark.django_db
def test_a_failing_receiver_gets_the_mail_again_on_redelivery(emulator, received):
    """A receiver that raises rolls the take-in back (500, nothing recorded): SNS's
    redelivery of the same message reaches the receivers again, and then only once."""
    calls = []

    def flaky(sender, message, event, **kwargs):
        calls.append(event.sns_message_id)
        if len(calls) == 1:
            raise RuntimeError("database hiccup in the app")

    inbound_received.connect(flaky)
    try:
        result = emulator.receive(reply_mail(), post=False)
        assert answer(post(result.notification)) == (500, "error")
        assert not SeenNotification.objects.exists()
        assert answer(post(result.notification)) == (200, "received")
        assert answer(post(result.notification)) == (200, "duplicate")
    finally:
        inbound_received.disconnect(flaky)
    assert calls == [result.sns_message_id] * 2
    # every receiver ran for the rolled-back delivery and for the redelivery, never after
    assert [event.sns_message_id for _, event in received] == calls


@pytest.mark.django_db
def test_a_post_that_is_not_utf8_is_refused(emulator, received):
    assert answer(post(b'{"Type": "Notification", "Message": "caf\xe9"}')) == (400, "refused")
    assert received == []


@pytest.mark.django_db
def test_inline_content_with_a_lone_surrogate_is_taken_in(emulator, received):
    """JSON may carry a lone UTF-16 surrogate (``\\ud800``), which no UTF-8 encodes: it
    becomes '?', the rest of the mail is read."""
    notification = receipt_notification(reply_mail(), topic_arn=DEFAULT_TOPIC_ARN)
    notification["content"] = "Subject: odd\r\n\r\nbefore \ud800 after\r\n"
    assert "\\ud800" in json.dumps(notification)
    assert answer(post(_signed(emulator, notification))) == (200, "received")
    [(message, _)] = received
    assert message.subject == "odd" and message.text == "before ? after\r\n"


# --- what is dropped, skipped, refused -----------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("verdict, setting, dropped", [
    ("spam", "SEACUCUMBER_INBOUND_DROP_SPAM", True),
    ("spam", None, False),  # default: spam is kept, its verdict on the message
    ("virus", None, True),  # default: a virus is dropped
    ("virus", "SEACUCUMBER_INBOUND_DROP_VIRUS", True),
])
def test_failed_verdicts_are_dropped_as_the_settings_say(emulator, received, settings,
                                                         verdict, setting, dropped):
    if setting:
        setattr(settings, setting, True)
    result = emulator.receive(reply_mail(), verdicts={verdict: "FAIL"}, post=False)
    response = post(result.notification)
    if dropped:
        assert answer(response) == (200, "dropped") and received == []
    else:
        assert answer(response) == (200, "received")
        assert getattr(received[0][0], f"{verdict}_verdict") == "FAIL"


@pytest.mark.django_db
def test_virus_mail_is_kept_when_the_setting_is_off(emulator, received, settings):
    settings.SEACUCUMBER_INBOUND_DROP_VIRUS = False
    result = emulator.receive(reply_mail(), verdicts={"virus": "FAIL"}, post=False)
    assert answer(post(result.notification)) == (200, "received")
    assert received[0][0].virus_verdict == "FAIL"


@pytest.mark.django_db
def test_the_setup_notification_is_answered_and_not_signalled(emulator, received):
    notification = receipt_notification(b"Subject: setup\r\n\r\n", topic_arn=DEFAULT_TOPIC_ARN,
                                         ses_message_id=inbound.SETUP_NOTIFICATION_ID)
    signed = emulator.signing_signer().sign(_sns(notification))
    assert answer(post(signed)) == (200, "setup notification")
    assert received == []


def _sns(ses_notification: dict, topic: str = DEFAULT_TOPIC_ARN) -> dict:
    from seacucumber.testing.emulator.events import sns_notification

    return sns_notification(ses_notification, topic)


def _signed(emulator: SESEmulator, ses_notification: dict, **sign) -> dict:
    return emulator.signing_signer().sign(_sns(ses_notification), **sign)


@pytest.mark.django_db
@pytest.mark.parametrize("change, status", [
    (lambda n: n.pop("content"), 400),                            # SNS action, no mail
    (lambda n: n.update(content="%%% not base64"), 400),          # BASE64 that is not
    (lambda n: n["receipt"]["action"].update(type="Lambda"), 400),  # an action with no mail
    (lambda n: n.pop("receipt"), 400),
    (lambda n: n.update(mail="not an object"), 400),
])
def test_malformed_receipt_notifications_are_refused(emulator, received, change, status):
    notification = receipt_notification(reply_mail(), topic_arn=DEFAULT_TOPIC_ARN,
                                        encoding="BASE64")
    change(notification)
    response = post(_signed(emulator, notification))
    assert answer(response) == (status, "refused")
    assert received == [] and not SeenNotification.objects.exists()


@pytest.mark.django_db
def test_forged_receipt_notifications_are_refused(emulator, received, settings):
    """Tampered after signing, signed by someone else's key, from a topic not allowed, with a
    certificate URL off SNS: 403, nothing taken in."""
    from seacucumber.testing.sns_signing import Signer

    result = emulator.receive(reply_mail(), post=False)
    tampered = dict(result.notification)
    tampered["Message"] = tampered["Message"].replace("Re: your order", "Re: wire money")
    assert answer(post(tampered)) == (403, "refused")

    impostor = Signer().sign(_sns(json.loads(result.notification["Message"])))
    assert answer(post(impostor)) == (403, "refused")

    foreign = receipt_notification(reply_mail(), topic_arn="arn:aws:sns:us-east-1:999:evil")
    assert answer(post(emulator.signing_signer().sign(
        _sns(foreign, "arn:aws:sns:us-east-1:999:evil")))) == (403, "refused")

    for cert_url in ("https://evil.example.com/SimpleNotificationService-x.pem",
                     "https://my-bucket.s3.amazonaws.com/SimpleNotificationService-x.pem",
                     "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem"):
        forged = _signed(emulator, json.loads(result.notification["Message"]),
                         cert_url=cert_url)
        assert answer(post(forged)) == (403, "refused"), cert_url
    assert received == [] and not SeenNotification.objects.exists()


@pytest.mark.django_db
def test_an_oversized_post_is_refused_before_it_is_read(emulator, received):
    result = emulator.receive(b"Subject: big\r\n\r\n" + b"x" * (600 * 1024), post=False)
    assert answer(post(result.notification)) == (413, "too large")
    assert received == []


# --- the S3 action: what S3 does decides the answer -----------------------------------------------

@pytest.mark.django_db
def test_an_s3_object_over_the_limit_is_refused_and_left_in_the_bucket(emulator, s3, received,
                                                                        settings):
    settings.SEACUCUMBER_INBOUND_MAX_BYTES = 10_000
    raw = reply_mail() + b"\r\n" + b"y" * 20_000
    result = emulator.receive(raw, action="S3", post=False)
    assert answer(post(result.notification)) == (413, "too large")
    assert received == [] and not SeenNotification.objects.exists()
    assert s3.get_object(Bucket=BUCKET, Key=result.ses_message_id)["ContentLength"] == len(raw)


@pytest.mark.django_db
def test_a_gone_s3_object_is_recorded_and_answered_200(emulator, s3, received, caplog):
    result = emulator.receive(reply_mail(), action="S3", post=False)
    s3.delete_object(Bucket=BUCKET, Key=result.ses_message_id)
    with caplog.at_level(logging.ERROR, logger="seacucumber.events.handlers"):
        assert answer(post(result.notification)) == (200, "gone")
    assert received == []
    assert SeenNotification.objects.filter(sns_message_id=result.sns_message_id).exists()
    assert any(result.ses_message_id in r.getMessage() and "gone" in r.getMessage()
               for r in caplog.records)
    assert answer(post(result.notification)) == (200, "duplicate")


@pytest.mark.django_db
def test_s3_unreachable_is_503_and_the_retry_takes_the_mail_in(emulator, s3, received, settings,
                                                               moto_server):
    result = emulator.receive(reply_mail(), action="S3", post=False)
    settings.SEACUCUMBER_S3_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # nothing there
    assert answer(post(result.notification)) == (503, "try again")
    assert received == [] and not SeenNotification.objects.exists()
    settings.SEACUCUMBER_S3_ENDPOINT_URL = moto_server.url  # S3 is back: SNS's retry works
    assert answer(post(result.notification)) == (200, "received")
    assert len(received) == 1


@pytest.fixture
def failing_s3(settings):
    """A loopback HTTP server answering every S3 request with ``codes[0]`` (SlowDown XML)."""
    codes = [503]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = (b"<?xml version='1.0'?><Error><Code>SlowDown</Code>"
                    b"<Message>Please reduce your request rate.</Message></Error>")
            self.send_response(codes[0])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.SEACUCUMBER_S3_ENDPOINT_URL = f"http://127.0.0.1:{server.server_address[1]}"
    yield codes
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
@pytest.mark.parametrize("code", [500, 503, 403])
def test_s3_errors_are_503_so_sns_retries(emulator, s3, received, failing_s3, code):
    """5xx and throttling are S3's trouble; 403 is a permission the operator must grant
    (or a missing object read without s3:ListBucket): all retried, none lost."""
    failing_s3[0] = code
    result = emulator.receive(reply_mail(), action="S3", post=False)
    assert answer(post(result.notification)) == (503, "try again")
    assert received == [] and not SeenNotification.objects.exists()


@pytest.mark.django_db
def test_a_10_mb_mail_from_s3_is_parsed_whole(emulator, s3, received):
    attachment = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@x.example", "big"
    message.set_content("see attached")
    message.add_attachment(attachment, maintype="application", subtype="octet-stream",
                           filename="big.bin")
    result = emulator.receive(message.as_bytes(), action="S3", post=False)
    assert answer(post(result.notification)) == (200, "received")
    [(got, _)] = received
    [(name, _, content)] = got.attachments
    assert name == "big.bin" and content == attachment


# --- django-ses's inbound handler ------------------------------------------------------------

def test_django_ses_inbound_handler_setting_gets_a_warning(settings):
    assert check_django_ses_inbound() == []
    settings.AWS_SES_INBOUND_HANDLER = "myapp.inbound.MyReceiver"
    [warning] = check_django_ses_inbound()
    assert warning.id == "seacucumber.W020" and warning.level == checks.WARNING
    assert "AWS_SES_INBOUND_HANDLER" in warning.msg
    assert "inbound_received" in warning.hint
    assert warning.id in {m.id for m in checks.run_checks()}


@pytest.mark.django_db(transaction=True)
def test_received_mail_is_counted_once_in_the_metrics(emulator, received, settings,
                                                      redis_url):
    """Prometheus sees received mail as its own SES notification type, once per SNS message
    (not as an unknown event)."""
    from prometheus_client.parser import text_string_to_metric_families

    from seacucumber.shared import metrics

    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/7"
    settings.SEACUCUMBER_REDIS_PREFIX = f"inbound-metrics-{free_port()}"
    result = emulator.receive(reply_mail(), action="SNS", post=False)
    assert post(result.notification).status_code == 200
    assert post(result.notification).status_code == 200  # SNS redelivers: counted once
    assert len(received) == 1
    counted = {tuple(sample.labels.items()): sample.value
               for family in text_string_to_metric_families(metrics.exposition().decode())
               if family.name == "seacucumber_ses_events"
               for sample in family.samples if sample.name.endswith("_total")}
    assert counted == {(("type", "Received"),): 1.0}
