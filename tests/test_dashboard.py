"""The admin dashboard and the send timeline through Django's test client: who may see them
(staff with the view permissions of the models they show),
and what they show from status records, stored statistics, SES events posted to the webhook,
the shared state (Redis) and SES (the emulator)."""

import datetime as dt
import re
import time
import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.core.mail import EmailMessage
from django.test import Client
from django.utils import timezone

from seacucumber import status as status_records
from seacucumber.dashboard import data, timeline
from seacucumber.models import DailyStatistics, MessageStatus, SendEvent, SuppressedAddress
from seacucumber.shared import buckets, quota, ratelimit, store
from tests.conftest import SENDER
from tests.fixtures_events import bounce, notification, ses_event

URL = "/admin/seacucumber/dashboard/"
TIMELINE = URL + "timeline/"


def staff_client(*permissions: str) -> Client:
    """A client logged in as a new staff user holding ``permissions`` (codenames)."""
    user = User.objects.create_user(f"ops-{uuid.uuid4().hex[:6]}", password="pw",  # noqa: S106
                                    is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="seacucumber",
                                                        codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client


VIEW = ("view_messagestatus", "view_suppressedaddress")


@pytest.fixture
def staff(db) -> Client:
    """Staff who may view status records and the suppression list, as the pages need."""
    return staff_client(*VIEW)


@pytest.fixture
def account(settings, redis_url, ses_emulator):
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/8"
    settings.SEACUCUMBER_REDIS_PREFIX = f"d-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_TRACK_STATUS = True
    quota.forget()
    return ses_emulator


def this_hour() -> dt.datetime:
    return timezone.now().astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def record(n: int, status: str, hours_ago: float, recipients: str = "", **fields
           ) -> MessageStatus:
    """A record queued ``hours_ago`` whole hours before the start of this hour (plus a
    second: the same hourly bucket however long the test runs), with its recipients' rows
    as ``status.record_queued`` writes them."""
    at = this_hour() - dt.timedelta(hours=hours_ago) + dt.timedelta(seconds=1)
    recipients = recipients or f"r{n}@example.com"
    found = MessageStatus.objects.create(
        message_id=f"m{n}", sender="sender@example.com", recipients=recipients,
        subject=f"S{n}", status=status, queued_at=at, updated_at=at, **fields)
    status_records.record_recipients([(found.message_id, recipients.split())])
    return found


@pytest.mark.django_db
@pytest.mark.parametrize("url", [URL, TIMELINE + "?q=a@example.com"])
def test_only_staff_get_in_others_go_to_the_admin_login(url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")
    user = User.objects.create_user("plain", password="pw")  # noqa: S106
    client = Client()
    client.force_login(user)
    assert client.get(url)["Location"].startswith("/admin/login/?next=")


@pytest.mark.django_db
def test_the_admin_index_links_to_the_dashboard(staff):
    page = staff.get("/admin/").content.decode()
    assert f'href="{URL}"' in page


PAGES = [URL, TIMELINE + "?q=victim@example.com", TIMELINE + "?q=m1", TIMELINE]


@pytest.mark.django_db
@pytest.mark.parametrize("permissions", [(), ("view_messagestatus",),
                                         ("view_suppressedaddress",)])
def test_staff_without_the_view_permissions_get_403_as_on_the_changelists(permissions):
    """The finding: staff with no permission got 403 on the status records' changelist but
    200 on the dashboard and on the timeline of any address."""
    record(1, "failed", 1, last_error="MessageRejected: secret diagnostics")
    MessageStatus.objects.filter(message_id="m1").update(recipients="victim@example.com")
    client = staff_client(*permissions)
    if "view_messagestatus" not in permissions:
        assert client.get("/admin/seacucumber/messagestatus/").status_code == 403
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"victim@example.com" not in response.content
        assert b"secret diagnostics" not in response.content
    assert f'href="{URL}"' not in client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_staff_with_the_view_permissions_and_superusers_get_in(account):
    record(1, "failed", 1, last_error="MessageRejected: not verified")
    MessageStatus.objects.filter(message_id="m1").update(recipients="victim@example.com")
    superuser = Client()
    superuser.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    for client in (staff_client(*VIEW), superuser):
        for url in PAGES:
            assert client.get(url).status_code == 200, url
        assert "victim@example.com" in client.get(TIMELINE, {"q": "m1"}).content.decode()
        assert f'href="{URL}"' in client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_a_query_longer_than_an_address_is_refused_with_a_message(staff):
    """The finding: a 50,000-character ``q`` made SQLite fail (a LIKE pattern too long): 500."""
    record(1, "sent", 1)
    for query in ("a" * 50_000 + "@example.com", "x" * 255):
        response = staff.get(TIMELINE, {"q": query})
        assert response.status_code == 200
        page = response.content.decode()
        assert f"Too long: {len(query)} characters; an address or id is at most 254" in page
        assert "No send found" not in page and len(page) < 40_000
    longest = "a" * 242 + "@example.com"  # 254 characters: looked up
    page = staff.get(TIMELINE, {"q": longest}).content.decode()
    assert "Too long" not in page and "No send found" in page
    with pytest.raises(ValueError, match="at most 254"):
        timeline.lookup("x" * 255)


@pytest.mark.django_db
def test_the_dashboard_shows_the_account(staff, account):
    for n, (status, hours) in enumerate([("sent", 1), ("delivered", 1), ("bounced", 2),
                                         ("failed", 3), ("queued", 0), ("sent", 60)]):
        record(n, status, hours, last_error="MessageRejected: not verified"
               if status == "failed" else "")
    today = dt.datetime.now(dt.UTC).date()
    DailyStatistics.objects.create(date=today - dt.timedelta(days=1), delivery_attempts=1000,
                                   bounces=60, complaints=2)
    DailyStatistics.objects.create(date=today, delivery_attempts=200, bounces=1)
    SuppressedAddress.objects.create(address="gone@example.com", reason="bounce")
    ratelimit.limiter().hold(120)

    page = staff.get(URL).content.decode()
    assert "Sends are held: the SES daily quota is used up" in page
    assert re.search(r'id="sc-suppressed">.*?<p class="sc-big">1</p>', page, re.S)
    assert "MessageRejected: not verified" in page
    assert "sent 2" in page and "bounced 1" in page and "failed 1" in page  # 48 h only
    assert page.count('class="sc-bar ') == 4  # one bar segment per (hour, outcome) with sends
    assert "1,000 <small>recipients/s in force</small>" in page
    hourly, bounces, complaints = re.findall(r'<svg class="sc-chart.*?</svg>', page, re.S)
    assert "SES review 5%" in bounces and "SES pause 10%" in bounces
    assert "SES review 0.1%" in complaints and "SES pause 0.5%" in complaints
    assert bounces.count('class="sc-point"') == 2 and "6.000%" in bounces
    assert "24-hour quota" in page and "of 50,000" in page  # the emulator's account


@pytest.mark.django_db
def test_the_send_rate_card_has_a_row_per_ses_account_and_region(staff, account, settings):
    settings.SEACUCUMBER_TRUSTED_REGIONS = ["eu-west-1"]
    settings.SEACUCUMBER_QUOTA_HOLD = 300
    page = staff.get(URL).content.decode()
    assert 'id="sc-buckets"' not in page  # one bucket: the card's own figures say it all
    other = buckets.Bucket.of({"region": "eu-west-1"})
    buckets.register(other)  # as a worker does when it first books that bucket's rate
    ratelimit.quota_exhausted(other)
    page = staff.get(URL).content.decode()
    rows = dict(re.findall(r'<tr class="sc-bucket[^"]*" data-bucket="([^"]+)">(.*?)</tr>',
                           page, re.S))
    assert list(rows) == ["default", "eu-west-1"]
    assert "held" in rows["eu-west-1"] and "held" not in rows["default"]
    assert "1,000" in rows["default"]  # tests.settings' SEACUCUMBER_RATE_LIMIT


@pytest.mark.django_db
def test_sends_per_hour_counts_by_outcome(account):
    record(1, "delivered", 0)
    record(2, "sent", 0)
    record(3, "complained", 5)
    record(4, "suppressed", 47)
    record(5, "sent", 48)  # outside the 48 hours
    hours = data.sends_per_hour()
    assert len(hours) == data.HOURS
    assert hours[-1].counts["sent"] == 2
    assert hours[-6].counts["complained"] == 1
    assert sum(h.total for h in hours) == 4


@pytest.mark.django_db(transaction=True)
def test_the_timeline_of_an_address_shows_each_step_and_ses_reasons(staff, account, webhook):
    sent_at = timezone.now()
    record(1, "sent", 1, "a@example.com\nb@example.com", ses_message_id="ses-1",
           sent_at=sent_at)
    record(2, "failed", 2, "A@example.com",
           last_error="MessageRejected: Email address is not verified.")
    record(3, "sent", 1, "ba@example.com\na@example.com.au")  # neither is a@example.com
    assert webhook(notification(ses_event("Delivery", "ses-1", smtpResponse="250 2.0.0 OK",
                                          timestamp="2026-11-30T10:00:00.000Z"))).status_code == 200
    complaint = ses_event("Complaint", "ses-1", complaintFeedbackType="abuse",
                          timestamp="2026-11-30T11:00:00.000Z",
                          complainedRecipients=[{"emailAddress": "a@example.com"}])
    assert webhook(notification(complaint)).status_code == 200
    assert SendEvent.objects.count() == 2

    page = staff.get(TIMELINE, {"q": "a@example.com"}).content.decode()
    assert "2 sends for <strong>a@example.com</strong>" in page
    steps = re.findall(r'<li class="sc-step sc-step-([a-z-]+)">', page)
    assert steps == ["queued", "sent", "delivery", "complaint", "queued", "failed"]
    assert "250 2.0.0 OK" in page and "feedback: abuse" in page
    assert "MessageRejected: Email address is not verified." in page
    assert "is on the suppression list" not in page

    by_id = staff.get(TIMELINE, {"q": "ses-1"}).content.decode()
    assert "1 send for <strong>ses-1</strong>" in by_id
    assert staff.get(TIMELINE, {"q": "m1"}).content.decode().count('class="module sc-send"') == 1
    none = staff.get(TIMELINE, {"q": "nobody@example.com"}).content.decode()
    assert "No send found" in none


@pytest.mark.django_db(transaction=True)
def test_a_suppressed_address_says_so_with_the_bounce(staff, account, webhook, settings):
    settings.SEACUCUMBER_SUPPRESS_ON_BOUNCE = True
    record(1, "sent", 1, "x@example.com", ses_message_id="ses-9", sent_at=timezone.now())
    assert webhook(notification(bounce("ses-9", "x@example.com"))).status_code == 200
    page = staff.get(TIMELINE, {"q": "X@example.com"}).content.decode()
    assert "x@example.com is on the suppression list (bounce" in page
    assert "Permanent/General: smtp; 550 5.1.1 unknown" in page
    assert re.findall(r'sc-step-([a-z-]+)"', page) == ["queued", "sent", "bounce"]


@pytest.mark.django_db
def test_the_page_still_renders_with_neither_redis_nor_ses(staff, settings):
    from seacucumber.testing.processes import free_port

    settings.SEACUCUMBER_REDIS_URL = None
    settings.SEACUCUMBER_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens
    record(1, "sent", 1)
    page = staff.get(URL).content.decode()
    assert re.search(r'id="sc-quota">.*?unknown: .*?127\.0\.0\.1', page, re.S)
    assert "no shared rate (no Redis configured" in page
    assert page.count('class="sc-bar ') == 1
    assert "No daily statistics stored yet" in page


@pytest.mark.django_db
def test_cleanup_drops_old_timeline_events_with_the_records():
    from seacucumber import status

    now = timezone.now()
    SendEvent.objects.create(ses_message_id="old", kind="Delivery",
                             at=now - dt.timedelta(days=40))
    SendEvent.objects.create(ses_message_id="new", kind="Delivery", at=now)
    status.cleanup(30)
    assert list(SendEvent.objects.values_list("ses_message_id", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_records_written_before_it_their_recipient_rows():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("seacucumber", "0004_inbound_mail")], [("seacucumber",
                                                             "0005_send_recipients")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps.get_model("seacucumber",
                                                                  "MessageStatus")
        now = timezone.now()
        old.objects.create(message_id="old-1", sender="s@example.com", queued_at=now,
                           updated_at=now, recipients="A@example.com\nb@example.com",
                           suppressed_recipients="b@example.com")
        old.objects.create(message_id="old-2", sender="s@example.com", queued_at=now,
                           updated_at=now, recipients="a@example.com")
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)  # the migration under test, then the later ones
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    def found(address: str) -> set[str]:
        return {send.record.message_id for send in timeline.lookup(address).sends}

    assert found("a@EXAMPLE.com") == {"old-1", "old-2"}
    assert found("b@example.com") == {"old-1"}


@pytest.mark.django_db
def test_headline_rates_are_numbers_coloured_against_ses_levels(staff, account):
    """The finding: a day's complaint rate of 0.717%, above SES's 0.5% pause line, showed only
    as a dot on a chart."""
    today = dt.datetime.now(dt.UTC).date()
    DailyStatistics.objects.create(date=today - dt.timedelta(days=1), delivery_attempts=1000,
                                   bounces=1, complaints=0)
    DailyStatistics.objects.create(date=today, delivery_attempts=13_947, bounces=837,
                                   complaints=100)  # 6.0% and 0.717%
    page = staff.get(URL).content.decode()
    bounce = re.search(r'<div class="sc-card sc-headline ([^"]+)" id="sc-bounce-rate">(.*?)</div>',
                       page, re.S)
    complaint = re.search(r'<div class="sc-card sc-headline ([^"]+)" id="sc-complaint-rate">'
                          r'(.*?)</div>', page, re.S)
    assert bounce and complaint
    assert bounce.group(1) == "sc-level-review" and ">6%</p>" in bounce.group(2)
    assert "above SES's review level 5%" in bounce.group(2)
    assert complaint.group(1) == "sc-level-at_risk" and ">0.717%</p>" in complaint.group(2)
    assert "above SES's pause level 0.5%" in complaint.group(2)
    assert data.percent(0.00717) == "0.717%" and data.percent(None) == "-"


@pytest.mark.django_db
def test_the_lanes_panel_shows_each_lane_its_counts_rates_and_hold(staff, account, settings):
    from seacucumber.operations import metrics
    from seacucumber.shared import reputation, store

    settings.SEACUCUMBER_REPUTATION_GUARD = True
    settings.SEACUCUMBER_REPUTATION_GUARD_LANES = ["bulk"]
    metrics.count("sends", "sent", "bulk", amount=4)
    metrics.count("recipients", "sent", "bulk", amount=150)
    metrics.count("throttles", "transactional", amount=2)
    metrics.count("retries", "transactional", amount=3)
    now = time.time()
    reputation.count("sent", "bulk", None, 1000, now)
    reputation.record_event("complained", "bulk", None, 7, now)
    hold = reputation.Hold("bulk", "complaint", 0.007, 0.005, 1000, now)
    store.redis_client().set(reputation.hold_key_of("bulk"), hold.to_json())

    page = staff.get(URL).content.decode()
    rows = {name: row for name, row in re.findall(
        r'<tr class="sc-lane[^"]*" data-lane="([^"]+)">(.*?)</tr>', page, re.S)}
    assert list(rows) == ["transactional", "bulk"]  # priority order
    cells = {name: re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for name, row in rows.items()}
    assert cells["bulk"][1:6] == ["4", "150", "0", "0", "0"]
    assert cells["transactional"][4:6] == ["2", "3"]
    assert cells["bulk"][7] == "0.7%"
    assert cells["bulk"][8].startswith("held: complaint rate 0.700% is above the threshold")
    assert cells["transactional"][8] == "not guarded"
    assert 'class="sc-lane sc-held" data-lane="bulk"' in page
    assert "2 throttled, 3 retried" in page


@pytest.mark.django_db
def test_the_message_list_shows_lane_and_subject_and_filters_by_lane_status_and_sender(
        staff, settings, eager, moto_ses):
    """Records carry their send's lane and recipients from ``send_messages``: the message
    list filters by lane (the declared lanes as choices), status and sender (the latest
    records' senders as choices), and the timeline finds each recipient."""
    settings.SEACUCUMBER_TRACK_STATUS = True
    moto_ses.verify("news@example.com")
    mail.get_connection().send_messages([
        EmailMessage("Receipt 1", "B", SENDER, ["One@example.com"]),
        EmailMessage("Offer 2", "B", SENDER, ["two@example.com"]),
        EmailMessage("News 4", "B", "news@example.com", ["four@example.com"])])
    bulk = EmailMessage("Offer 3", "B", SENDER, ["three@example.com"])
    bulk.seacucumber_options = {"lane": "bulk"}
    mail.get_connection().send_messages([bulk])
    assert dict(MessageStatus.objects.values_list("subject", "lane")) == {
        "Receipt 1": "transactional", "Offer 2": "transactional", "Offer 3": "bulk",
        "News 4": "transactional"}
    superuser = Client()
    superuser.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    listing = "/admin/seacucumber/messagestatus/"
    page = superuser.get(listing, {"lane": "bulk"}).content.decode()
    assert "Offer 3" in page and "Offer 2" not in page and "Receipt 1" not in page
    page = superuser.get(listing, {"lane": "transactional", "status": "sent"}).content.decode()
    assert "Offer 2" in page and "Receipt 1" in page and "Offer 3" not in page
    page = superuser.get(listing, {"sender": "news@example.com"}).content.decode()
    assert "News 4" in page and "Offer 2" not in page and "Receipt 1" not in page
    assert "?sender=news%40example.com" in page  # a choice in the sender filter
    # the actual rate beside the limit: the last minute's recipients SES accepted
    assert data.actual_rate() == pytest.approx(4 / 60)
    later = timezone.now() + dt.timedelta(seconds=data.ACTUAL_RATE_WINDOW + 1)
    assert data.actual_rate(now=later) == 0
    page = superuser.get(URL).content.decode()
    assert "sending 0.07 recipients/s" in page
    assert {send.record.subject for send in timeline.lookup("one@example.com").sends} == {
        "Receipt 1"}


@pytest.mark.django_db
def test_a_held_lane_is_released_from_the_dashboard_only_with_the_change_permission(
        account, settings):
    from seacucumber.shared import reputation, store

    settings.SEACUCUMBER_REPUTATION_GUARD = True
    settings.SEACUCUMBER_REPUTATION_GUARD_LANES = ["bulk"]
    hold = reputation.Hold("bulk", "bounce", 0.12, 0.05, 500, time.time())
    store.redis_client().set(reputation.hold_key_of("bulk"), hold.to_json())
    release = URL + "release/"

    viewer = staff_client(*VIEW)
    assert 'value="Release bulk"' not in viewer.get(URL).content.decode()
    assert viewer.post(release, {"lane": "bulk"}).status_code == 403
    assert [found.lane for found in reputation.holds()] == ["bulk"]

    operator = staff_client(*VIEW, "change_dashboard")
    assert 'value="Release bulk"' in operator.get(URL).content.decode()
    assert operator.get(release).status_code == 405
    assert operator.post(release, {"lane": "nope"}).status_code == 400
    response = operator.post(release, {"lane": "bulk"}, follow=True)
    assert response.redirect_chain[-1][0] == URL
    assert "Lane bulk released: its mail goes out again" in response.content.decode()
    assert reputation.holds() == []


@pytest.mark.django_db
@pytest.mark.parametrize("v2", [True, False])  # v1: GetSendQuota and a GetAccount of its own
def test_the_account_state_shows_the_sandbox_and_disabled_sending(staff, account, settings,
                                                                   v2):
    settings.USE_SES_V2 = v2
    account.configure(sandbox=True, sending_enabled=False, enforcement_status="SHUTDOWN")
    page = staff.get(URL).content.decode()
    state = re.search(r'<p id="sc-account"( class="sc-warn")?>(.*?)</p>', page, re.S)
    assert state and state.group(1)
    assert state.group(2).startswith("Account: SHUTDOWN, sending disabled; in the sandbox: ")
    quota.forget()
    store.redis_client().delete(store.key("metrics", "quota"))  # the quota's minute cache
    account.configure(sandbox=False, sending_enabled=True, enforcement_status="HEALTHY")
    page = staff.get(URL).content.decode()
    assert '<p id="sc-account">Account: HEALTHY, sending enabled; production access</p>' in page
