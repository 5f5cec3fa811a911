"""The reputation guard on a private Redis: counters per lane and configuration set in hourly
buckets over a rolling window, minimum samples, thresholds, hold and release (re-armed), the
webhook counting SES events by their tags, the worker holding a held lane's send (SES never
called) while other lanes go on, and the operator's commands."""

import dataclasses
import io
import json
import logging
import uuid

import pytest
from celery.exceptions import Retry
from django.core.mail import EmailMessage
from django.core.management import call_command

from seacucumber import signals
from seacucumber.payload import OutboundSend, build_sends
from seacucumber.shared import quota, reputation, store
from seacucumber.tasks import send_email
from tests.conftest import SENDER
from tests.fixtures_events import bounce, notification, ses_event

T0 = 1_800_000_000.0  # a fixed Unix time, at the start of an hour bucket
HOUR = 3600.0


@pytest.fixture
def guard(settings, redis_url):
    """The guard on a private Redis under a prefix of the test's own, small samples."""
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/5"
    settings.SEACUCUMBER_REDIS_PREFIX = f"rep-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_REPUTATION_MIN_SENDS = 100
    settings.SEACUCUMBER_REPUTATION_MIN_COMPLAINT_SENDS = 1000
    quota.forget()
    return settings


@pytest.fixture
def holds():
    """Every reputation_hold / reputation_released signal sent during the test."""
    found = []

    def on_hold(sender, lane, hold, **_):
        found.append(("hold", lane, hold))

    def on_release(sender, lane, hold, **_):
        found.append(("released", lane, hold))

    signals.reputation_hold.connect(on_hold)
    signals.reputation_released.connect(on_release)
    yield found
    signals.reputation_hold.disconnect(on_hold)
    signals.reputation_released.disconnect(on_release)


def sent(lane, recipients, now=T0, configuration_set=None):
    reputation.count("sent", lane, configuration_set, recipients, now=now)


def held(lane):
    return reputation.read_hold(store.redis_client().get(reputation.hold_key_of(lane)), lane)


