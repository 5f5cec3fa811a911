"""The reputation guard end to end: a real ``celery worker`` on a private Redis sends bulk mail
to the project's SES emulator, signed SNS bounce events for it reach the webhook until the
bulk lane's bounce rate crosses its threshold, then a new bulk send waits (queued: neither
sent nor failed) while transactional mail goes out, until ``manage.py ses_reputation release
bulk`` lets it go."""

import dataclasses
import io
import uuid

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.core.management import call_command

from seacucumber import status, tasks
from seacucumber.models import MessageStatus
from seacucumber.payload import build_sends
from seacucumber.shared import quota, reputation, store
from tests.conftest import SENDER, point_app_at
from tests.fixtures_events import bounce, notification
from tests.test_events_e2e import wait_until


def state(message_id):
    found = MessageStatus.objects.filter(message_id=message_id).first()
    return found.status if found else None


def queue_bulk(queue, subject, to):
    """One send on the bulk lane, recorded and queued as the backend does (the payload
    carries ``lane``; the backend option for it is the lanes' work)."""
    message = EmailMessage(subject, "Body", SENDER, [to])
    [outbound] = build_sends(message)
    outbound = dataclasses.replace(outbound, options={**outbound.options, "lane": "bulk"})
    status.record_queued([(message, [outbound])])
    tasks.publish(outbound.to_json(), outbound.message_id, queue)
    return outbound.message_id


@pytest.fixture
def guarded(redis_url, settings, ses_emulator, webhook):
    """This process and its worker on a Redis broker (db 11) with a queue and shared state
    (db 12, a prefix) of their own; status tracking on; the guard judging from 5 sends."""
    queue = f"sc-rep-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/12"
    settings.SEACUCUMBER_REDIS_PREFIX = queue
    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_REPUTATION_MIN_SENDS = 5
    quota.forget()
    point_app_at(f"{redis_url}/11", None)
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CELERY_BROKER_URL": f"{redis_url}/11",
        "SEACUCUMBER_ENDPOINT_URL": ses_emulator.url,
        "SEACUCUMBER_REDIS_URL": f"{redis_url}/12",
        "SEACUCUMBER_REDIS_PREFIX": queue,
        "SEACUCUMBER_TRACK_STATUS": "1",
        "SEACUCUMBER_REPUTATION_RETRY": "0.5",
    }
    try:
        yield env, queue, webhook
    finally:
        point_app_at("memory://", None)


@pytest.mark.django_db(transaction=True)
def test_bounces_hold_bulk_mail_transactional_goes_on_release_sends_it(
        guarded, start_worker, ses_emulator):
    env, queue, post = guarded
    worker = start_worker(env, queues=queue, concurrency=2)
    first = [queue_bulk(queue, f"Bulk {n}", f"b{n}@example.com") for n in range(5)]
    wait_until(lambda: all(state(m) == "sent" for m in first), what="bulk sent")
    counts = reputation.window_counts("lane", "bulk")[0]
    assert counts.sent == 5  # the worker counted what SES accepted, per recipient

    # one permanent bounce of five (20%) for a bulk send, tagged as the lanes tag every send
    ses_id = MessageStatus.objects.get(message_id=first[0]).ses_message_id
    event = bounce(ses_id, "b0@example.com")
    event["mail"]["tags"] = {"seacucumber-lane": ["bulk"], "seacucumber-id": [first[0]]}
    assert post(notification(event)).status_code == 200
    hold = reputation.read_hold(store.redis_client().get(reputation.hold_key_of("bulk")))
    assert (hold.lane, hold.rate, hold.value, hold.sample) == ("bulk", "bounce", 0.2, 5)

    waiting = queue_bulk(queue, "Bulk held", "held@example.com")
    mail.send_mail("Password reset", "Body", SENDER, ["reset@example.com"])  # transactional
    reset = MessageStatus.objects.get(subject="Password reset").message_id
    wait_until(lambda: state(reset) == "sent", what="transactional sent")
    wait_until(lambda: worker.log().count(f"message {waiting} held") >= 3,
               what="the held send looked again three times")
    assert state(waiting) == "queued"  # neither sent nor failed
    assert [m.destinations for m in ses_emulator.messages()][5:] == [["reset@example.com"]]

    out = io.StringIO()
    call_command("ses_reputation", "release", "bulk", stdout=out)
    assert "lane 'bulk' released" in out.getvalue()
    wait_until(lambda: state(waiting) == "sent", what="the held send sent after release")
    assert sorted(m.destinations[0] for m in ses_emulator.messages()[5:]) == [
        "held@example.com", "reset@example.com"]
    # re-armed: the bounce that held the lane no longer judges it
    assert reputation.window_counts("lane", "bulk")[1] == reputation.Counts(sent=1)
