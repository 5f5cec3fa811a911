"""The backend and the send task together, tasks run eagerly, SES at moto's server."""

import email
import time
import uuid
from email import policy

import django
import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives

from seacucumber import clients, signals
from seacucumber.exceptions import EnqueueError, InvalidMessage, PermanentSendError
from seacucumber.shared import outbox, store
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
    # Django 6 attaches text with the email package's set_content: it ends with a line break
    newline = "\r\n" if django.VERSION >= (6, 0) else ""
    assert parts["notes.txt"].get_content() == "Notizen: äöü" + newline
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
        assert time.monotonic() - started < 2.0 + 1.0  # the enqueue timeout, and a margin
        assert mail.get_connection(fail_silently=True).send_messages([message]) == 0
    finally:
        point_app_at("memory://", None)


def test_hung_broker_raises_within_the_timeout(settings, hung_broker):
    """With the socket timeouts celeryconfig.py sets, a broker that never answers costs the
    enqueue timeout and one attempt, not minutes."""
    from tests.proj.celery import app

    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_ENQUEUE_TIMEOUT = 2.0
    saved = app.conf.broker_transport_options
    point_app_at(f"redis://127.0.0.1:{hung_broker}/0", None)
    app.conf.broker_transport_options = {**saved, "socket_timeout": 1.0,
                                         "socket_connect_timeout": 1.0}
    try:
        started = time.monotonic()
        with pytest.raises(EnqueueError, match="could not queue"):
            mail.send_mail("Hi", "B", SENDER, ["a@example.com"])
        assert time.monotonic() - started < 2.0 + 1.0 + 1.0
    finally:
        app.conf.broker_transport_options = saved
        point_app_at("memory://", None)


@pytest.fixture
def broker_dies_at_publish():
    """A private Redis broker that is shut down just before the n-th task publish of this
    process (from Celery's ``before_task_publish`` signal): a broker lost mid-batch."""
    from celery.signals import before_task_publish

    from seacucumber.testing.processes import RedisServer

    if not RedisServer.available():
        pytest.skip("redis-server is not available")  # conftest's redis_url fails this in CI
    server = RedisServer().start()
    state = {"n": 0, "die_at": None}

    def count(**kwargs) -> None:
        state["n"] += 1
        if state["die_at"] is not None and state["n"] == state["die_at"]:
            server.stop()

    before_task_publish.connect(count, weak=False)
    point_app_at(f"{server.url}/0", None)
    try:
        yield state
    finally:
        before_task_publish.disconnect(count)
        point_app_at("memory://", None)
        server.stop()


@pytest.mark.django_db
@pytest.mark.parametrize("batched", [True, False], ids=["one_pipeline", "one_by_one"])
@pytest.mark.parametrize("quiet", [True, False], ids=["fail_silently", "raises"])
def test_broker_failure_mid_batch_counts_and_records_exactly(settings, redis_url,
                                                            broker_dies_at_publish, quiet,
                                                            batched):
    """The broker dies as the third send is published. One by one (a transport that does
    not batch: here Redis with retry_on_timeout, which kombu will not pipeline), the first
    message and the split one's first send went; in one pipeline nothing did, since the
    pipeline never ran. Either way the count, the status records and the outbox say
    exactly what the broker holds."""
    from seacucumber.models import MessageStatus
    from tests.proj.celery import app

    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_ENQUEUE_TIMEOUT = 1.0
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/9"  # the outbox outlives the broker
    settings.SEACUCUMBER_REDIS_PREFIX = f"t-{uuid.uuid4().hex[:8]}"
    options = dict(app.conf.broker_transport_options or {})
    app.conf.broker_transport_options = {**options, "retry_on_timeout": not batched}
    first = EmailMessage("First", "B", SENDER, ["a@example.com"])
    split = EmailMessage("Split", "B", SENDER, [f"r{i}@example.com" for i in range(120)])
    last = EmailMessage("Last", "B", SENDER, ["z@example.com"])
    broker_dies_at_publish["die_at"] = 3  # first's send, split's 1st send, then it dies
    connection = mail.get_connection(fail_silently=quiet)
    went = 0 if batched else 1
    try:
        if quiet:
            assert connection.send_messages([first, split, last]) == went
        else:
            with pytest.raises(EnqueueError, match="could not queue") as caught:
                connection.send_messages([first, split, last])
            assert (caught.value.queued, caught.value.sends_queued) == (went, went)
    finally:
        app.conf.broker_transport_options = options
    by_subject: dict[str, list[str]] = {}
    for record in MessageStatus.objects.order_by("message_id"):
        by_subject.setdefault(record.subject, []).append(record.status)
    assert sorted(by_subject["Split"]) == (["failed"] * 3 if batched
                                           else ["failed", "failed", "queued"])
    assert by_subject["First"] == ["failed" if batched else "queued"]
    assert by_subject["Last"] == ["failed"]
    # the outbox recorded the whole batch first, then dropped what the broker did not take
    queued = set(MessageStatus.objects.filter(status="queued")
                 .values_list("message_id", flat=True))
    held = {key.decode() for key in store.redis_client().hkeys(outbox.key_names()["task"])}
    assert held == queued and len(held) == 2 * went


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_sends_only_committed_mail(moto_ses, eager, settings):
    from django.db import transaction

    settings.SEACUCUMBER_ENQUEUE_ON_COMMIT = True
    with pytest.raises(RuntimeError), transaction.atomic():
        mail.send_mail("Rolled back", "B", SENDER, ["a@example.com"])
        raise RuntimeError("roll back")
    with transaction.atomic():
        assert mail.send_mail("Committed", "B", SENDER, ["a@example.com"]) == 1
        assert moto_ses.sent() == []  # not before the commit
    [sent] = moto_ses.wait_for(1)
    assert "Subject: Committed" in sent.raw_data
    mail.send_mail("Autocommit", "B", SENDER, ["a@example.com"])  # no transaction: at once
    assert len(moto_ses.sent()) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("quiet", [True, False], ids=["fail_silently", "raises"])
