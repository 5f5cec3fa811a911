"""Safe staging (``SEACUCUMBER_RECIPIENT_ALLOWLIST``): real workers sending to the emulator
drop or redirect everyone not allowed, record it and count it; bad settings are system check
errors, and a worker that gets one anyway fails the message rather than mail anyone."""

import json
import time
import uuid
from dataclasses import replace

import pytest
from django.core import mail
from django.core.checks import run_checks
from django.core.mail import EmailMessage

from seacucumber import signals
from seacucumber.exceptions import PermanentSendError
from seacucumber.models import MessageStatus
from seacucumber.operations import metrics
from seacucumber.payload import build_sends
from seacucumber.send import allowlist, screen
from tests.conftest import SENDER, Pipeline, point_app_at

ALLOWED = ["qa@example.com", "@staff.example.org", "team.example.net", "*+test@example.com",
           "*.sandbox.example"]


@pytest.mark.parametrize("address, allowed", [
    ("qa@example.com", True), ("QA@Example.COM", True), ("other@example.com", False),
    ("a@staff.example.org", True), ("a@sub.staff.example.org", False),
    ("b@team.example.net", True), ("jo+test@example.com", True), ("jo+tes@example.com", False),
    ("x@a.sandbox.example", True), ("x@sandbox.example", False),
    ("customer@gmail.com", False),
])
def test_entries_match_addresses_domains_and_patterns(settings, address, allowed):
    settings.SEACUCUMBER_RECIPIENT_ALLOWLIST = ALLOWED
    found = allowlist.allowlist()
    assert found is not None and found.allows(address) is allowed


def test_idn_domains_compare_in_punycode(settings):
    settings.SEACUCUMBER_RECIPIENT_ALLOWLIST = ["bücher.example"]
    outbound = build_sends(EmailMessage("Hi", "B", SENDER, ["a@bücher.example", "b@x.org"]))[0]
    assert screen.by_allowlist(outbound).recipients == ("a@xn--bcher-kva.example",)


def by_id(messages):
    return {m.id: m for m in messages}


@pytest.mark.parametrize("value, error", [
    ("qa@example.com", "SEACUCUMBER_RECIPIENT_ALLOWLIST must be a list"),
    ([""], "entry '' is not an address, a domain or a pattern"),
    (["qa @example.com"], "entry 'qa @example.com' is not an address"),
    ([42], "entry 42 is not an address"),
    (["localhost"], "entry 'localhost' is not a domain name"),
    (["@not_a domain"], "is not an address"),
    (["@exa_mple.com"], "entry '@exa_mple.com' is not a domain name"),
    (["*@"], "pattern '*@' needs both sides of the @"),
    (["a@b@c.com"], "address 'a@b@c.com' is not one full address"),
])
def test_a_malformed_allowlist_is_a_system_check_error(settings, value, error):
    settings.SEACUCUMBER_RECIPIENT_ALLOWLIST = value
    found = [m for m in run_checks() if m.id == "seacucumber.E034"]
    assert len(found) == 1 and error in found[0].msg


def test_redirect_checks(settings):
    settings.SEACUCUMBER_RECIPIENT_REDIRECT = "not an address"
    ids = {m.id for m in run_checks()}
    assert {"seacucumber.E035", "seacucumber.W034"} <= ids
    settings.SEACUCUMBER_RECIPIENT_ALLOWLIST = []
    settings.SEACUCUMBER_RECIPIENT_REDIRECT = "inbox@example.com"
    assert not {"seacucumber.E034", "seacucumber.E035", "seacucumber.W034"} & {
        m.id for m in run_checks()}


def test_a_malformed_setting_in_the_worker_fails_closed(settings, eager, ses_emulator):
    settings.SEACUCUMBER_RECIPIENT_ALLOWLIST = ["@@"]
    failed = []

    def record(**kwargs):
        failed.append(kwargs)

    signals.message_failed.connect(record)
    try:
        with pytest.raises(PermanentSendError) as caught:
            mail.send_mail("Hi", "B", SENDER, ["qa@example.com"])
    finally:
        signals.message_failed.disconnect(record)
    assert caught.value.code == "RecipientAllowlistInvalid"
    assert [f["code"] for f in failed] == ["RecipientAllowlistInvalid"]
    assert ses_emulator.stats()["requests"] == 0


