"""Receiving mail (docs/inbound.rst): SES receipt notifications made and signed by the
project's SES emulator, posted to the real webhook view, the S3 action against moto's S3
server on loopback (fixtures: tests/fixtures_inbound.py). The webhook records each
notification and queues the task that takes the mail in; here Celery is eager, so the task
runs as the record commits (a real worker: tests/test_inbound_limits.py). Every refusal is
checked to change nothing and send no signal."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from django.core import checks
from django.utils import timezone

from seacucumber.checks import check_django_ses_inbound
from seacucumber.events import inbound, inbound_task
from seacucumber.exceptions import MailStoreUnavailable
from seacucumber.models import InboundMail, SeenNotification
from seacucumber.signals import inbound_received
from seacucumber.testing.emulator import EmulatorClient, SESEmulator
from seacucumber.testing.emulator.events import DEFAULT_TOPIC_ARN, post_sns
from seacucumber.testing.emulator.inbound import receipt_notification
from seacucumber.testing.processes import free_port
from tests.fixtures_inbound import BUCKET, WEBHOOK, answer, post, record, reply_mail


@pytest.fixture(autouse=True)
def eager_inbound(eager):
    """The inbound task runs in this process, as its record commits; its retries run at
    once (errors not propagated: Celery's eager mode raises a retry instead of running it)."""
    eager.conf.task_eager_propagates = False
    return eager


# --- both actions end to end, over HTTP --------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["SNS", "S3"])
def test_a_received_mail_reaches_the_signal_over_http(
        live_server, inbound_emulator, inbound_s3, inbound_signals, action):
    """The emulator posts its signed notification to the live webhook (through its HTTP
    control API); the mail arrives parsed, with envelope and verdicts, once, and its record
    says so."""
    inbound_emulator.webhook_url = f"{live_server.url}{WEBHOOK}"
    remote = EmulatorClient(inbound_emulator.url)
    result = remote.receive(
        reply_mail(), action=action, sender="bounce-ann@example.org",
        recipients=["support@inbound.example.com", "hidden@inbound.example.com"])
    assert result["status"] == 200
    [(message, event)] = inbound_signals
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
    assert post_sns(inbound_emulator.webhook_url, result["notification"]) == 200
    assert len(inbound_signals) == 1
    assert SeenNotification.objects.filter(sns_message_id=result["sns_message_id"]).count() == 1
    taken = record(result["sns_message_id"])
    assert (taken.state, taken.reason, taken.action_type) == ("received", "", action)
    assert taken.ses_message_id == result["ses_message_id"]
    assert taken.source == "bounce-ann@example.org"


@pytest.mark.django_db
def test_inline_base64_keeps_8bit_mail_in_other_charsets(inbound_emulator, inbound_signals):
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
    result = inbound_emulator.receive(raw, encoding="BASE64", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    [(message, _)] = inbound_signals
    assert message.subject == "Café crème €"
    assert message.from_email == "André <andre@example.fr>"
    # the line break before a boundary belongs to the boundary (RFC 2046)
    assert message.text == "Un café crème, s'il vous plaît."
    assert message.html == "<p>café \ufffd</p>"


@pytest.mark.django_db
def test_inline_utf8_content_with_undecodable_bytes_is_read_not_crashed_on(
        inbound_emulator, inbound_signals):
    """With SES's default UTF8 encoding non-UTF-8 bytes arrive as U+FFFD (SES warns of it):
    the mail is still taken in."""
    raw = (b"From: a@example.org\r\nTo: b@inbound.example.com\r\nSubject: latin\r\n"
           b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n")
    result = inbound_emulator.receive(raw, post=False)
    assert answer(post(result.notification)) == (200, "queued")
    [(message, _)] = inbound_signals
    assert message.text.startswith("caf") and message.subject == "latin"


@pytest.mark.django_db
def test_malformed_mail_is_taken_in_as_well_as_it_parses(inbound_emulator, inbound_signals):
    """Garbage where a mail should be, broken address headers, binary junk: the parser keeps
    what it can (defects recorded), the conveniences answer, nothing crashes."""
    raw = (b"To: <<<@@>>>, \"unclosed\r\nFrom: ,,,@\r\nSubject: \xff\xfe\r\n"
           b"Content-Type: multipart/mixed; boundary=\"never-closed\"\r\n\r\n"
           b"--never-closed\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n")
    result = inbound_emulator.receive(raw, encoding="BASE64", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    [(message, _)] = inbound_signals
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
def test_a_failing_receiver_gets_the_mail_again_on_the_tasks_retry(
        inbound_emulator, inbound_signals):
    """A receiver that raises rolls the take-in back (the record stays pending): the task's
    retry reaches the receivers again, and then only once; SNS's redelivery is a duplicate."""
    calls = []

    def flaky(sender, message, event, **kwargs):
        calls.append(event.sns_message_id)
        if len(calls) == 1:
            raise RuntimeError("database hiccup in the app")

    inbound_received.connect(flaky)
    try:
        result = inbound_emulator.receive(reply_mail(), post=False)
        assert answer(post(result.notification)) == (200, "queued")
        assert answer(post(result.notification)) == (200, "duplicate")
    finally:
        inbound_received.disconnect(flaky)
    assert calls == [result.sns_message_id] * 2
    # every receiver ran for the rolled-back run and for the retry, never after
    assert [event.sns_message_id for _, event in inbound_signals] == calls
    assert record(result.sns_message_id).state == "received"


@pytest.mark.django_db
def test_a_redelivery_queues_a_record_still_pending_again(inbound_emulator, inbound_signals,
                                                          eager_inbound):
    """A record whose task never ran (the queueing failed, or the answer was lost) is
    queued again by SNS's redelivery, and taken in once."""
    eager_inbound.conf.task_always_eager = False  # the first task reaches no worker
    result = inbound_emulator.receive(reply_mail(), post=False)
    assert answer(post(result.notification)) == (200, "queued")
    assert record(result.sns_message_id).state == "pending" and inbound_signals == []
    eager_inbound.conf.task_always_eager = True
    assert answer(post(result.notification)) == (200, "duplicate")
    assert record(result.sns_message_id).state == "received" and len(inbound_signals) == 1
    assert answer(post(result.notification)) == (200, "duplicate")
    assert len(inbound_signals) == 1


@pytest.mark.django_db
def test_a_record_whose_task_was_lost_is_queued_again_by_the_sweep(inbound_emulator,
                                                                   inbound_signals,
                                                                   eager_inbound, caplog):
    """No SNS redelivery comes (the webhook answered 200), but the task never ran: the
    workers' sweep finds the record pending past ``STUCK_AFTER`` and queues it again, once;
    a record pending for less is left to its task."""
    eager_inbound.conf.task_always_eager = False  # the first tasks reach no worker
    lost = inbound_emulator.receive(reply_mail(), post=False)
    recent = inbound_emulator.receive(reply_mail(Subject="recent"), post=False)
    assert answer(post(lost.notification)) == (200, "queued")
    assert answer(post(recent.notification)) == (200, "queued")
    long_ago = timezone.now() - dt.timedelta(seconds=inbound_task.STUCK_AFTER + 1)
    InboundMail.objects.filter(sns_message_id=lost.sns_message_id).update(updated_at=long_ago)
    eager_inbound.conf.task_always_eager = True
    with caplog.at_level(logging.WARNING, logger="seacucumber"):
        assert inbound_task.requeue_stuck() == 1
    assert record(lost.sns_message_id).state == "received" and len(inbound_signals) == 1
    assert record(recent.sns_message_id).state == "pending"
    assert any("its task was lost; queued again" in r.getMessage() for r in caplog.records)
    assert inbound_task.requeue_stuck() == 0  # nothing pending for long: nothing queued


@pytest.mark.django_db
def test_a_redelivery_whose_seen_id_was_pruned_is_still_a_duplicate(inbound_emulator,
                                                                    inbound_signals):
    """``ses_cleanup`` prunes seen SNS ids, not inbound records: the record still names the
    SNS message, so it is answered as a duplicate (not a 500), and not signalled again."""
    result = inbound_emulator.receive(reply_mail(), post=False)
    assert answer(post(result.notification)) == (200, "queued")
    SeenNotification.objects.all().delete()
    assert answer(post(result.notification)) == (200, "duplicate")
    assert len(inbound_signals) == 1 and record(result.sns_message_id).state == "received"


@pytest.mark.django_db
def test_a_receiver_that_keeps_failing_fails_the_record_with_its_reason(
        inbound_emulator, inbound_signals):
    """Past ``MAX_ATTEMPTS`` runs the record is failed with the receiver's error: the mail
    (inside the recorded notification) is not lost unseen."""
    def broken(sender, message, event, **kwargs):
        raise RuntimeError("the app's table is gone")

    inbound_received.connect(broken)
    try:
        result = inbound_emulator.receive(reply_mail(), post=False)
        assert answer(post(result.notification)) == (200, "queued")
    finally:
        inbound_received.disconnect(broken)
    failed = record(result.sns_message_id)
    assert failed.state == "failed"
    assert failed.reason == (f"failed after {inbound_task.MAX_ATTEMPTS} attempts: "
                             "RuntimeError(\"the app's table is gone\")")
    assert "Re: your order" in json.loads(failed.notification)["content"]
    assert len(inbound_signals) == inbound_task.MAX_ATTEMPTS  # each run rolled back


@pytest.mark.django_db
def test_a_post_that_is_not_utf8_is_refused(inbound_emulator, inbound_signals):
    assert answer(post(b'{"Type": "Notification", "Message": "caf\xe9"}')) == (400, "refused")
    assert inbound_signals == []


@pytest.mark.django_db
def test_inline_content_with_a_lone_surrogate_is_taken_in(inbound_emulator, inbound_signals):
    """JSON may carry a lone UTF-16 surrogate (``\\ud800``), which no UTF-8 encodes: it
    becomes '?', the rest of the mail is read."""
    notification = receipt_notification(reply_mail(), topic_arn=DEFAULT_TOPIC_ARN)
    notification["content"] = "Subject: odd\r\n\r\nbefore \ud800 after\r\n"
    assert "\\ud800" in json.dumps(notification)
    assert answer(post(_signed(inbound_emulator, notification))) == (200, "queued")
    [(message, _)] = inbound_signals
    assert message.subject == "odd" and message.text == "before ? after\r\n"


# --- what is dropped, skipped, refused -----------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("verdict, setting, dropped", [
    ("spam", "SEACUCUMBER_INBOUND_DROP_SPAM", True),
    ("spam", None, False),  # default: spam is kept, its verdict on the message
    ("virus", None, True),  # default: a virus is dropped
    ("virus", "SEACUCUMBER_INBOUND_DROP_VIRUS", True),
])
def test_failed_verdicts_are_dropped_as_the_settings_say(
        inbound_emulator, inbound_signals, settings, verdict, setting, dropped):
    if setting:
        setattr(settings, setting, True)
    result = inbound_emulator.receive(reply_mail(), verdicts={verdict: "FAIL"}, post=False)
    response = post(result.notification)
    if dropped:
        assert answer(response) == (200, "dropped") and inbound_signals == []
    else:
        assert answer(response) == (200, "queued")
        assert getattr(inbound_signals[0][0], f"{verdict}_verdict") == "FAIL"


@pytest.mark.django_db
def test_virus_mail_is_kept_when_the_setting_is_off(inbound_emulator, inbound_signals, settings):
    settings.SEACUCUMBER_INBOUND_DROP_VIRUS = False
    result = inbound_emulator.receive(reply_mail(), verdicts={"virus": "FAIL"}, post=False)
    assert answer(post(result.notification)) == (200, "queued")
    assert inbound_signals[0][0].virus_verdict == "FAIL"


@pytest.mark.django_db
def test_the_setup_notification_is_answered_and_not_signalled(inbound_emulator, inbound_signals):
    notification = receipt_notification(b"Subject: setup\r\n\r\n", topic_arn=DEFAULT_TOPIC_ARN,
                                         ses_message_id=inbound.SETUP_NOTIFICATION_ID)
    signed = inbound_emulator.signing_signer().sign(_sns(notification))
    assert answer(post(signed)) == (200, "setup notification")
    assert inbound_signals == []


def _sns(ses_notification: dict, topic: str = DEFAULT_TOPIC_ARN) -> dict:
    from seacucumber.testing.emulator.events import sns_notification

    return sns_notification(ses_notification, topic)


def _signed(inbound_emulator: SESEmulator, ses_notification: dict, **sign) -> dict:
    return inbound_emulator.signing_signer().sign(_sns(ses_notification), **sign)


@pytest.mark.django_db
@pytest.mark.parametrize("change, status", [
    (lambda n: n.pop("content"), 400),                            # SNS action, no mail
    (lambda n: n.update(content="%%% not base64"), 400),          # BASE64 that is not
    (lambda n: n["receipt"]["action"].update(type="Lambda"), 400),  # an action with no mail
    (lambda n: n.pop("receipt"), 400),
    (lambda n: n.update(mail="not an object"), 400),
])
def test_malformed_receipt_notifications_are_refused(
        inbound_emulator, inbound_signals, change, status):
    notification = receipt_notification(reply_mail(), topic_arn=DEFAULT_TOPIC_ARN,
                                        encoding="BASE64")
    change(notification)
    response = post(_signed(inbound_emulator, notification))
    assert answer(response) == (status, "refused")
    assert inbound_signals == [] and not SeenNotification.objects.exists()


@pytest.mark.django_db
def test_forged_receipt_notifications_are_refused(inbound_emulator, inbound_signals, settings):
    """Tampered after signing, signed by someone else's key, from a topic not allowed, with a
    certificate URL off SNS: 403, nothing taken in."""
    from seacucumber.testing.sns_signing import Signer

    result = inbound_emulator.receive(reply_mail(), post=False)
    tampered = dict(result.notification)
    tampered["Message"] = tampered["Message"].replace("Re: your order", "Re: wire money")
    assert answer(post(tampered)) == (403, "refused")

    impostor = Signer().sign(_sns(json.loads(result.notification["Message"])))
    assert answer(post(impostor)) == (403, "refused")

    foreign = receipt_notification(reply_mail(), topic_arn="arn:aws:sns:us-east-1:999:evil")
    assert answer(post(inbound_emulator.signing_signer().sign(
        _sns(foreign, "arn:aws:sns:us-east-1:999:evil")))) == (403, "refused")

    for cert_url in ("https://evil.example.com/SimpleNotificationService-x.pem",
                     "https://my-bucket.s3.amazonaws.com/SimpleNotificationService-x.pem",
                     "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem"):
        forged = _signed(inbound_emulator, json.loads(result.notification["Message"]),
                         cert_url=cert_url)
        assert answer(post(forged)) == (403, "refused"), cert_url
    assert inbound_signals == [] and not SeenNotification.objects.exists()


@pytest.mark.django_db
def test_an_oversized_post_is_refused_before_it_is_read(inbound_emulator, inbound_signals):
    result = inbound_emulator.receive(b"Subject: big\r\n\r\n" + b"x" * (600 * 1024), post=False)
    assert answer(post(result.notification)) == (413, "too large")
    assert inbound_signals == []


# --- the S3 action: what S3 does decides what comes of the mail ----------------------------------

@pytest.fixture
def queued_only(eager_inbound):
    """The inbound task is queued (on the test's in-memory broker), not run: the test runs
    ``inbound_task.take_in`` itself, as a worker's attempt would."""
    eager_inbound.conf.task_always_eager = False


@pytest.mark.django_db
def test_an_s3_object_over_the_limit_is_refused_and_left_in_the_bucket(
        inbound_emulator, inbound_s3, inbound_signals, settings):
    settings.SEACUCUMBER_INBOUND_MAX_BYTES = 10_000
    raw = reply_mail() + b"\r\n" + b"y" * 20_000
    result = inbound_emulator.receive(raw, action="S3", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    assert inbound_signals == []
    refused = record(result.sns_message_id)
    assert refused.state == "refused"
    assert refused.reason == (f"s3://{BUCKET}/{result.ses_message_id} is {len(raw)} bytes, "
                              "over SEACUCUMBER_INBOUND_MAX_BYTES (10000)")
    stored = inbound_s3.get_object(Bucket=BUCKET, Key=result.ses_message_id)
    assert stored["ContentLength"] == len(raw)


@pytest.mark.django_db
def test_a_gone_s3_object_is_recorded_as_gone(
        inbound_emulator, inbound_s3, inbound_signals, caplog):
    result = inbound_emulator.receive(reply_mail(), action="S3", post=False)
    inbound_s3.delete_object(Bucket=BUCKET, Key=result.ses_message_id)
    with caplog.at_level(logging.ERROR, logger="seacucumber.events.inbound_task"):
        assert answer(post(result.notification)) == (200, "queued")
    assert inbound_signals == []
    gone = record(result.sns_message_id)
    assert (gone.state, gone.reason) == (
        "gone", f"s3://{BUCKET}/{result.ses_message_id}: NoSuchKey")
    assert any(result.ses_message_id in r.getMessage() and "gone" in r.getMessage()
               for r in caplog.records)
    assert answer(post(result.notification)) == (200, "duplicate")


@pytest.mark.django_db
def test_s3_unreachable_leaves_the_record_pending_and_a_retry_takes_the_mail_in(
        inbound_emulator, inbound_s3, inbound_signals, settings, moto_server, queued_only):
    result = inbound_emulator.receive(reply_mail(), action="S3", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    pending = record(result.sns_message_id)
    assert pending.state == "pending" and inbound_signals == []  # the webhook read no mail
    settings.SEACUCUMBER_S3_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # nothing there
    with pytest.raises(MailStoreUnavailable):
        inbound_task.take_in(pending.pk)
    assert record(result.sns_message_id).state == "pending" and inbound_signals == []
    settings.SEACUCUMBER_S3_ENDPOINT_URL = moto_server.url  # S3 is back: the retry works
    assert inbound_task.take_in(pending.pk) == "received"
    assert len(inbound_signals) == 1
    assert inbound_task.take_in(pending.pk) == "received"  # a redelivered task: nothing more
    assert len(inbound_signals) == 1


@pytest.mark.django_db
def test_s3_that_stays_unreachable_fails_the_record_after_the_retries(
        inbound_emulator, inbound_s3, inbound_signals, settings):
    settings.SEACUCUMBER_S3_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # nothing there
    result = inbound_emulator.receive(reply_mail(), action="S3", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    failed = record(result.sns_message_id)
    assert failed.state == "failed" and inbound_signals == []
    assert failed.reason.startswith(
        f"failed after {inbound_task.MAX_ATTEMPTS} attempts: MailStoreUnavailable(")


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
def test_s3_errors_are_retried(
        inbound_emulator, inbound_s3, inbound_signals, failing_s3, code, queued_only):
    """5xx and throttling are S3's trouble; 403 is a permission the operator must grant
    (or a missing object read without s3:ListBucket): all retried, none lost."""
    failing_s3[0] = code
    result = inbound_emulator.receive(reply_mail(), action="S3", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    pending = record(result.sns_message_id)
    with pytest.raises(MailStoreUnavailable, match=f"HTTP {code}"):
        inbound_task.take_in(pending.pk)
    assert record(result.sns_message_id).state == "pending" and inbound_signals == []


@pytest.mark.django_db
def test_a_10_mb_mail_from_s3_is_parsed_whole(inbound_emulator, inbound_s3, inbound_signals):
    attachment = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.org", "b@x.example", "big"
    message.set_content("see attached")
    message.add_attachment(attachment, maintype="application", subtype="octet-stream",
                           filename="big.bin")
    result = inbound_emulator.receive(message.as_bytes(), action="S3", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    [(got, _)] = inbound_signals
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
def test_received_mail_is_counted_once_in_the_metrics(
        inbound_emulator, inbound_signals, settings, redis_url):
    """Prometheus sees received mail as its own SES notification type, once per SNS message
    (not as an unknown event)."""
    from prometheus_client.parser import text_string_to_metric_families

    from seacucumber.operations import metrics

    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/7"
    settings.SEACUCUMBER_REDIS_PREFIX = f"inbound-metrics-{free_port()}"
    settings.SEACUCUMBER_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # the quota: unread
    result = inbound_emulator.receive(reply_mail(), action="SNS", post=False)
    assert post(result.notification).status_code == 200
    assert post(result.notification).status_code == 200  # SNS redelivers: counted once
    assert len(inbound_signals) == 1
    counted = {tuple(sorted(sample.labels.items())): sample.value
               for family in text_string_to_metric_families(metrics.exposition().decode())
               if family.name == "seacucumber_ses_events"
               for sample in family.samples if sample.name.endswith("_total") and sample.value}
    assert counted == {(("bounce_type", ""), ("lane", ""), ("type", "Received")): 1.0}
