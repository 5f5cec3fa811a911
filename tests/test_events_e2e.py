"""Delivery feedback end to end: the backend in this process, a real ``celery worker`` on a
private Redis, SES at moto, the shared sqlite file database, and SES events posted to the
webhook with Django's test client, signed with the test certificate."""

import time

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.db import transaction

from seacucumber import status
from seacucumber.events import suppression
from seacucumber.exceptions import EnqueueError
from seacucumber.models import MessageStatus, SuppressedAddress
from seacucumber.testing.processes import free_port
from tests.conftest import SENDER, point_app_at
from tests.fixtures_events import bounce, notification, ses_event

FEEDBACK_ENV = {"SEACUCUMBER_TRACK_STATUS": "1", "SEACUCUMBER_SUPPRESSION_LIST": "1"}


def wait_until(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout}s")
        time.sleep(0.1)


def statuses(*message_ids):
    found = dict(MessageStatus.objects.filter(message_id__in=message_ids)
                 .values_list("message_id", "status"))
    return [found.get(m) for m in message_ids]


@pytest.fixture
def feedback(settings, webhook):
    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_SUPPRESS_ON_BOUNCE = True
    settings.SEACUCUMBER_SUPPRESS_ON_COMPLAINT = True
    return webhook


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pipeline", ["redis"], indirect=True)
def test_queued_sent_then_events_then_suppression(pipeline, start_worker, moto_ses, feedback):
    post = feedback
    messages = [EmailMessage(f"Subject {n}", "Body", SENDER, [f"{n}@example.com"])
                for n in ("a", "b", "c")]
    assert mail.get_connection().send_messages(messages) == 3
    records = list(MessageStatus.objects.order_by("recipients"))
    assert [(r.recipients, r.subject, r.status) for r in records] == [
        ("a@example.com", "Subject a", "queued"),
        ("b@example.com", "Subject b", "queued"),
        ("c@example.com", "Subject c", "queued"),
    ]
    ids = [r.message_id for r in records]

    start_worker(pipeline.worker_env(**FEEDBACK_ENV), queues=pipeline.queue, concurrency=2)
    sent = {m.destinations[0]: m.id for m in moto_ses.wait_for(3)}
    wait_until(lambda: statuses(*ids) == ["sent"] * 3, what="sent")
    ses_ids = [status.get(message_id=i).ses_message_id for i in ids]
    assert ses_ids == [sent["a@example.com"], sent["b@example.com"], sent["c@example.com"]]
    assert status.get(ses_message_id=ses_ids[0]).message_id == ids[0]

    assert post(notification(ses_event("Delivery", ses_ids[0]))).status_code == 200
    assert post(notification(bounce(ses_ids[1], "B@example.com"))).status_code == 200
    complaint = ses_event("Complaint", ses_ids[2], style="notificationType",
                          complainedRecipients=[{"emailAddress": "c@example.com"}])
    assert post(notification(complaint)).status_code == 200
    assert statuses(*ids) == ["delivered", "bounced", "complained"]
    assert sorted(SuppressedAddress.objects.values_list("address", "reason")) == [
        ("b@example.com", "bounce"), ("c@example.com", "complaint")]

    # Next call: one message all suppressed, one partly; the other messages still go.
    # (Suppressed addresses are Bcc here: moto adds the header addresses to what it records
    # as destinations, so only Bcc shows the SES envelope.)
    blocked = EmailMessage("Blocked", "Body", SENDER, [], bcc=["b@example.com", "C@Example.com"])
    partly = EmailMessage("Partly", "Body", SENDER, ["d@example.com"], bcc=["B@example.com"])
    fine = EmailMessage("Fine", "Body", SENDER, ["e@example.com"])
    assert mail.get_connection().send_messages([blocked, partly, fine]) == 3
    new = {r.subject: r.message_id for r in MessageStatus.objects.filter(
        subject__in=["Blocked", "Partly", "Fine"])}
    wait_until(lambda: statuses(new["Blocked"], new["Partly"], new["Fine"])
               == ["suppressed", "sent", "sent"], what="second call settled")
    assert sorted(sorted(set(m.destinations)) for m in moto_ses.sent()[3:]) == [
        ["d@example.com"], ["e@example.com"]]
    record = status.get(message_id=new["Blocked"])
    assert record.ses_message_id is None
    assert record.suppressed_recipients.splitlines() == ["b@example.com", "C@Example.com"]
    assert status.get(message_id=new["Partly"]).suppressed_recipients == "B@example.com"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pipeline", ["redis"], indirect=True)
def test_failed_send_is_recorded_with_the_ses_error(pipeline, start_worker, moto_ses, settings):
    settings.SEACUCUMBER_TRACK_STATUS = True
    start_worker(pipeline.worker_env(**FEEDBACK_ENV), queues=pipeline.queue, concurrency=1)
    mail.send_mail("Nope", "Body", "unverified@example.org", ["a@example.com"])
    [record] = MessageStatus.objects.all()
    wait_until(lambda: statuses(record.message_id) == ["failed"], what="failed")
    record.refresh_from_db()
    assert record.last_error.startswith("MessageRejected: ")
    assert record.sent_at is None


@pytest.mark.django_db(transaction=True)
def test_status_follows_enqueue_on_commit(settings):
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_ENQUEUE_ON_COMMIT = True
    with pytest.raises(RuntimeError), transaction.atomic():
        mail.send_mail("Rolled back", "Body", SENDER, ["a@example.com"])
        assert MessageStatus.objects.filter(subject="Rolled back").count() == 1
        raise RuntimeError("roll back")
    assert not MessageStatus.objects.exists()
    with transaction.atomic():
        mail.send_mail("Committed", "Body", SENDER, ["a@example.com"])
    assert statuses(MessageStatus.objects.get().message_id) == ["queued"]


@pytest.mark.django_db(transaction=True)
def test_broker_down_marks_records_failed(settings):
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_ENQUEUE_TIMEOUT = 1.0
    point_app_at(f"redis://127.0.0.1:{free_port()}/0", None)
    try:
        with pytest.raises(EnqueueError):
            mail.send_mail("Hi", "Body", SENDER, ["a@example.com"])
    finally:
        point_app_at("memory://", None)
    [record] = MessageStatus.objects.all()
    assert record.status == "failed" and "could not queue" in record.last_error


@pytest.mark.django_db
def test_tracking_off_writes_nothing(settings, eager, moto_ses):
    mail.send_mail("Hi", "Body", SENDER, ["a@example.com"])
    moto_ses.wait_for(1)
    assert not MessageStatus.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("active", [True, False])
def test_suppression_list_setting(settings, eager, moto_ses, active):
    suppression.add(["A@example.com"], "manual")
    settings.SEACUCUMBER_SUPPRESSION_LIST = active
    mail.send_mail("Hi", "Body", SENDER, ["a@example.com"])
    mail.send_mail("Other", "Body", SENDER, ["z@example.com"])
    sent = moto_ses.wait_for(1 if active else 2)
    assert sorted(m.destinations[0] for m in sent) == (
        ["z@example.com"] if active else ["a@example.com", "z@example.com"])
