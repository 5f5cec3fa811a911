"""The SES emulator: the wire protocol boto3 speaks, the account limits, the faults, the
events it posts, and its control API from another process. Errors are read back through
``ses.classify``, so the emulator is checked against what the send task expects of SES."""

from __future__ import annotations

import subprocess
import sys
import time
from email import message_from_bytes
from email.header import decode_header, make_header

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from django.core import mail

from seacucumber.models import MessageStatus, SuppressedAddress
from seacucumber.ses import errors as ses
from seacucumber.testing.emulator import EmulatorClient, SESEmulator
from seacucumber.testing.processes import free_port
from seacucumber.testing.sns_signing import DEFAULT_CERT_URL
from tests.conftest import SENDER
from tests.fixtures_events import TOPIC

RAW = b"From: sender@example.com\r\nTo: to@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


def client(emulator, service: str = "ses", app: str | None = None):
    """A boto3 client with retries off, so every error reaches the test."""
    return boto3.client(service, endpoint_url=emulator.url, region_name="us-east-1",
                        config=Config(retries={"total_max_attempts": 1},
                                      user_agent_appid=app))


def send_raw(ses_client, *recipients: str) -> str:
    return ses_client.send_raw_email(Source=SENDER, Destinations=list(recipients),
                                     RawMessage={"Data": RAW})["MessageId"]


def outcome_of(call) -> ses.Classified:
    with pytest.raises(Exception) as caught:
        call()
    return ses.classify(caught.value)


@pytest.fixture
def emulator():
    with SESEmulator(rate=10) as running:
        yield running


def test_rate_is_counted_per_recipient(emulator):
    ses_client = client(emulator)
    for _ in range(3):  # 9 of the bucket's 10 tokens
        send_raw(ses_client, "a@example.com", "b@example.com", "c@example.com")
    classified = outcome_of(lambda: send_raw(ses_client, "a@example.com", "b@example.com",
                                             "c@example.com"))
    assert classified.outcome is ses.Outcome.THROTTLED
    assert classified.message == "Maximum sending rate exceeded."
    assert send_raw(ses_client, "one@example.com")  # the last token still serves one recipient
    stats = emulator.stats()
    assert (stats["accepted"], stats["recipients_accepted"], stats["throttled"]) == (4, 10, 1)


def test_sustained_rate_stays_at_the_configured_rate(emulator):
    emulator.configure(rate=50)
    ses_client = client(emulator)
    start = time.monotonic()
    while time.monotonic() - start < 2.0:
        try:
            send_raw(ses_client, "to@example.com")
        except botocore.exceptions.ClientError:
            pass
    elapsed = time.monotonic() - start
    accepted = emulator.stats()["accepted"]
    # a full bucket (50) plus the refill over the run, never more
    assert accepted <= 50 + 50 * elapsed + 1
    assert emulator.stats()["throttled"] > 0


def test_daily_quota_counts_recipients_but_not_the_simulator(emulator):
    emulator.configure(rate=0, daily_quota=3)
    ses_client = client(emulator)
    send_raw(ses_client, "a@example.com", "b@example.com")
    send_raw(ses_client, "success@simulator.amazonses.com")  # free against the quota
    classified = outcome_of(lambda: send_raw(ses_client, "c@example.com", "d@example.com"))
    assert classified.outcome is ses.Outcome.QUOTA_EXCEEDED
    send_raw(ses_client, "c@example.com")
    quota = ses_client.get_send_quota()
    assert (quota["Max24HourSend"], quota["SentLast24Hours"]) == (3.0, 3.0)
    emulator.reset()
    assert ses_client.get_send_quota()["SentLast24Hours"] == 0.0


def test_faults_classify_as_transient_and_drop_after_accept_may_have_sent(emulator):
    ses_client = client(emulator)
    emulator.configure(fail_5xx=1.0)
    assert outcome_of(lambda: send_raw(ses_client, "to@example.com")).outcome \
        is ses.Outcome.TRANSIENT
    emulator.configure(fail_5xx=0.0, drop=1.0)
    dropped = outcome_of(lambda: send_raw(ses_client, "to@example.com"))
    assert dropped.outcome is ses.Outcome.TRANSIENT
    emulator.configure(drop=0.0, drop_after_accept=1.0)
    after = outcome_of(lambda: send_raw(ses_client, "to@example.com"))
    assert (after.outcome, after.maybe_sent) == (ses.Outcome.TRANSIENT, True)
    stats = emulator.stats()
    assert (stats["failed_5xx"], stats["dropped"], stats["dropped_after_accept"]) == (1, 1, 1)
    assert stats["accepted"] == 1  # only the send SES "did" accept is recorded


def test_fault_shares_follow_the_seed(emulator):
    emulator.configure(rate=0, fail_5xx=0.3, seed=7)
    ses_client = client(emulator)
    for _ in range(200):
        try:
            send_raw(ses_client, "to@example.com")
        except botocore.exceptions.ClientError:
            pass
    failed = emulator.stats()["failed_5xx"]
    assert 30 <= failed <= 90, failed


def test_permanent_errors(emulator):
    ses_client = client(emulator)
    emulator.configure(verified=("example.org",))
    rejected = outcome_of(lambda: send_raw(ses_client, "to@example.com"))
    assert (rejected.outcome, rejected.code) == (ses.Outcome.PERMANENT, "MessageRejected")
    assert "not verified" in rejected.message and SENDER in rejected.message
    emulator.configure(verified=None, sending_paused=True)
    paused = outcome_of(lambda: send_raw(ses_client, "to@example.com"))
    assert (paused.outcome, paused.code) == (ses.Outcome.PERMANENT,
                                             "AccountSendingPausedException")


