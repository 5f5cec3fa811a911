"""The Prometheus endpoint: bearer token, counters added up in the shared-state Redis from
the signals (sends through moto and the emulator, SES events posted to the webhook), gauges
read at scrape time, the text format read back with prometheus_client's own parser."""

import shutil
import subprocess
import time
import uuid

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from seacucumber.events import suppression
from seacucumber.exceptions import PermanentSendError, TransientSendError
from seacucumber.operations import metrics
from seacucumber.payload import build_sends
from seacucumber.shared import quota, reputation, store
from seacucumber.tasks import send_email
from seacucumber.testing.processes import free_port
from tests.conftest import SENDER, service_missing
from tests.fixtures_events import bounce, notification, ses_event

TOKEN = "s3cret-token"  # noqa: S105


@pytest.fixture
def shared(settings, redis_url):
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/7"
    settings.SEACUCUMBER_REDIS_PREFIX = f"m-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_METRICS_TOKEN = TOKEN
    # SES unreachable on loopback unless a test's fixture points at moto or the emulator:
    # a scrape reads the quota and must never reach AWS itself
    settings.SEACUCUMBER_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    quota.forget()
    return settings


def scrape(token: str | None = TOKEN):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client().get("/ses/metrics/", **headers)


def promtool_complaints(text: str) -> str:
    """What Prometheus' own linter (``promtool check metrics``, Debian's ``prometheus``
    package) says of ``text``: empty when it has no complaint."""
    if shutil.which("promtool") is None:
        service_missing("promtool (Debian's prometheus package)")
    found = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=60, check=False)
    return (found.stdout + found.stderr).strip() if found.returncode else ""


def samples(lint: bool = True) -> dict[tuple[str, tuple], float]:
    response = scrape()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    if lint:
        assert promtool_complaints(response.content.decode()) == ""
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.parametrize(("header", "token", "expected"), [
    (None, TOKEN, 401),
    ("Basic dXNlcjpwYXNz", TOKEN, 401),
    ("Bearer ", TOKEN, 401),
    ("Bearer wrong", TOKEN, 403),
    (f"Bearer {TOKEN}x", TOKEN, 403),
    (f"Bearer {TOKEN}", None, 403),  # no token set: nobody gets in
])
def test_the_endpoint_wants_the_bearer_token(settings, header, token, expected):
    settings.SEACUCUMBER_METRICS_TOKEN = token
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = Client().get("/ses/metrics/", **extra)
    assert response.status_code == expected
    assert b"seacucumber_" not in response.content
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_sends_by_outcome_and_lane_from_the_signals(shared, moto_ses, eager):
    shared.SEACUCUMBER_SUPPRESSION_LIST = True
    suppression.add(["gone@example.com"], "manual")
    connection = mail.get_connection()
    started = time.monotonic()
    connection.send_messages([EmailMessage("ok", "B", SENDER, [f"{n}@example.com"])
                              for n in "ab"])
    with pytest.raises(PermanentSendError):  # eager: the task's error reaches the caller
        connection.send_messages([EmailMessage("bad", "B", "unverified@example.org",
                                               ["c@example.com"])])
    connection.send_messages([EmailMessage("none", "B", SENDER, ["gone@example.com"])])
    counted = sum(len(m.destinations) for m in moto_ses.wait_for(2))  # as moto counts
    found = samples()
    lane = ("lane", "transactional")  # mail naming no lane: the first lane
    assert found[("seacucumber_sends_total", (lane, ("outcome", "sent")))] == 2
    assert found[("seacucumber_sends_total", (lane, ("outcome", "failed")))] == 1
    assert found[("seacucumber_sends_total", (lane, ("outcome", "suppressed")))] == 1
    assert found[("seacucumber_recipients_total", (lane, ("outcome", "sent")))] == 2
    assert found[("seacucumber_recipients_total", (lane, ("outcome", "failed")))] == 1
    assert found[("seacucumber_recipients_total", (lane, ("outcome", "suppressed")))] == 1
    # send_messages -> SES accepted, for the two sent: each within the test's own time
    assert found[("seacucumber_send_latency_seconds_count", (lane,))] == 2
    assert found[("seacucumber_send_latency_seconds_bucket", (lane, ("le", "+Inf")))] == 2
    assert 0 < found[("seacucumber_send_latency_seconds_sum", (lane,))] <= 2 * (
        time.monotonic() - started)
    assert found[("seacucumber_hold_seconds", (("hold", "daily_quota"),))] == 0
    rate = found[("seacucumber_rate_in_force_recipients_per_second", ())]
    assert rate == found[("seacucumber_rate_in_force", ())] == 1000  # tests.settings' rate
    assert found[("seacucumber_quota_max_recipients_24h", ())] == 200  # moto's sandbox
    assert found[("seacucumber_quota_max_24_hour_send", ())] == 200  # deprecated alias
    assert found[("seacucumber_quota_sent_recipients_24h", ())] == counted


@pytest.mark.django_db
def test_throttles_and_retries_are_counted_once_each(shared, ses_emulator):
    ses_emulator.configure(rate=1.0, burst_seconds=1.0)
    first, second = (build_sends(EmailMessage("Hi", "B", SENDER, [f"{n}@example.com"
                                                                  for n in range(5)]))[0]
                     for _ in range(2))
    assert send_email(first.to_json())  # overdraws the emulator's bucket (as SES allows)
    with pytest.raises(TransientSendError, match="Maximum sending rate"):
        send_email(second.to_json())  # called directly: the retry is raised, not queued
    assert ses_emulator.stats()["throttled"] == 1
    found = samples()
    assert found[("seacucumber_throttles_total", (("lane", "transactional"),))] == 1
    assert found[("seacucumber_retries_total", (("lane", "transactional"),))] == 1
    assert found[("seacucumber_rate_slowdown_factor", ())] < 1


