"""Scheduled sending (``send_at``) and ``seacucumber.cancel``, in this process: the value
read as anymail reads it and refused at ``send_messages`` when bad or too far ahead; the
payload that carries it; the send task called directly (its retries raise instead of
queueing), against the project's SES emulator and a private redis-server. The real
workers' test (a message due in 5 s, a cancelled one) is tests/test_schedule_workers.py."""

from __future__ import annotations

import datetime as dt
import time
import uuid
import zoneinfo

import pytest
from celery.exceptions import Retry
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage

import seacucumber
from seacucumber import status
from seacucumber.backend import SESBackend
from seacucumber.exceptions import (
    InvalidMessage,
    InvalidMessageOption,
    MalformedPayload,
    TransientSendError,
)
from seacucumber.payload import OutboundSend, build_sends
from seacucumber.schedule import due_time
from seacucumber.shared import outbox, sendlog
from seacucumber.tasks import SCHEDULE_HOP, send_email
from tests.conftest import SENDER

NOW = 1_800_000_000.0
DAY = 86400.0


# --- what send_at may be ---------------------------------------------------------------------

def test_due_time_reads_what_anymails_send_at_takes(settings):
    settings.TIME_ZONE = "America/New_York"  # naive values and dates are taken in it
    new_york = zoneinfo.ZoneInfo("America/New_York")
    aware = dt.datetime(2027, 1, 15, 12, 0, tzinfo=dt.UTC)
    naive = dt.datetime(2027, 1, 15, 12, 0)
    assert due_time(aware, now=aware.timestamp() - 60) == aware.timestamp()
    expected = naive.replace(tzinfo=new_york).timestamp()
    assert due_time(naive, now=expected - 60) == expected
    assert expected - aware.timestamp() == 5 * 3600  # New York in January: UTC-5
    midnight = dt.datetime(2027, 1, 15, tzinfo=new_york).timestamp()
    assert due_time(dt.date(2027, 1, 15), now=midnight - 60) == midnight
    assert due_time(NOW + 60, now=NOW) == NOW + 60
    assert due_time(int(NOW) + 60, now=NOW) == NOW + 60


def test_a_send_at_past_or_none_is_due_now():
    assert due_time(None, now=NOW) is None
    assert due_time(NOW, now=NOW) is None
    assert due_time(NOW - 3600, now=NOW) is None
    assert due_time(dt.datetime(2001, 1, 1, tzinfo=dt.UTC), now=NOW) is None


@pytest.mark.parametrize("value", ["2027-01-15T12:00:00Z", True, float("nan"), float("inf"),
                                   10**400, [NOW], dt.timedelta(hours=1)])
def test_a_send_at_of_another_kind_is_refused_naming_it(value):
    with pytest.raises(InvalidMessageOption, match="send_at"):
        due_time(value, now=NOW)


def test_a_send_at_beyond_the_limit_is_refused(settings):
    assert due_time(NOW + 30 * DAY - 1, now=NOW) == NOW + 30 * DAY - 1  # the default: 30 days
    with pytest.raises(InvalidMessageOption, match="SEACUCUMBER_MAX_SCHEDULE allows at most 30"):
        due_time(NOW + 30 * DAY + 1, now=NOW)
    settings.SEACUCUMBER_MAX_SCHEDULE = 3600
    with pytest.raises(InvalidMessageOption, match="MAX_SCHEDULE"):
        due_time(NOW + 3601, now=NOW)


# --- the message and its payload ----------------------------------------------------------------

def message(**attributes) -> EmailMessage:
    found = EmailMessage("Later", "Body", SENDER, ["to@example.com"])
    for name, value in attributes.items():
        setattr(found, name, value)
    return found


def test_anymails_send_at_attribute_schedules_every_send_of_the_message():
    when = time.time() + 3600
    recipients = [f"r{i}@example.com" for i in range(60)]  # two sends
    scheduled = EmailMessage("Later", "Body", SENDER, recipients)
    scheduled.send_at = dt.datetime.fromtimestamp(when, tz=dt.UTC)
    sends = build_sends(scheduled)
    assert [s.send_at for s in sends] == [pytest.approx(when, abs=1e-3)] * 2
    data = sends[0].to_json()
    assert data["v"] == 4 and data["options"]["send_at"] == pytest.approx(when, abs=1e-3)
    read = OutboundSend.from_json(data)
    assert read.send_at == data["options"]["send_at"]
    assert read.starts == read.send_at  # its lifetime counts from then