def test_enqueue_on_commit_broker_down_is_recorded(settings, quiet):
    from django.db import transaction

    from seacucumber.models import MessageStatus

    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_ENQUEUE_ON_COMMIT = True
    settings.SEACUCUMBER_ENQUEUE_TIMEOUT = 1.0
    point_app_at(f"redis://127.0.0.1:{free_port()}/0", None)
    try:
        if quiet:
            with transaction.atomic():
                assert mail.send_mail("Hi", "B", SENDER, ["a@example.com"],
                                      fail_silently=True) == 1
        else:
            with pytest.raises(EnqueueError), transaction.atomic():
                mail.send_mail("Hi", "B", SENDER, ["a@example.com"])
        [record] = MessageStatus.objects.all()  # committed: the record stays, marked failed
        assert record.status == "failed"
        assert "could not queue" in record.last_error
    finally:
        point_app_at("memory://", None)


def test_one_boto3_client_serves_every_message(moto_ses, eager):
    from seacucumber.ses.clients import client

    clients.clear()
    mail.send_mass_mail([("Hi", "B", SENDER, [f"r{i}@example.com"]) for i in range(5)])
    moto_ses.wait_for(5)
    assert [key[0] for key in clients._registry].count("boto3") == 1
    first = client()
    assert client() is first


def test_check_warns_about_a_redis_broker_without_socket_timeouts():
    from seacucumber.checks import check_broker_timeouts
    from tests.proj.celery import app

    saved = app.conf.broker_transport_options
    point_app_at("redis://127.0.0.1:6399/0", None)
    try:
        app.conf.broker_transport_options = {"visibility_timeout": 60}
        [warning] = check_broker_timeouts()
        assert warning.id == "seacucumber.W004"
        assert "socket_connect_timeout or socket_timeout" in warning.msg
        app.conf.broker_transport_options = {"socket_connect_timeout": 5, "socket_timeout": 10}
        assert check_broker_timeouts() == []
        point_app_at("amqp://guest:guest@127.0.0.1:5672//", None)
        assert check_broker_timeouts() == []  # AMQP: Celery's broker_connection_timeout
    finally:
        app.conf.broker_transport_options = saved
        point_app_at("memory://", None)


def test_check_warns_when_the_global_endpoint_cannot_work(settings):
    from importlib.util import find_spec

    from seacucumber.checks import check_global_endpoint

    assert check_global_endpoint() == []
    settings.AWS_SES_GLOBAL_ENDPOINT_ID = "abcd1234.xyz"
    ids = [w.id for w in check_global_endpoint()]
    assert "seacucumber.W005" in ids  # not USE_SES_V2
    assert ("seacucumber.W006" in ids) == (find_spec("awscrt") is None)
    settings.USE_SES_V2 = True
    assert "seacucumber.W005" not in [w.id for w in check_global_endpoint()]


def test_check_warns_when_the_outbox_has_no_redis(settings):
    from seacucumber.checks import check_outbox

    settings.SEACUCUMBER_REDIS_URL = None  # and the broker is memory://: no shared state
    assert check_outbox() == []  # unset: off without Redis, nothing to say
    settings.SEACUCUMBER_OUTBOX = True
    assert [w.id for w in check_outbox()] == ["seacucumber.W007"]
    settings.SEACUCUMBER_REDIS_URL = "redis://127.0.0.1:6379/0"
    assert check_outbox() == []