@pytest.mark.django_db(transaction=True)
def test_ses_events_by_type_once_per_sns_message(shared, webhook):
    delivery = notification(ses_event("Delivery", "ses-1"))
    assert webhook(delivery).status_code == 200
    assert webhook(delivery).status_code == 200  # SNS redelivers: applied, counted once
    assert webhook(notification(bounce("ses-2", "x@example.com"))).status_code == 200
    tagged = bounce("ses-3", "y@example.com", bounce_type="Transient")
    tagged["mail"]["tags"] = {"seacucumber-lane": ["bulk"]}
    assert webhook(notification(tagged)).status_code == 200
    found = samples()

    def events(kind: str, lane: str = "transactional", bounce_type: str = "") -> float:
        labels = (("bounce_type", bounce_type), ("lane", lane), ("type", kind))
        return found[("seacucumber_ses_events_total", labels)]

    assert events("Delivery") == 1  # no lane tag: the first lane's, as the guard counts it
    assert events("Bounce", bounce_type="Permanent") == 1
    assert events("Bounce", "bulk", "Transient") == 1
    assert events("Bounce", "bulk", "Permanent") == 0
    assert events("Complaint", "bulk") == 0


def test_counters_add_up_over_processes_sharing_the_redis(shared):
    """Two separate clients (as two hosts would be) increment the one hash."""
    import redis

    other = redis.Redis.from_url(shared.SEACUCUMBER_REDIS_URL)
    metrics.count("sends", "sent", "mail")
    other.hincrby(metrics.counters_key(), "sends|sent|mail", 4)
    metrics.count("sends", "sent", "mail")
    assert metrics.read_counters()["sends"][("sent", "mail")] == 6
    with pytest.raises(ValueError, match="labels"):
        metrics.count("sends", "sent")


def test_no_redis_counts_nothing_and_still_serves_gauges(settings):
    settings.SEACUCUMBER_REDIS_URL = None
    settings.SEACUCUMBER_METRICS_TOKEN = TOKEN
    settings.SEACUCUMBER_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # SES unreachable
    metrics.count("sends", "sent", "mail")  # nowhere to add up: nothing, no error
    started = time.monotonic()
    response = scrape()
    assert response.status_code == 200
    text = response.content.decode()
    assert "# TYPE seacucumber_sends_total counter" in text
    assert "seacucumber_sends_total{" not in text
    assert 'seacucumber_hold_seconds{hold="daily_quota"} 0.0' in text
    assert "seacucumber_quota_max_24_hour_send" not in text  # SES could not be read
    assert time.monotonic() - started < 20


def test_every_counter_is_there_at_zero_before_its_first_event(shared):
    """``rate()`` and alerts need a series before the first send: every lane's counters and
    histogram are served at 0 on a fresh prefix, and promtool has no complaint."""
    found = samples()
    for lane in ("transactional", "bulk"):
        for outcome in ("sent", "failed", "suppressed", "not_allowed"):
            labels = (("lane", lane), ("outcome", outcome))
            assert found[("seacucumber_sends_total", labels)] == 0
            assert found[("seacucumber_recipients_total", labels)] == 0
        assert found[("seacucumber_throttles_total", (("lane", lane),))] == 0
        assert found[("seacucumber_retries_total", (("lane", lane),))] == 0
        assert found[("seacucumber_send_latency_seconds_count", (("lane", lane),))] == 0
        assert found[("seacucumber_send_latency_seconds_bucket",
                      (("lane", lane), ("le", "+Inf")))] == 0


def test_the_latency_histogram_is_cumulative_over_its_buckets(shared):
    client = store.redis_client()
    for seconds in (0.05, 0.3, 0.3, 7.0, 5000.0):
        bucket, total = metrics.latency_fields("bulk", seconds)
        client.hincrby(metrics.counters_key(), bucket, 1)
        client.hincrbyfloat(metrics.counters_key(), total, seconds)
    found = samples()

    def at_most(le: str) -> float:
        return found[("seacucumber_send_latency_seconds_bucket", (("lane", "bulk"), ("le", le)))]

    assert [at_most(le) for le in ("0.1", "0.25", "0.5", "5.0", "10.0", "3600.0", "+Inf")] == [
        1, 1, 3, 3, 4, 4, 5]
    assert found[("seacucumber_send_latency_seconds_count", (("lane", "bulk"),))] == 5
    assert found[("seacucumber_send_latency_seconds_sum", (("lane", "bulk"),))] == 5007.65


def test_a_held_lane_has_its_gauge_at_one(shared):
    shared.SEACUCUMBER_REPUTATION_GUARD = True
    shared.SEACUCUMBER_REPUTATION_GUARD_LANES = ["transactional", "bulk"]
    hold = reputation.Hold("bulk", "complaint", 0.006, 0.005, 2000, time.time())
    store.redis_client().set(reputation.hold_key_of("bulk"), hold.to_json())
    found = samples()
    assert found[("seacucumber_lane_held", (("lane", "bulk"), ("rate", "complaint")))] == 1
    assert found[("seacucumber_lane_held", (("lane", "transactional"), ("rate", "")))] == 0


def test_promtool_rejects_what_it_should():
    """The lint check above can fail: promtool complains of a name in hours."""
    text = "# HELP x_sent_hours h\n# TYPE x_sent_hours gauge\nx_sent_hours 1\n"
    assert 'base unit "seconds"' in promtool_complaints(text)