def test_seacucumber_options_send_at_wins_over_the_attribute():
    when = time.time() + 600
    [outbound] = build_sends(message(send_at=time.time() + 7200,
                                     seacucumber_options={"send_at": when, "lane": "bulk"}))
    assert outbound.send_at == when
    assert outbound.lane == "bulk"


def test_a_send_at_already_past_makes_an_unscheduled_payload_old_workers_read():
    [outbound] = build_sends(message(send_at=time.time() - 60))
    assert outbound.send_at is None
    assert outbound.to_json()["v"] == 1


def test_send_messages_refuses_a_send_at_too_far_ahead_or_of_another_kind(settings):
    settings.SEACUCUMBER_MAX_SCHEDULE = 3600
    with pytest.raises(InvalidMessage, match="SEACUCUMBER_MAX_SCHEDULE"):
        SESBackend().send_messages([message(), message(send_at=time.time() + 7200)])
    assert SESBackend(fail_silently=True).send_messages(
        [message(send_at=time.time() + 7200)]) == 0
    with pytest.raises(InvalidMessage, match="not a datetime"):
        SESBackend().send_messages([message(seacucumber_options={"send_at": "tomorrow"})])


@pytest.mark.parametrize("send_at", [True, "soon", float("inf")])
def test_a_payload_whose_send_at_is_not_a_time_is_malformed(send_at):
    [outbound] = build_sends(message(send_at=time.time() + 60))
    data = outbound.to_json()
    data["options"]["send_at"] = send_at
    with pytest.raises(MalformedPayload):
        OutboundSend.from_json(data)


def test_a_payload_scheduled_further_than_any_schedule_is_malformed():
    [outbound] = build_sends(message(send_at=time.time() + 60))
    data = outbound.to_json()
    data["options"]["send_at"] = data["created"] + 400 * DAY
    with pytest.raises(MalformedPayload, match="further ahead"):
        OutboundSend.from_json(data)


# --- the worker and cancel --------------------------------------------------------------------

@pytest.fixture
def shared(redis_url, settings):
    """A private Redis db and key prefix, the outbox on, the current app's broker memory."""
    from tests.proj.celery import app

    app.set_current()
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/7"
    settings.SEACUCUMBER_REDIS_PREFIX = f"sched-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_OUTBOX = True
    return settings


def scheduled_payload(ahead: float, created_ago: float = 0.0) -> dict:
    [outbound] = build_sends(message(send_at=time.time() + ahead))
    data = outbound.to_json()
    data["created"] -= created_ago
    return data


def test_a_send_not_due_is_requeued_for_at_most_one_hop_and_not_sent(ses_emulator, shared,
                                                                    caplog):
    caplog.set_level("INFO", "seacucumber.tasks")
    with pytest.raises(Retry):  # a direct call's retry raises (a worker's re-queues)
        send_email(scheduled_payload(3 * 3600))
    assert ses_emulator.stats()["requests"] == 0
    # the current app's broker is memory://, no limit (as RabbitMQ): a hop of SCHEDULE_HOP
    assert f"due in 10800s, back in {SCHEDULE_HOP:.0f}s" in caplog.text
    shared.SEACUCUMBER_MAX_COUNTDOWN = 120  # a broker's limit (SQS, Redis): hops of it
    with pytest.raises(Retry):
        send_email(scheduled_payload(3600))
    assert "due in 3600s, back in 120s" in caplog.text


def test_a_scheduled_sends_lifetime_counts_from_its_time(ses_emulator, shared, failed,
                                                         settings):
    """Queued two days ago for a minute ago: due, and an SES outage retries it, where an
    unscheduled send that old would have failed at the end of its lifetime."""
    settings.SEACUCUMBER_MESSAGE_LIFETIME = 3600
    data = scheduled_payload(3600, created_ago=2 * DAY)
    data["options"]["send_at"] = time.time() - 60
    ses_emulator.configure(fail_5xx=1.0)
    with pytest.raises(TransientSendError):  # what a direct call's retry raises
        send_email(data)
    assert failed == []