def test_counts_per_lane_and_configuration_set_in_expiring_hourly_buckets(guard):
    assert reputation.bucket_key("lane", "bulk", 1).startswith(f"{guard.SEACUCUMBER_REDIS_PREFIX}:")
    sent("bulk", 30, configuration_set="news")
    sent("bulk", 20, now=T0 + 2 * HOUR)
    sent("transactional", 7)
    reputation.record_event("bounced", "bulk", "news", 2, now=T0 + 2 * HOUR)
    reputation.record_event("complained", "bulk", None, 1, now=T0 + 3 * HOUR)
    total, judged = reputation.window_counts("lane", "bulk", now=T0 + 3 * HOUR)
    assert total == judged == reputation.Counts(sent=50, bounced=2, complained=1)
    assert reputation.window_counts("cs", "news", now=T0 + 3 * HOUR)[0] == reputation.Counts(
        sent=30, bounced=2)
    assert reputation.window_counts("lane", "transactional", now=T0)[0].sent == 7
    ttl = store.redis_client().ttl(reputation.bucket_key("lane", "bulk", int(T0 // HOUR)))
    assert 24 * HOUR < ttl <= 25 * HOUR  # kept one window and a bucket, then gone
    # the window rolls: 24 hours after the first bucket, only the later ones count
    assert reputation.window_counts("lane", "bulk", now=T0 + 24 * HOUR)[0] == reputation.Counts(
        sent=20, bounced=2, complained=1)
    assert reputation.window_counts("lane", "bulk", now=T0 + 27 * HOUR)[0] == reputation.Counts()


def test_counted_gives_the_settling_script_both_scopes_and_writes_nothing(guard):
    bucket = int(T0 // HOUR)
    keys, args = reputation.counted("sent", "bulk", "news", 3, now=T0)
    assert keys == [reputation.bucket_key("lane", "bulk", bucket), reputation.names_key("lane"),
                    reputation.bucket_key("cs", "news", bucket), reputation.names_key("cs")]
    assert args == ["sent", 3, reputation.window_seconds() + HOUR, "bulk", "news"]
    assert reputation.window_counts("lane", "bulk", now=T0)[0].sent == 0  # nothing sent yet
    reputation.count("sent", "bulk", "news", 3, now=T0)
    assert reputation.window_counts("lane", "bulk", now=T0)[0].sent == 3
    assert reputation.window_counts("cs", "news", now=T0)[0].sent == 3


def test_guard_off_counts_nothing_and_holds_nothing(guard):
    guard.SEACUCUMBER_REPUTATION_GUARD = False
    assert reputation.counted("sent", "bulk", None, 500, now=T0) == ([], [])
    assert reputation.record_event("bounced", "bulk", None, 400, now=T0) is None
    assert reputation.hold_key("bulk") is None
    guard.SEACUCUMBER_REPUTATION_GUARD = True
    guard.SEACUCUMBER_REDIS_URL = None  # no shared state: off too
    assert not reputation.enabled() and reputation.hold_key("bulk") is None


def test_no_rate_is_judged_below_the_minimum_sample(guard, holds):
    sent("bulk", 99)
    assert reputation.record_event("bounced", "bulk", None, 50, now=T0) is None
    assert held("bulk") is None and holds == []
    sent("bulk", 1)  # 100 sent: 50% bounced now counts
    hold = reputation.judge("bulk", now=T0 + 1)
    assert (hold.lane, hold.rate, hold.value, hold.threshold, hold.sample) == (
        "bulk", "bounce", 0.5, 0.04, 100)
    assert held("bulk") == hold


def test_thresholds_are_crossed_only_above_them(guard, holds):
    sent("bulk", 1000)
    assert reputation.record_event("bounced", "bulk", None, 40, now=T0) is None  # 4%: at it
    assert held("bulk") is None
    hold = reputation.record_event("complained", "bulk", None, 1, now=T0)  # 0.1% > 0.08%
    assert hold is not None and hold.rate == "complaint" and hold.value == pytest.approx(0.001)
    assert held("bulk") == hold
    assert [kind for kind, *_ in holds] == ["hold"]


def test_complaints_wait_for_their_own_larger_sample(guard):
    sent("bulk", 999)
    assert reputation.record_event("complained", "bulk", None, 5, now=T0) is None
    assert held("bulk") is None  # 0.5% complaints, but on fewer than 1000 sent
    guard.SEACUCUMBER_REPUTATION_BOUNCE_THRESHOLD = 0.5
    assert reputation.record_event("bounced", "bulk", None, 10, now=T0) is None
    sent("bulk", 1)
    assert reputation.judge("bulk", now=T0).rate == "complaint"


def test_only_guarded_lanes_are_held(guard, holds):
    sent("transactional", 200)
    assert reputation.record_event("bounced", "transactional", None, 100, now=T0) is None
    assert reputation.hold_key("transactional") is None  # the worker reads nothing for it
    assert held("transactional") is None and holds == []
    guard.SEACUCUMBER_REPUTATION_GUARD_LANES = ["bulk", "marketing"]
    sent("marketing", 200)
    assert reputation.record_event("bounced", "marketing", None, 9, now=T0).rate == "bounce"
    assert reputation.hold_key("marketing") == reputation.hold_key_of("marketing")


def test_a_hold_is_said_once_loudly_and_kept_until_released(guard, holds, caplog):
    sent("bulk", 200)
    with caplog.at_level(logging.ERROR, logger="seacucumber.shared.reputation"):
        first = reputation.record_event("bounced", "bulk", None, 10, now=T0)
        assert reputation.record_event("bounced", "bulk", None, 10, now=T0 + 60) is None
    assert first is not None and held("bulk") == first
    assert holds == [("hold", "bulk", first)]
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert ("'bulk' held: bounce rate 5.000% is above the threshold 4.000% (200 recipients"
            in record.getMessage())
    assert store.redis_client().ttl(reputation.hold_key_of("bulk")) == -1  # no expiry
    assert json.loads(store.redis_client().get(reputation.hold_key_of("bulk"))) == {
        "lane": "bulk", "rate": "bounce", "value": 0.05, "threshold": 0.04, "sample": 200,
        "at": T0}


def test_release_re_arms_on_what_comes_after_it(guard, holds):
    sent("bulk", 200)
    hold = reputation.record_event("bounced", "bulk", None, 20, now=T0 + 10)
    assert reputation.release("bulk", now=T0 + 20) == hold
    assert held("bulk") is None
    assert holds[-1] == ("released", "bulk", hold)
    # the old numbers stay in the window (and in the report) but no longer judge the lane
    total, judged = reputation.window_counts("lane", "bulk", now=T0 + 30)
    assert total == reputation.Counts(sent=200, bounced=20)
    assert judged == reputation.Counts()
    assert reputation.record_event("bounced", "bulk", None, 1, now=T0 + 30) is None
    # fresh sends in the same hour and the next: judged on those alone
    sent("bulk", 150, now=T0 + 40)
    sent("bulk", 50, now=T0 + HOUR)
    assert reputation.window_counts("lane", "bulk", now=T0 + HOUR)[1] == reputation.Counts(
        sent=200, bounced=1)
    assert reputation.judge("bulk", now=T0 + HOUR) is None  # 0.5%: fine
    again = reputation.record_event("bounced", "bulk", None, 8, now=T0 + HOUR)
    assert (again.rate, again.value, again.sample) == ("bounce", 9 / 200, 200)
    assert reputation.release("transactional", now=T0) is None  # not held: nothing to end


@pytest.mark.parametrize(("value", "expected"), [
    (None, None),
    (b'{"lane": "bulk", "rate": "bounce", "value": 0.1, "threshold": 0.04, "sample": 300, '
     b'"at": 5}', reputation.Hold("bulk", "bounce", 0.1, 0.04, 300, 5.0)),
    ("held by hand", reputation.Hold("bulk", "unknown", 0.0, 0.0, 0, 0.0)),  # still held
])
def test_read_hold_is_a_pure_reading_of_the_key(value, expected):
    assert reputation.read_hold(value, "bulk") == expected


def test_send_lane_defaults_to_transactional():
    from seacucumber.tasks import _lane

    [outbound] = build_sends(EmailMessage("Hi", "Body", SENDER, ["a@example.com"]))
    assert _lane(outbound).name == "transactional"
    bulk = dataclasses.replace(outbound, options={**outbound.options, "lane": "bulk"})
    assert _lane(OutboundSend.from_json(bulk.to_json())).name == "bulk"


@pytest.mark.parametrize(("name", "value", "says"), [
    ("SEACUCUMBER_REPUTATION_GUARD_LANES", "bulk", "a list of lane names"),
    ("SEACUCUMBER_REPUTATION_GUARD_LANES", ["bulk", "transactional"], "holding transactional"),
    ("SEACUCUMBER_REPUTATION_BOUNCE_THRESHOLD", 4, "a fraction, 0 to 1"),
    ("SEACUCUMBER_REPUTATION_COMPLAINT_THRESHOLD", "0.001", "a fraction, 0 to 1"),
    ("SEACUCUMBER_REPUTATION_MIN_SENDS", 0, "at least 1"),
    ("SEACUCUMBER_REPUTATION_MIN_COMPLAINT_SENDS", 12.5, "a whole number"),
    ("SEACUCUMBER_REPUTATION_WINDOW", 60, "at least 3600"),
    ("SEACUCUMBER_REPUTATION_RETRY", 0, "above 0"),
])
def test_bad_settings_are_a_system_check_error(settings, name, value, says):
    from django.core import checks

    assert not [m for m in checks.run_checks() if m.id == "seacucumber.E032"]
    setattr(settings, name, value)
    [error] = [m for m in checks.run_checks() if m.id == "seacucumber.E032"]
    assert error.msg.startswith(f"{name} = ") or name in error.msg
    assert says in error.msg


# --- the webhook counts events by their tags ------------------------------------------------

def tagged(event, lane=None, configuration_set=None):
    tags = {"seacucumber-id": ["abc"]}
    if lane:
        tags["seacucumber-lane"] = [lane]
    if configuration_set:
        tags["ses:configuration-set"] = [configuration_set]
    event["mail"]["tags"] = tags
    return event


@pytest.mark.django_db(transaction=True)
def test_webhook_counts_permanent_bounces_and_complaints_per_recipient(guard, webhook):
    counted = reputation.window_counts  # at the real time: events count when received
    permanent = notification(tagged(bounce("s-1", "a@example.com", "b@example.com"),
                                    "bulk", "news"))
    assert webhook(permanent).status_code == 200
    assert webhook(permanent).status_code == 200  # SNS redelivers: counted once
    soft = tagged(bounce("s-2", "c@example.com", bounce_type="Transient"), "bulk")
    assert webhook(notification(soft)).status_code == 200  # a soft bounce: not counted
    complaint = tagged(ses_event("Complaint", "s-3", complainedRecipients=[
        {"emailAddress": "d@example.com"}]), "bulk", "news")
    assert webhook(notification(complaint)).status_code == 200
    untagged = bounce("s-4", "e@example.com")  # identity notifications carry no tags
    assert webhook(notification(untagged)).status_code == 200
    assert webhook(notification(tagged(ses_event("Delivery", "s-5"), "bulk"))).status_code == 200
    assert counted("lane", "bulk")[0] == reputation.Counts(bounced=2, complained=1)
    assert counted("cs", "news")[0] == reputation.Counts(bounced=2, complained=1)
    assert counted("lane", "transactional")[0] == reputation.Counts(bounced=1)


@pytest.mark.django_db(transaction=True)
def test_webhook_holds_the_lane_once_its_rate_crosses(guard, webhook, holds):
    sent("bulk", 100, now=reputation.time.time())
    for n in range(4):
        event = tagged(bounce(f"s-{n}", f"{n}@example.com"), "bulk")
        assert webhook(notification(event)).status_code == 200
    assert held("bulk") is None  # 4%: not above
    assert webhook(notification(tagged(bounce("s-9", "9@example.com"), "bulk"))).status_code \
        == 200
    assert [(kind, lane, hold.rate, hold.sample) for kind, lane, hold in holds] == [
        ("hold", "bulk", "bounce", 100)]


@pytest.mark.django_db(transaction=True)
def test_webhook_answers_even_when_the_shared_redis_is_down(guard, webhook, settings):
    settings.SEACUCUMBER_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens
    event = tagged(bounce("s-1", "a@example.com"), "bulk")
    assert webhook(notification(event)).status_code == 200  # the count is lost, not the event


# --- the worker: a held lane waits, the others go on ---------------------------------------

def bulk_send(n=0, lane="bulk"):
    [outbound] = build_sends(EmailMessage(f"Hi {n}", "Body", SENDER, [f"{n}@example.com"]))
    return dataclasses.replace(outbound, options={**outbound.options, "lane": lane})


@pytest.mark.django_db
def test_worker_holds_a_held_lane_and_counts_what_it_sends(guard, ses_emulator):
    assert send_email(bulk_send(1).to_json())
    assert send_email(bulk_send(2, lane="transactional").to_json())
    now = reputation.time.time()
    assert reputation.window_counts("lane", "bulk", now)[0].sent == 1
    assert reputation.window_counts("lane", "transactional", now)[0].sent == 1
    store.redis_client().set(reputation.hold_key_of("bulk"), reputation.Hold(
        "bulk", "bounce", 0.1, 0.04, 300, now).to_json())
    with pytest.raises(Retry):  # called directly: the re-queue is raised
        send_email(bulk_send(3).to_json())
    assert send_email(bulk_send(4, lane="transactional").to_json())
    assert len(ses_emulator.messages()) == 3  # the held send never reached SES
    assert not store.redis_client().exists(store.key("sent", bulk_send(3).message_id))


@pytest.mark.django_db
def test_a_held_send_never_expires_and_its_wait_extends_its_lifetime(guard, ses_emulator):
    """Called directly, the task raises its retry: a held send past its lifetime still waits
    (Retry, not a failure); once released, the time it was held (``held``) keeps a transient
    SES error from failing it as expired."""
    from seacucumber.exceptions import PermanentSendError, TransientSendError

    guard.SEACUCUMBER_MESSAGE_LIFETIME = 3600.0
    guard.SEACUCUMBER_RETRY_BASE_DELAY = 1.0
    old = bulk_send(5).to_json()
    old["created"] = reputation.time.time() - 2 * 86400  # two days held: long past 1 h
    store.redis_client().set(reputation.hold_key_of("bulk"), "held by hand")
    with pytest.raises(Retry):
        send_email(old)
    reputation.release("bulk")
    ses_emulator.configure(fail_5xx=1.0)
    with pytest.raises(TransientSendError):  # retried: its two days held count on top
        send_email(old, held=2 * 86400.0)
    with pytest.raises(PermanentSendError):  # without them it would have expired
        send_email(old)
    assert ses_emulator.messages() == []


@pytest.mark.django_db
def test_a_held_claim_checked_send_keeps_its_stored_message(guard, ses_emulator):
    """A hold never expires, a claim-checked message in Redis does: each look at the held
    lane starts the stored message's TTL again, so it outlives the hold."""
    from seacucumber.shared import claimcheck

    guard.SEACUCUMBER_CLAIM_CHECK_STORE = "redis"
    guard.SEACUCUMBER_CLAIM_CHECK_THRESHOLD = 100
    guard.SEACUCUMBER_CLAIM_CHECK_TTL = 100
    [[send]] = claimcheck.check_in([[bulk_send(6)]], timeout=5.0)
    payload = send.to_json()
    key = payload["claim"]["key"]
    assert 0 < store.redis_client().ttl(key) <= 100
    store.redis_client().set(reputation.hold_key_of("bulk"), "held by hand")
    guard.SEACUCUMBER_CLAIM_CHECK_TTL = 5000
    with pytest.raises(Retry):
        send_email(payload)
    assert store.redis_client().ttl(key) > 100
    reputation.release("bulk")
    assert send_email.apply(args=[payload]).successful()  # released: sent, copy deleted
    assert not store.redis_client().exists(key)
    assert len(ses_emulator.messages()) == 1


# --- the operator's commands --------------------------------------------------------------------

def run(*args):
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_status_and_release_commands(guard, holds):
    now = reputation.time.time()
    sent("bulk", 200, now=now, configuration_set="news")
    sent("transactional", 50, now=now)
    reputation.record_event("bounced", "bulk", "news", 30, now=now)
    data = json.loads(run("ses_reputation", "status", "--json"))
    bulk = data["lanes"]["bulk"]
    assert (bulk["sent"], bulk["bounced"], bulk["bounce_rate"]) == (200, 30, 0.15)
    assert bulk["hold"]["rate"] == "bounce" and bulk["guarded"]
    assert data["lanes"]["transactional"]["guarded"] is False
    assert data["configuration_sets"]["news"]["bounced"] == 30
    text = run("ses_reputation", "status")
    assert "HELD: bounce rate 15.000% > 4.000% on 200 sent" in text
    assert "not guarded" in text and "set news" in text
    assert "released (held for its bounce rate 15.000% above 4.000%)" in run(
        "ses_reputation", "release", "bulk")
    assert held("bulk") is None and holds[-1][0] == "released"
    assert "since its release" in run("ses_reputation", "status")
    assert "was not held" in run("ses_reputation", "release", "bulk")


def test_commands_without_a_shared_redis_say_so(settings):
    settings.SEACUCUMBER_REDIS_URL = None
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="no shared-state Redis"):
        run("ses_reputation", "status")


def test_ses_usage_shows_the_guard(guard, moto_ses):
    now = reputation.time.time()
    sent("bulk", 300, now=now)
    reputation.record_event("complained", "bulk", None, 2, now=now)
    guard.SEACUCUMBER_REPUTATION_MIN_COMPLAINT_SENDS = 300
    reputation.judge("bulk")
    data = json.loads(run("ses_usage", "--json"))["reputation"]
    assert data["lanes"]["bulk"]["hold"]["rate"] == "complaint"
    assert data["thresholds"] == {"bounce": 0.04, "complaint": 0.0008}
    text = run("ses_usage")
    assert "Reputation guard (on; last 24 h; holds bulk above 4.00% bounces" in text
    assert "HELD: complaint rate 0.667% > 0.080% on 300 sent" in text


def test_ses_usage_without_redis_has_no_guard_section(moto_ses, settings):
    settings.SEACUCUMBER_REDIS_URL = "redis://127.0.0.1:1/0"
    assert "Reputation guard" not in run("ses_usage")


@pytest.mark.django_db
def test_the_dashboard_says_which_lane_is_held(guard, ses_emulator):
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    client = Client()
    user = User.objects.create_user("ops", password="pw", is_staff=True)  # noqa: S106
    user.user_permissions.set(Permission.objects.filter(  # what the dashboard needs
        codename__in=("view_messagestatus", "view_suppressedaddress")))
    client.force_login(user)
    url = "/admin/seacucumber/dashboard/"
    assert "is held by the reputation guard" not in client.get(url).content.decode()
    sent("bulk", 200)
    reputation.record_event("bounced", "bulk", None, 12, now=T0)
    page = client.get(url).content.decode()
    assert ("Lane bulk is held by the reputation guard: bounce rate 6.000% is above the "
            "threshold 4.000% (200 recipients sent in the window)") in page
    assert "manage.py ses_reputation release bulk" in page
