"""``manage.py ses_usage``: quota and statistics from moto after real sends, and the answers
moto cannot give (v2 GetAccount, AccessDenied) from a loopback endpoint speaking SES's
protocols."""

import datetime as dt
import json
import os
import re
import subprocess
import sys
import uuid
from io import StringIO
from pathlib import Path

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command

from seacucumber.operations import usage
from seacucumber.send import attempt
from seacucumber.shared import quota, ratelimit
from tests.conftest import SENDER
from tests.fixtures_ops import Answer, v1_error, v2_error, v2_json

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    out = StringIO()
    call_command("ses_usage", *args, stdout=out)
    return out.getvalue()


def statistics_xml(points: list[tuple[dt.datetime, int, int, int, int]]) -> Answer:
    """A GetSendStatistics answer as SES v1 sends it."""
    members = "".join(
        f"<member><Timestamp>{stamp.strftime('%Y-%m-%dT%H:%M:%SZ')}</Timestamp>"
        f"<DeliveryAttempts>{a}</DeliveryAttempts><Bounces>{b}</Bounces>"
        f"<Complaints>{c}</Complaints><Rejects>{r}</Rejects></member>"
        for stamp, a, b, c, r in points
    )
    body = (
        '<GetSendStatisticsResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
        f"<GetSendStatisticsResult><SendDataPoints>{members}</SendDataPoints>"
        "</GetSendStatisticsResult><ResponseMetadata><RequestId>x</RequestId>"
        "</ResponseMetadata></GetSendStatisticsResponse>"
    ).encode()
    return Answer(200, body, {"Content-Type": "text/xml"})


def test_numbers_follow_what_was_sent_through_moto(moto_ses, eager):
    messages = [EmailMessage(f"S{i}", "B", SENDER, [f"to{i}@example.com"],
                             cc=[f"cc{i}@example.com"]) for i in range(3)]
    assert mail.get_connection().send_messages(messages) == 3
    sent = moto_ses.wait_for(3)
    counted = sum(len(m.destinations) for m in sent)  # what moto counts, per recipient
    assert counted >= 6

    data = json.loads(run("--json"))
    assert data["api"] == "v1" and data["region"] == "us-east-1"
    assert data["quota"]["sent_last_24_hours"] == counted
    assert data["quota"]["max_24_hour_send"] == 200
    assert data["quota"]["percent_used"] == pytest.approx(100 * counted / 200)
    assert data["rate_in_force"] is None
    assert data["rate_note"] == usage.NO_REDIS and data["quota_hold_seconds"] is None
    assert len(data["days"]) == usage.STATISTICS_DAYS
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert data["days"][-1]["date"] == today
    assert data["days"][-1]["delivery_attempts"] == counted
    assert data["totals"]["delivery_attempts"] == counted
    assert data["bounce_rate"] == 0 and data["bounce_level"] == "healthy"

    text = run()
    assert f"sent, last 24 h    {counted} ({100 * counted / 200:.1f}% of quota)" in text
    assert "24-hour quota      200" in text
    assert ("rate in force      no shared rate (no Redis configured: set "
            "SEACUCUMBER_REDIS_URL)\n") in text
    assert "sends held" not in text
    [row] = [line for line in text.splitlines() if line.startswith(f"  {today}")]
    assert row.split()[1:5] == [str(counted), "0", "0", "0"]
    assert row.endswith("#" * 30)


def test_no_sends_shows_no_data(moto_ses):
    data = json.loads(run("--json"))
    assert data["quota"]["sent_last_24_hours"] == 0
    assert data["bounce_rate"] is None and data["bounce_level"] == "no data"
    assert "Bounce rate         n/a   no data" in run()


