"""The SES account's state (v2 GetAccount: SendingEnabled, EnforcementStatus,
ProductionAccessEnabled) in ``manage.py ses_usage``, and said loudly by real workers as they
start, from the emulator (configurable sandbox) and a loopback endpoint for refusals."""

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command

from seacucumber.testing.processes import free_port
from tests.fixtures_ops import Answer, v2_error

pytestmark = pytest.mark.django_db


def usage(*args: str) -> str:
    out = StringIO()
    call_command("ses_usage", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_ses_usage_shows_the_account_state(ses_emulator, settings, v2):
    settings.USE_SES_V2 = v2
    data = json.loads(usage("--json"))
    assert data["account"] == {"sending_enabled": True, "enforcement_status": "HEALTHY",
                               "production_access_enabled": True, "sandbox": False}
    text = usage()
    assert "account status     HEALTHY\n" in text
    assert "production access  yes\n" in text and "sending            enabled\n" in text

    ses_emulator.configure(sandbox=True, sending_enabled=False, enforcement_status="SHUTDOWN")
    data = json.loads(usage("--json"))
    assert data["account"] == {"sending_enabled": False, "enforcement_status": "SHUTDOWN",
                               "production_access_enabled": False, "sandbox": True}
    text = usage()
    assert "account status     SHUTDOWN, sending disabled" in text
    assert ("production access  NO: the sandbox (mail goes only to verified addresses and "
            "domains, at most 200 messages in 24 hours and 1 per second)") in text
    assert "sending            DISABLED by SES: every send fails" in text


def v1_answer(action: str, inner: str) -> Answer:
    body = (f'<{action}Response xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
            f"<{action}Result>{inner}</{action}Result></{action}Response>")
    return Answer(200, body.encode(), {"Content-Type": "text/xml"})


def test_a_refused_get_account_does_not_fail_the_report(fake_endpoint, settings):
    """v1 sends: the quota comes from GetSendQuota; GetAccount refused is a note, no error."""
    fake_endpoint.routes["GetSendQuota"] = v1_answer(
        "GetSendQuota", "<Max24HourSend>200.0</Max24HourSend><MaxSendRate>1.0</MaxSendRate>"
                        "<SentLast24Hours>0.0</SentLast24Hours>")
    fake_endpoint.routes["GetSendStatistics"] = v1_answer("GetSendStatistics",
                                                          "<SendDataPoints></SendDataPoints>")
    fake_endpoint.routes["GET /v2/email/account"] = v2_error("AccessDeniedException",
                                                             "not authorized")
    data = json.loads(usage("--json"))
    assert data["account"] is None
    assert "allow the IAM action ses:GetAccount" in data["account_note"]
    assert data["quota"]["max_24_hour_send"] == 200
    assert "account status     unknown (SES denied GetAccount" in usage()


# --- at worker start ---------------------------------------------------------------------------

def worker_env(redis_url: str, ses_url: str) -> dict[str, str]:
    return {"DJANGO_SETTINGS_MODULE": "tests.settings", "CELERY_BROKER_URL": f"{redis_url}/1",
            "SEACUCUMBER_ENDPOINT_URL": ses_url, "SEACUCUMBER_OUTBOX": "0"}


def log_shows(worker, text: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while text not in worker.log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_worker_start_flags_a_sandbox_and_disabled_sending(redis_url, ses_emulator,
                                                           start_worker):
    ses_emulator.configure(sandbox=True, sending_enabled=False, enforcement_status="SHUTDOWN")
    worker = start_worker(worker_env(redis_url, ses_emulator.url),
                          queues="sc-account-check", concurrency=1)
    assert log_shows(worker, "in the sandbox (GetAccount ProductionAccessEnabled false): mail "
                             "goes only to verified addresses and domains, at most 200 "
                             "messages in 24 hours and 1 per second")
    assert log_shows(worker, "SES sending is DISABLED for this account in us-east-1")
    lines = worker.log().splitlines()
    assert any("WARNING" in line and "sandbox" in line for line in lines)
    assert any("ERROR" in line and "DISABLED" in line for line in lines)


def test_worker_starts_when_ses_is_out_of_reach_or_refuses(redis_url, ses_emulator,
                                                           start_worker):
    nowhere = start_worker(worker_env(redis_url, f"http://127.0.0.1:{free_port()}"),
                           queues="sc-account-check", concurrency=1)
    assert log_shows(nowhere, "SES account state not read at worker start (cannot reach SES")
    assert nowhere.process.poll() is None  # still running
    ses_emulator.configure(forbid_quota=True)
    refused = start_worker(worker_env(redis_url, ses_emulator.url),
                           queues="sc-account-check", concurrency=1)
    assert log_shows(refused, "allow the IAM action ses:GetAccount")
    assert refused.process.poll() is None
