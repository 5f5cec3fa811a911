"""The backend and the send task together, tasks run eagerly, SES at moto's server."""

import email
import time
from email import policy

import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives

from seacucumber import signals
from seacucumber.exceptions import EnqueueError, InvalidMessage, PermanentSendError
from seacucumber.testing.processes import free_port
from tests.conftest import SENDER, point_app_at

PNG = bytes.fromhex("89504e470d0a1a0a") + bytes(range(256)) * 4


def parsed(raw_data: str):
    """Parse what moto stored (it keeps the raw bytes decoded as UTF-8). Parsing bytes, not
    str: the email package decodes 8bit parts of a str with raw-unicode-escape."""
    return email.message_from_bytes(raw_data.encode("utf-8"), policy=policy.default)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_rich_message_arrives_intact(moto_ses, eager, settings, v2):
    settings.USE_SES_V2 = v2
    message = EmailMultiAlternatives(
        subject="Grüße aus Köln ☕",
        body="Plain body with ünïcödé and a long line " + "x" * 1200,
        from_email=f"Zoë Sender <{SENDER}>",
        to=["Åsa Recipient <to@example.com>"],
        cc=["cc@example.com"],
        bcc=["hidden@example.com"],
        reply_to=["reply@example.com"],
    )
    message.attach_alternative("<p>HTML ✓ <img src='cid:logo'></p>", "text/html")
    message.attach("data.bin", PNG, "application/octet-stream")
    message.attach("notes.txt", "Notizen: äöü", "text/plain")
    from email.mime.image import MIMEImage

    inline = MIMEImage(PNG, "png")
    inline.add_header("Content-ID", "<logo>")
    inline.add_header("Content-Disposition", "inline", filename="logo.png")
    message.attach(inline)

    assert mail.get_connection().send_messages([message]) == 1

    [sent] = moto_ses.wait_for(1)
    assert sent.source == SENDER
    assert sent.destinations[:3] == ["to@example.com", "cc@example.com", "hidden@example.com"]
    got = parsed(sent.raw_data)
    assert got["Subject"] == "Grüße aus Köln ☕"
    assert got["From"] == f"Zoë Sender <{SENDER}>"
    assert got["To"] == "Åsa Recipient <to@example.com>"
    assert got["Cc"] == "cc@example.com"
    assert got["Reply-To"] == "reply@example.com"
    assert got["Bcc"] is None and "hidden@example.com" not in sent.raw_data
    assert got.get_body(("plain",)).get_content().startswith("Plain body with ünïcödé")
    assert "HTML ✓" in got.get_body(("html",)).get_content()
    parts = {p.get_filename(): p for p in got.iter_attachments()}
    assert parts["data.bin"].get_content() == PNG
    assert parts["notes.txt"].get_content() == "Notizen: äöü"
    assert parts["logo.png"]["Content-ID"] == "<logo>"
    assert parts["logo.png"].get_content() == PNG


def test_send_mail_and_send_mass_mail(moto_ses, eager):
    assert mail.send_mail("One", "Body", SENDER, ["a@example.com"]) == 1
    datatuple = [(f"Mass {i}", "Body", SENDER, [f"m{i}@example.com"]) for i in range(3)]
    assert mail.send_mass_mail(datatuple) == 3
    sent = moto_ses.wait_for(4)
    assert sorted(m.destinations[0] for m in sent) == [
        "a@example.com", "m0@example.com", "m1@example.com", "m2@example.com"]


def test_task_result_is_the_ses_message_id(moto_ses, eager):
    from seacucumber.payload import build_sends
    from seacucumber.tasks import send_email

    [send] = build_sends(EmailMessage("Hi", "B", SENDER, ["a@example.com"]))
    result = send_email.apply_async(args=[send.to_json()])
    [sent] = moto_ses.wait_for(1)
    assert result.get() == sent.id


def test_bcc_only_message_with_120_recipients_goes_in_three_sends(moto_ses, eager):
    bcc = [f"user{i}@example.com" for i in range(120)]
    message = EmailMessage("Many", "Body", SENDER, [], bcc=bcc)
    assert mail.get_connection().send_messages([message]) == 1
    sent = moto_ses.wait_for(3)
    assert sorted(len(m.destinations) for m in sent) == [20, 50, 50]
    assert sorted(d for m in sent for d in m.destinations) == sorted(bcc)


def test_permanent_error_fails_at_once_with_ses_code(moto_ses, eager):
    failures = []

    def record(**kwargs):
        failures.append(kwargs)

    signals.message_failed.connect(record)
    try:
        with pytest.raises(PermanentSendError) as caught:
            mail.send_mail("Hi", "B", "unverified@example.org", ["a@example.com"])
    finally:
        signals.message_failed.disconnect(record)
    assert caught.value.code == "MessageRejected"
    assert moto_ses.sent() == []
    [failure] = failures
    assert failure["code"] == "MessageRejected"
    assert failure["recipients"] == ["a@example.com"]


def test_sent_signal_carries_both_ids(moto_ses, eager):
    seen = []

    def record(**kwargs):
        seen.append(kwargs)

    signals.message_sent.connect(record)
    try:
        mail.send_mail("Hi", "B", SENDER, ["a@example.com"])
    finally:
        signals.message_sent.disconnect(record)
    [sent] = moto_ses.wait_for(1)
    assert seen[0]["ses_message_id"] == sent.id
    assert len(seen[0]["message_id"]) == 32


def test_bad_message_in_a_batch_refuses_the_whole_batch(moto_ses, eager):
    good = EmailMessage("Hi", "B", SENDER, ["a@example.com"])
    bad = EmailMessage("Hi\nBcc: x@example.com", "B", SENDER, ["a@example.com"])
    with pytest.raises(InvalidMessage):
        mail.get_connection().send_messages([good, bad])
    assert moto_ses.sent() == []
    quiet = mail.get_connection(fail_silently=True)
    assert quiet.send_messages([good, bad, EmailMessage("Empty", "B", SENDER, [])]) == 1
    assert len(moto_ses.wait_for(1)) == 1


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_broker_down_raises_within_seconds_or_counts_zero(settings, scheme):
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_ENQUEUE_TIMEOUT = 2.0
    path = "0" if scheme == "redis" else "/"
    point_app_at(f"{scheme}://127.0.0.1:{free_port()}/{path}", None)
    try:
        message = EmailMessage("Hi", "B", SENDER, ["a@example.com"])
        started = time.monotonic()
        with pytest.raises(EnqueueError, match="could not queue"):
            mail.get_connection().send_messages([message])
        assert time.monotonic() - started < 10
        assert mail.get_connection(fail_silently=True).send_messages([message]) == 0
    finally:
        point_app_at("memory://", None)


def test_one_boto3_client_serves_every_message(moto_ses, eager):
    from seacucumber import ses

    ses._clients.clear()
    mail.send_mass_mail([("Hi", "B", SENDER, [f"r{i}@example.com"]) for i in range(5)])
    moto_ses.wait_for(5)
    assert len(ses._clients) == 1
    first = ses.client()
    assert ses.client() is first