def test_unset_allowlist_changes_nothing(settings):
    outbound = build_sends(EmailMessage("Hi", "B", SENDER, ["anyone@gmail.com"]))[0]
    assert screen.by_allowlist(outbound) is outbound
    settings.SEACUCUMBER_RECIPIENT_ALLOWLIST = ["@gmail.com"]
    assert screen.by_allowlist(replace(outbound)) == outbound


# --- real workers against the emulator ------------------------------------------------------

@pytest.fixture
def staging(redis_url, ses_emulator, settings):
    """A Redis broker, the emulator as SES, status records and metrics for this test."""
    queue = f"sc-test-{uuid.uuid4().hex[:10]}"
    prefix = f"allow-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/7"
    settings.SEACUCUMBER_REDIS_PREFIX = prefix
    point_app_at(f"{redis_url}/1", f"{redis_url}/2")
    pipeline = Pipeline(f"{redis_url}/1", f"{redis_url}/2", queue, ses_emulator.url)
    env = pipeline.worker_env(SEACUCUMBER_TRACK_STATUS="1",
                              SEACUCUMBER_REDIS_URL=f"{redis_url}/7",
                              SEACUCUMBER_REDIS_PREFIX=prefix)
    try:
        yield pipeline, env
    finally:
        point_app_at("memory://", None)


def wait_for_status(subject: str, wanted: str, timeout: float = 30.0) -> MessageStatus:
    deadline = time.monotonic() + timeout
    while True:
        record = MessageStatus.objects.filter(subject=subject).first()
        if record is not None and record.status == wanted:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"{subject}: {record and record.status}, wanted {wanted}")
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_worker_drops_recipients_not_allowed(staging, start_worker, ses_emulator):
    pipeline, env = staging
    worker = start_worker({**env, "SEACUCUMBER_RECIPIENT_ALLOWLIST": json.dumps(ALLOWED)},
                          queues=pipeline.queue, concurrency=2)
    messages = [
        EmailMessage("Mixed", "B", SENDER, ["qa@example.com"], bcc=["customer@gmail.com"]),
        EmailMessage("Nobody", "B", SENDER, ["customer@gmail.com"], cc=["ceo@corp.example"]),
        EmailMessage("Staff", "B", SENDER, ["a@staff.example.org", "jo+test@example.com"]),
    ]
    assert mail.get_connection().send_messages(messages) == 3
    nobody = wait_for_status("Nobody", "suppressed")
    assert nobody.ses_message_id is None
    assert sorted(nobody.suppressed_recipients.split()) == ["ceo@corp.example",
                                                           "customer@gmail.com"]
    wait_for_status("Mixed", "sent")
    wait_for_status("Staff", "sent")
    envelopes = sorted(sorted(m.destinations) for m in ses_emulator.messages())
    assert envelopes == [["a@staff.example.org", "jo+test@example.com"], ["qa@example.com"]]
    mixed = MessageStatus.objects.get(subject="Mixed")
    assert mixed.suppressed_recipients == "customer@gmail.com"
    counters = metrics.read_counters()["sends"]
    assert counters[("not_allowed", "transactional")] == 1
    assert counters[("sent", "transactional")] == 2
    log = worker.log()
    assert "2 recipient(s) not on SEACUCUMBER_RECIPIENT_ALLOWLIST dropped, 0 left" in log
    assert "1 recipient(s) not on SEACUCUMBER_RECIPIENT_ALLOWLIST dropped, 1 left" in log


@pytest.mark.django_db(transaction=True)
def test_worker_redirects_recipients_not_allowed(staging, start_worker, ses_emulator):
    pipeline, env = staging
    start_worker({**env, "SEACUCUMBER_RECIPIENT_ALLOWLIST": json.dumps(["@example.com"]),
                  "SEACUCUMBER_RECIPIENT_REDIRECT": "staging-inbox@example.com"},
                 queues=pipeline.queue, concurrency=1)
    message = EmailMessage("Welcome", "B", SENDER, ["customer@gmail.com", "other@yahoo.com"],
                           cc=["qa@example.com"])
    assert mail.get_connection().send_messages([message]) == 1
    record = wait_for_status("Welcome", "sent")
    [sent] = ses_emulator.messages()
    assert sorted(sent.destinations) == ["qa@example.com", "staging-inbox@example.com"]
    assert b"To: customer@gmail.com, other@yahoo.com" in sent.raw  # headers show who it was for
    assert sorted(record.suppressed_recipients.split()) == ["customer@gmail.com",
                                                           "other@yahoo.com"]