def test_v2_quota_from_get_account_and_rates_against_thresholds(fake_endpoint, settings):
    settings.USE_SES_V2 = True
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    yesterday = now - dt.timedelta(days=1)
    fake_endpoint.routes["GET /v2/email/account"] = v2_json({
        "EnforcementStatus": "PROBATION", "ProductionAccessEnabled": True,
        "SendingEnabled": True,
        "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0,
                      "SentLast24Hours": 1250.0},
    })
    fake_endpoint.routes["GetSendStatistics"] = statistics_xml([
        (yesterday, 600, 30, 1, 2), (yesterday + dt.timedelta(minutes=15), 400, 30, 0, 0),
        (now, 1000, 20, 2, 1),
    ])
    data = json.loads(run("--json"))
    assert data["api"] == "v2"
    assert data["quota"]["max_send_rate"] == 14.0
    assert data["quota"]["percent_used"] == pytest.approx(2.5)
    assert data["quota"]["enforcement_status"] == "PROBATION"
    days = {d["date"]: d for d in data["days"]}
    assert days[yesterday.date().isoformat()] == {
        "date": yesterday.date().isoformat(), "delivery_attempts": 1000, "bounces": 60,
        "complaints": 1, "rejects": 2}
    assert days[now.date().isoformat()]["delivery_attempts"] == 1000
    assert data["bounce_rate"] == pytest.approx(80 / 2000)
    assert data["bounce_level"] == "healthy"
    assert data["complaint_rate"] == pytest.approx(3 / 2000)
    assert data["complaint_level"] == "review"
    assert fake_endpoint.requests == ["GET /v2/email/account", "GetSendStatistics"]

    text = run()
    assert "account status     PROBATION" in text
    assert "Complaint rate   0.150%   review (SES reviews at 0.1%, may pause at 0.5%)" in text
    assert "Bounce rate       4.00%   healthy (SES reviews at 5.0%, may pause at 10.0%)" in text


@pytest.mark.parametrize("rate, expected", [
    (None, "no data"), (0.0, "healthy"), (0.0499, "healthy"), (0.05, "review"),
    (0.0999, "review"), (0.10, "at_risk"), (0.5, "at_risk"),
])
def test_bounce_levels(rate, expected):
    assert usage.level(rate, usage.BOUNCE_REVIEW, usage.BOUNCE_AT_RISK) == expected


@pytest.mark.parametrize("v2, route, answer, action", [
    (False, "GetSendQuota", v1_error("AccessDenied", "User: arn:aws:iam::123456789012:user/app "
                                     "is not authorized to perform: ses:GetSendQuota"),
     "ses:GetSendQuota"),
    (True, "GET /v2/email/account", v2_error("AccessDeniedException", "not authorized"),
     "ses:GetAccount"),
], ids=["v1", "v2"])
def test_access_denied_names_the_action(fake_endpoint, settings, v2, route, answer, action):
    settings.USE_SES_V2 = v2
    fake_endpoint.routes[route] = answer
    with pytest.raises(CommandError) as caught:
        run()
    message = str(caught.value)
    assert f"allow the IAM action {action} " in message and "\n" not in message