def test_v2_send_and_account(emulator):
    v2 = client(emulator, "sesv2")
    message_id = v2.send_email(
        FromEmailAddress=SENDER,
        Destination={"ToAddresses": ["to@example.com"], "BccAddresses": ["hidden@example.com"]},
        Content={"Raw": {"Data": RAW}})["MessageId"]
    [received] = emulator.messages()
    assert received.ses_id == message_id
    assert received.destinations == ["to@example.com", "hidden@example.com"]
    assert v2.get_account()["SendQuota"] == {
        "Max24HourSend": 50000.0, "MaxSendRate": 10.0, "SentLast24Hours": 2.0}
    # 8 tokens left, 10 a second coming back: 5-recipient sends are throttled within a few,
    # however slowly a loaded machine makes each call
    for _ in range(10):
        try:
            v2.send_email(FromEmailAddress=SENDER,
                          Destination={"ToAddresses": [f"{n}@example.com" for n in "abcde"]},
                          Content={"Raw": {"Data": RAW}})
        except botocore.exceptions.ClientError as exc:
            assert ses.classify(exc).outcome is ses.Outcome.THROTTLED
            break
    else:
        pytest.fail("v2 sends were never throttled")


def test_quota_calls_can_be_forbidden(emulator):
    emulator.configure(forbid_quota=True)
    denied = outcome_of(client(emulator).get_send_quota)
    assert denied.code == "AccessDenied" and "ses:GetSendQuota" in denied.message
    assert outcome_of(client(emulator, "sesv2").get_account).code == "AccessDeniedException"


def test_statistics_and_user_agent_app(emulator):
    ses_client = client(emulator, app="group-a")
    send_raw(ses_client, "bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com")
    [point] = ses_client.get_send_statistics()["SendDataPoints"]
    assert (point["DeliveryAttempts"], point["Bounces"], point["Complaints"]) == (2, 1, 1)
    assert emulator.messages()[0].app == "group-a"


def test_send_mail_arrives_intact_through_the_send_task(ses_emulator, eager):
    sent = mail.send_mail("Grüße ✓", "Body — ünïcode", None, ["to@example.com"])
    assert sent == 1
    [received] = ses_emulator.messages()
    parsed = message_from_bytes(received.raw)
    assert received.destinations == ["to@example.com"]
    assert str(make_header(decode_header(parsed["Subject"]))) == "Grüße ✓"
    assert parsed.get_payload(decode=True).decode(parsed.get_content_charset()).strip() \
        == "Body — ünïcode"


def test_cli_server_and_http_client(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "seacucumber.testing.emulator", "--port", str(port),
         "--rate", "5", "--daily-quota", "100", "--latency", "0.01"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        remote = EmulatorClient(f"http://127.0.0.1:{port}").ready()
        ses_client = client(remote)
        message_id = send_raw(ses_client, "to@example.com")
        [received] = remote.messages()
        assert (received.ses_id, received.raw) == (message_id, RAW)
        assert remote.stats()["config"]["rate"] == 5.0
        remote.configure(fail_5xx=1.0)
        assert outcome_of(lambda: send_raw(ses_client, "to@example.com")).outcome \
            is ses.Outcome.TRANSIENT
        remote.reset()
        assert remote.stats()["accepted"] == 0
        assert remote.cert_pem().startswith(b"-----BEGIN CERTIFICATE-----")
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert "SES emulator on http://127.0.0.1:" in process.stdout.read()


@pytest.mark.django_db(transaction=True)
def test_simulator_events_reach_the_webhook_signed(live_server, settings, eager):
    """Bounce, complaint and delivery notifications, signed by the emulator and verified by
    the real webhook view (certificate pinned), update status and the suppression list."""
    with SESEmulator(rate=0, webhook_url=f"{live_server.url}/ses/events/",
                     notification_delay=0.5) as emulator:  # SES: seconds after the send
        settings.SEACUCUMBER_ENDPOINT_URL = emulator.url
        settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
        settings.SEACUCUMBER_EVENT_TOPIC_ARNS = [TOPIC]
        settings.SEACUCUMBER_SNS_CERTIFICATES = {DEFAULT_CERT_URL: emulator.cert_pem().decode()}
        settings.SEACUCUMBER_TRACK_STATUS = True
        settings.SEACUCUMBER_SUPPRESS_ON_BOUNCE = True
        settings.SEACUCUMBER_SUPPRESS_ON_COMPLAINT = True
        for local in ("success", "bounce", "complaint"):
            mail.send_mail("hi", "body", SENDER, [f"{local}@simulator.amazonses.com"])
        emulator.wait_for_events()
        stats = emulator.stats()
    assert (stats["events_posted"], stats["events_failed"]) == (4, 0)  # complaint: 2 events
    by_recipient = {tuple(r.recipients.split()): r.status for r in MessageStatus.objects.all()}
    assert by_recipient == {
        ("success@simulator.amazonses.com",): "delivered",
        ("bounce@simulator.amazonses.com",): "bounced",
        ("complaint@simulator.amazonses.com",): "complained",
    }
    assert set(SuppressedAddress.objects.values_list("address", flat=True)) == {
        "bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com"}