def test_a_cancelled_send_never_reaches_ses_scheduled_or_not(ses_emulator, shared):
    waiting, queued = scheduled_payload(3600), scheduled_payload(3600)
    queued["options"].pop("send_at")  # an unscheduled one, its task queued
    queued["v"] = 1
    for data in (waiting, queued):
        outbox.record([data], None, "celery", 5)
        assert seacucumber.cancel(data["id"], "changed my mind") is True
        assert sendlog.cancelled(data["id"]) == "changed my mind"
        assert send_email(data) is None  # ended: cancelled, nothing to retry
    assert ses_emulator.stats()["requests"] == 0
    assert outbox.counts() == {"queued": 0, "running": 0}
    assert seacucumber.cancel(waiting["id"]) is True  # cancelled before: still cancelled


def test_cancel_after_the_send_returns_false(ses_emulator, shared):
    [outbound] = build_sends(message())
    data = outbound.to_json()
    assert send_email(data)  # SES's MessageId
    assert seacucumber.cancel(data["id"]) is False
    assert seacucumber.cancel([data["id"], scheduled_payload(60)["id"]]) is False


def test_cancel_needs_the_shared_state_redis(settings):
    from tests.proj.celery import app  # the current app: its broker is memory://, not Redis

    app.set_current()
    settings.SEACUCUMBER_REDIS_URL = None
    with pytest.raises(ImproperlyConfigured, match="shared-state Redis"):
        seacucumber.cancel(uuid.uuid4().hex)
    with pytest.raises(ValueError, match="not a message id"):
        seacucumber.cancel("no spaces allowed")


@pytest.mark.django_db
def test_the_status_record_shows_the_schedule_then_the_cancel(shared, settings):
    from seacucumber.dashboard.timeline import lookup
    from seacucumber.models import Status

    settings.SEACUCUMBER_TRACK_STATUS = True
    when = time.time() + 3600
    recipients = [f"r{i}@example.com" for i in range(60)]
    scheduled = EmailMessage("Later", "Body", SENDER, recipients)
    scheduled.send_at = when
    sends = build_sends(scheduled)
    status.record_queued([(scheduled, sends)])
    first = status.get(message_id=sends[0].message_id)
    assert first.status == Status.QUEUED
    assert first.send_at.timestamp() == pytest.approx(when, abs=1e-3)
    base = sends[0].message_id.rsplit("-", 1)[0]  # the message's own id stands for its sends
    [timeline] = lookup(sends[0].message_id).sends
    assert [s.what for s in timeline.steps] == ["queued", "scheduled for"]
    assert seacucumber.cancel(base, "the sale was called off") is True
    for outbound in sends:
        record = status.get(message_id=outbound.message_id)
        assert (record.status, record.last_error) == (Status.CANCELLED,
                                                      "the sale was called off")
        assert sendlog.cancelled(outbound.message_id) == "the sale was called off"
    [timeline] = lookup(sends[1].message_id).sends
    assert [s.what for s in timeline.steps] == ["queued", "scheduled for", "cancelled"]


@pytest.mark.django_db
def test_the_admin_action_cancels_queued_sends_for_staff_who_may_change_them(shared,
                                                                            settings):
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    from seacucumber.models import MessageStatus, Status

    settings.SEACUCUMBER_TRACK_STATUS = True
    scheduled, sent = message(send_at=time.time() + 3600), message()
    sends = {m: build_sends(m) for m in (scheduled, sent)}
    status.record_queued(sends.items())
    [waiting], [done] = sends[scheduled], sends[sent]
    MessageStatus.objects.filter(message_id=done.message_id).update(status=Status.SENT)

    def client(*codenames: str) -> Client:
        user = User.objects.create_user(f"ops-{uuid.uuid4().hex[:6]}", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        found = Client()
        found.force_login(user)
        return found

    url = "/admin/seacucumber/messagestatus/"
    selected = MessageStatus.objects.filter(message_id__in=[waiting.message_id,
                                                            done.message_id])
    post = {"action": "cancel_sends", "_selected_action": [r.pk for r in selected]}
    viewer = client("view_messagestatus")
    assert "cancel_sends" not in viewer.get(url).content.decode()  # not offered
    viewer.post(url, post)
    assert status.get(message_id=waiting.message_id).status == Status.QUEUED
    operator = client("view_messagestatus", "change_messagestatus")
    page = operator.post(url, post, follow=True).content.decode()
    assert "1 send(s) cancelled; 0 already being sent or sent; 1 no longer queued." in page
    record = status.get(message_id=waiting.message_id)
    assert record.status == Status.CANCELLED
    assert record.last_error.startswith("cancelled in the admin by ops-")
    assert sendlog.cancelled(waiting.message_id) == record.last_error
    assert status.get(message_id=done.message_id).status == Status.SENT