def test_statistics_denied_names_get_send_statistics(fake_endpoint, settings):
    settings.USE_SES_V2 = True
    fake_endpoint.routes["GET /v2/email/account"] = v2_json(
        {"SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 0.0}})
    fake_endpoint.routes["GetSendStatistics"] = v1_error("AccessDenied", "not authorized")
    with pytest.raises(CommandError, match="allow the IAM action ses:GetSendStatistics "):
        run("--json")


def test_command_line_access_denied_exits_non_zero_without_traceback(fake_endpoint):
    fake_endpoint.routes["GetSendQuota"] = v1_error(
        "AccessDenied", "User: arn:aws:iam::123456789012:user/app is not authorized to "
        "perform: ses:GetSendQuota")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "SEACUCUMBER_ENDPOINT_URL": fake_endpoint.url}
    done = subprocess.run([sys.executable, "-m", "django", "ses_usage"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1:] == [
        "CommandError: SES denied GetSendQuota (AccessDenied): allow the IAM action "
        "ses:GetSendQuota for these credentials. SES said: User: "
        "arn:aws:iam::123456789012:user/app is not authorized to perform: ses:GetSendQuota"]
    assert done.stdout == ""


def test_unlimited_quota_and_a_known_rate_render():
    found = usage.Usage("eu-west-1", "v1", usage.Quota(-1.0, 200.0, 123456.0),
                        [usage.Day("2026-11-23", 10, 1, 0, 0)], rate_in_force=180.5)
    text = usage.render(found)
    assert "24-hour quota      unlimited\n" in text
    assert "sent, last 24 h    123,456\n" in text
    assert "rate in force      180.50 recipients/s" in text
    assert found.to_json()["quota"]["percent_used"] is None
    assert found.to_json()["bounce_level"] == "at_risk"


def test_a_row_per_rate_bucket_when_mail_went_to_more_than_one():
    rows = [usage.BucketRate("default", {}, 14.0, "GetSendQuota", 13.72),
            usage.BucketRate("eu-west-1.5aa4bb3a", {"region": "eu-west-1",
                                                   "endpoint_url": "https://ses.example"},
                             50.0, "GetAccount", 49.0, quota_hold_seconds=75.0)]
    found = usage.Usage("us-east-1", "v1", usage.Quota(50000.0, 14.0, 10.0), [],
                        rate_in_force=13.72, buckets=rows)
    text = usage.render(found)
    assert "Send rate per SES account and region (rate buckets)" in text
    assert re.search(r"default +14 +13.72  the settings' client\n", text)
    assert re.search(r"eu-west-1.5aa4bb3a +50 +49.00  region=eu-west-1, "
                     r"endpoint_url=https://ses.example; HELD 1m 15s", text)
    assert found.to_json()["buckets"][1]["max_send_rate"] == 50.0
    alone = usage.Usage("us-east-1", "v1", usage.Quota(50000.0, 14.0, 10.0), [],
                        buckets=rows[:1])
    assert "rate buckets" not in usage.render(alone)  # one: the rate lines above say it


@pytest.fixture
def shared_redis(redis_url, settings):
    """The shared state on a private Redis, under a prefix of the test's own."""
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/4"
    settings.SEACUCUMBER_REDIS_PREFIX = f"t-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_RATE_LIMIT = 14
    quota.forget()
    yield
    quota.forget()


def test_rate_in_force_and_a_daily_quota_hold(moto_ses, shared_redis):
    data = json.loads(run("--json"))
    assert data["rate_in_force"] == 14.0 and data["rate_note"] is None
    assert data["quota_hold_seconds"] is None
    text = run()
    assert "rate in force      14.00 recipients/s\n" in text and "sends held" not in text

    ratelimit.limiter().hold(600)  # as after SES said "Daily message quota exceeded"
    data = json.loads(run("--json"))
    assert 590 < data["quota_hold_seconds"] <= 600
    text = run()
    assert re.search(r"\n  sends held         daily quota used up: held for (10m 00s|9m \d\ds) "
                     r"more \(SEACUCUMBER_QUOTA_HOLD\)\n", text), text


def test_sends_not_yet_settled_from_the_outbox(moto_ses, shared_redis, settings):
    from seacucumber.payload import build_sends
    from seacucumber.shared import outbox

    settings.SEACUCUMBER_OUTBOX = False
    assert json.loads(run("--json"))["outbox"] is None
    assert "not yet settled" not in run()
    settings.SEACUCUMBER_OUTBOX = True
    sends = [build_sends(EmailMessage("S", "B", "from@example.com", [f"to{i}@example.com"]))[0]
             for i in range(3)]
    assert outbox.record([s.to_json() for s in sends], "mail", "mail", timeout=1.0)
    attempt.started(sends[0].message_id)
    assert json.loads(run("--json"))["outbox"] == {"queued": 2, "running": 1}
    assert "\n  not yet settled    2 queued, 1 running (the outbox)\n" in run()


def test_shared_rate_turned_off(moto_ses, shared_redis, settings):
    settings.SEACUCUMBER_SHARED_RATE = False
    data = json.loads(run("--json"))
    assert data["rate_in_force"] is None and data["rate_note"] == usage.SHARED_RATE_OFF
    assert f"rate in force      {usage.SHARED_RATE_OFF}\n" in run()


def test_unreachable_shared_redis_says_so(moto_ses, settings):
    settings.SEACUCUMBER_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    found = usage.shared_rate()
    assert found.rate_in_force is None and found.note.startswith("unknown (ConnectionError")


@pytest.mark.parametrize("seconds, shown", [
    (0.2, "1s"), (41, "41s"), (552.3, "9m 13s"), (3725, "1h 02m 05s"),
])
def test_hold_rendering(seconds, shown):
    found = usage.Usage("eu-west-1", "v1", usage.Quota(200.0, 1.0, 200.0), [],
                        rate_in_force=0.98, quota_hold_seconds=seconds)
    assert (f"  sends held         daily quota used up: held for {shown} more "
            "(SEACUCUMBER_QUOTA_HOLD)") in usage.render(found)
    assert found.to_json()["quota_hold_seconds"] == seconds
