"""``manage.py ses_doctor`` against real parts: a private Redis as broker and shared state,
real ``celery worker`` processes, the project's SES emulator over HTTP, and a process that
really runs on Celery's fallback app.

Every line is OK on a healthy deployment (exit 0); each broken part is a FAIL on its own
line naming the fix (exit 1). The report of each run is printed (``pytest -s`` shows it)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError

from seacucumber.exceptions import EnqueueError
from seacucumber.operations import doctor
from seacucumber.testing.processes import free_port
from tests.conftest import point_app_at, point_at_emulator

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"


def run_doctor(*args: str) -> tuple[int, str]:
    """The command's exit status and its report."""
    out = io.StringIO()
    try:
        call_command("ses_doctor", "--timeout", "5", *args, stdout=out)
        status = 0
    except CommandError as exc:
        status = exc.returncode
    print(out.getvalue())
    return status, out.getvalue()


def lines(report: str, topic: str) -> list[str]:
    """The report's lines about ``topic`` (status, topic, then what was found)."""
    return [line for line in report.splitlines() if line[6:6 + len(topic)] == topic]


def not_ok(report: str) -> list[str]:
    return [line for line in report.splitlines()[:-2] if not line.startswith("OK ")]


@dataclass
class Deployment:
    """This process pointed at a Redis broker and shared state, with two lanes on queues of
    the test's own, and SES at an emulator with example.com verified; ``worker_env`` starts
    workers of the same deployment."""

    queue: str
    bulk_queue: str
    worker_env: dict[str, str]
    emulator: object


@pytest.fixture
def deployment(settings, redis_url, ses_emulator) -> Iterator[Deployment]:
    from tests.proj.celery import app

    queue = f"sc-doctor-{uuid.uuid4().hex[:8]}"
    lanes = {"transactional": {}, "bulk": {"queue": f"{queue}-bulk", "min_share": 0.1}}
    settings.SEACUCUMBER_LANES = lanes
    settings.SEACUCUMBER_EVENT_TOPIC_ARNS = [TOPIC]
    settings.SERVER_EMAIL = "errors@example.com"
    ses_emulator.identities.add("example.com")
    env = point_at_emulator(settings, f"{redis_url}/1", ses_emulator.url, redis_url,
                            f"sc-doctor-{uuid.uuid4().hex[:8]}", queue,
                            SEACUCUMBER_TEST_LANES=json.dumps(lanes))
    # celeryconfig.py's socket timeouts (system check seacucumber.W004 otherwise)
    saved = app.conf.broker_transport_options
    app.conf.broker_transport_options = {**saved, "socket_timeout": 5,
                                         "socket_connect_timeout": 5}
    try:
        yield Deployment(queue, f"{queue}-bulk", env, ses_emulator)
    finally:
        app.conf.broker_transport_options = saved
        point_app_at("memory://", None)


def test_healthy_deployment_is_all_ok_and_a_lane_nobody_consumes_fails(
        deployment, start_worker):
    """One worker on the transactional lane's queue only: the bulk lane's queue FAILs, naming
    its lane and the worker command. A second worker on the bulk queue: every line OK."""
    start_worker(deployment.worker_env, queues=deployment.queue)
    status, report = run_doctor()
    assert status == 1
    assert not_ok(report) == lines(report, "workers")[1:]
    (bulk,) = lines(report, "workers")[1:]
    assert bulk.startswith(f"FAIL  workers       queue '{deployment.bulk_queue}' (lane bulk): "
                           "no live worker consumes it")
    assert (f"celery -A tests.proj worker -Q {deployment.queue},{deployment.bulk_queue}"
            in bulk)

    start_worker(deployment.worker_env, queues=deployment.bulk_queue)
    status, report = run_doctor()
    assert status == 0
    assert not_ok(report) == []
    assert [line.split()[1] for line in report.splitlines()[:-2]] == [
        "celery", "broker", "shared", "workers", "workers", "region", "credentials", "account",
        "sender", "sender", "events", "system"]
    assert report.splitlines()[-1] == "0 FAIL, 0 WARN, 12 OK"


def test_region_typo_fails_naming_the_region_meant_and_calls_no_ses(deployment, settings):
    """No endpoint, so SES would be the real one at the typo's host: the SES calls are not
    made, and their lines say so."""
    settings.AWS_SES_REGION_NAME = "us-east1"
    settings.SEACUCUMBER_ENDPOINT_URL = None
    status, report = run_doctor()
    assert status == 1
    assert lines(report, "region") == [
        "FAIL  region        SES client: 'us-east1' is no SES region (did you mean "
        "'us-east-1'?). Fix: set AWS_SES_REGION_NAME to 'us-east-1'"]
    for topic in ("account", "sender"):
        assert lines(report, topic) == [
            f"WARN  {topic:<13} not checked: the SES client's region or the credentials "
            "above failed. "
            "Fix: fix those first"]


def test_unknown_region_at_a_custom_endpoint_is_a_warning(deployment, settings):
    """An emulator takes any region; a VPC endpoint needs the real one: WARN, not FAIL."""
    settings.AWS_SES_REGION_NAME = "us-east1"
    _, report = run_doctor()
    (line,) = lines(report, "region")
    assert line.startswith("WARN  region        SES client: 'us-east1' is no SES region "
                           f"(did you mean 'us-east-1'?); SES at {deployment.emulator.url}")
    assert lines(report, "account")[0].startswith("OK ")


def test_unverified_sender_fails_naming_the_domain_to_verify(deployment, settings):
    settings.DEFAULT_FROM_EMAIL = "News <news@unverified.example>"
    deployment.emulator.identities.add("alone@other.example")
    settings.SERVER_EMAIL = "alone@other.example"
    status, report = run_doctor()
    assert status == 1
    assert lines(report, "sender") == [
        "FAIL  sender        news@unverified.example (DEFAULT_FROM_EMAIL): not verified in "
        "us-east-1 (not an identity): SES refuses mail from it. Fix: manage.py ses_address "
        "verify unverified.example and publish the DNS records it prints (or verify the "
        "address alone: manage.py ses_address verify news@unverified.example)",
        "OK    sender        alone@other.example (SERVER_EMAIL): address verified",
    ]


def test_same_address_in_two_settings_is_one_line(deployment, settings):
    settings.SERVER_EMAIL = settings.DEFAULT_FROM_EMAIL
    _, report = run_doctor()
    assert lines(report, "sender") == [
        "OK    sender        sender@example.com (DEFAULT_FROM_EMAIL, SERVER_EMAIL): domain "
        "example.com verified"]


@pytest.mark.parametrize(("config", "status", "words"), [
    ({"sandbox": True}, "WARN", "in the sandbox: mail goes only to verified addresses and "
                                "domains, at most 200 messages in 24 hours"),
    ({"enforcement_status": "PROBATION"}, "WARN", "enforcement status PROBATION"),
    ({"enforcement_status": "SHUTDOWN"}, "FAIL", "enforcement status SHUTDOWN"),
    ({"sending_enabled": False}, "FAIL", "sending DISABLED"),
    ({"forbid_quota": True}, "WARN", "allow the IAM action ses:GetAccount"),
])
def test_account_states(ses_emulator, config, status, words):
    ses_emulator.configure(**config)
    (finding,) = doctor.check_account()
    print(finding.line())
    assert finding.status == status
    assert words in finding.found


def test_events_not_configured_is_a_warning_naming_the_settings(deployment, settings):
    settings.SEACUCUMBER_EVENT_TOPIC_ARNS = []
    _, report = run_doctor()
    (line,) = lines(report, "events")
    assert line.startswith("WARN  events        SEACUCUMBER_EVENT_TOPIC_ARNS is empty: "
                           "bounces and complaints would not be seen")
    assert "include('seacucumber.urls')" in line


def test_rabbitmq_broker_without_shared_redis_warns(deployment, settings, amqp_url):
    settings.SEACUCUMBER_REDIS_URL = None
    point_app_at(amqp_url, None)
    _, report = run_doctor()
    assert lines(report, "broker")[0].startswith("OK    broker        amqp://guest:**@")
    assert lines(report, "shared state")[0].startswith(
        "WARN  shared state  no shared-state Redis: the broker is amqp and "
        "SEACUCUMBER_REDIS_URL is unset")
    assert lines(report, "workers")[0].startswith("WARN  workers       live workers cannot "
                                                  "be seen")


def test_broker_down_fails_with_its_password_masked(deployment):
    point_app_at(f"redis://:s3cret@127.0.0.1:{free_port()}/0", None)
    status, report = run_doctor()
    assert status == 1
    (line,) = lines(report, "broker")
    assert line.startswith("FAIL  broker        redis://:**@127.0.0.1:")
    assert "does not answer" in line
    assert "s3cret" not in report


def test_a_broker_that_hangs_is_a_fail_line_not_a_hang(deployment, hung_broker):
    point_app_at(f"redis://127.0.0.1:{hung_broker}/0", None)
    findings = doctor.run(timeout=1.0)
    (broker,) = [f for f in findings if f.topic == "broker"]
    assert broker.status == doctor.FAIL
    assert {f.topic for f in findings} >= {"celery app", "region", "account", "events"}


def test_a_check_that_raises_is_a_fail_line_and_the_others_still_run(deployment, settings):
    settings.SEACUCUMBER_LANES = {"bulk": "not a dict"}
    status, report = run_doctor()
    assert status == 1
    (line,) = lines(report, "workers")
    assert line.startswith("FAIL  workers       the check failed: ImproperlyConfigured: ")
    assert "Traceback" not in report
    assert lines(report, "account")[0].startswith("OK ")


def test_json_output(deployment, settings):
    settings.DEFAULT_FROM_EMAIL = "news@unverified.example"
    status, report = run_doctor("--json")
    assert status == 1
    answer = json.loads(report)
    assert answer["ok"] is False
    assert {"status": "FAIL", "topic": "sender", "found": "news@unverified.example "
            "(DEFAULT_FROM_EMAIL): not verified in us-east-1 (not an identity): SES refuses "
            "mail from it"}.items() <= answer["checks"][8].items()
    assert [check["topic"] for check in answer["checks"]][7:9] == ["account", "sender"]


def test_a_process_on_celerys_fallback_app_fails_naming_the_init_import(
        redis_url, ses_emulator):
    """A real process that never imports the project's Celery app (tests.settings alone,
    as a project without the ``__init__`` import): the first line FAILs, exit status 1."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "CELERY_BROKER_URL": f"{redis_url}/1", "SEACUCUMBER_ENDPOINT_URL": ses_emulator.url,
           "SEACUCUMBER_REDIS_PREFIX": f"sc-doctor-{uuid.uuid4().hex[:8]}"}
    done = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "django", "ses_doctor", "--timeout", "5"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=120)
    print(done.stdout, done.stderr)
    assert done.returncode == 1
    first = done.stdout.splitlines()[0]
    assert first.startswith("FAIL  celery app    this process uses Celery's fallback app "
                            "('default', broker ")
    assert first.endswith("add `from .celery import app as celery_app` to tests/__init__.py")
    assert "ses_doctor: " in done.stderr and "Traceback" not in done.stderr


def test_enqueue_error_names_the_broker_with_its_password_masked(settings):
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_ENQUEUE_TIMEOUT = 1.0
    port = free_port()
    point_app_at(f"redis://:s3cret@127.0.0.1:{port}/0", None)
    try:
        with pytest.raises(EnqueueError) as caught:
            mail.send_mail("Hi", "B", "sender@example.com", ["a@example.com"])
    finally:
        point_app_at("memory://", None)
    assert f"on the Celery broker redis://:**@127.0.0.1:{port}/0: " in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_mailers_regions_and_return_paths_are_checked(deployment, settings):
    """A MAILERS entry's own region and its return path (the envelope sender SES checks)."""
    backend = "seacucumber.backend.SESBackend"
    settings.MAILERS = {
        "default": {"BACKEND": backend},
        "eu": {"BACKEND": backend,
               "OPTIONS": {"region": "eu-west-1", "return_path": "bounces@example.com"}},
        "typo": {"BACKEND": backend, "OPTIONS": {"region": "eu-wset-1"}},
    }
    _, report = run_doctor()
    assert lines(report, "region")[1:] == [
        f"OK    region        mailer 'eu': eu-west-1, SES at {deployment.emulator.url}",
        "WARN  region        mailer 'typo': 'eu-wset-1' is no SES region (did you mean "
        f"'eu-west-1'?); SES at {deployment.emulator.url} decides whether it will do. Fix: "
        "fine for an emulator; a VPC or FIPS endpoint needs the real region"]
    assert lines(report, "sender")[-1] == (
        "OK    sender        bounces@example.com (mailer 'eu' return_path): domain example.com "
        "verified")


def test_no_region_anywhere_fails_naming_the_setting(deployment, settings, monkeypatch,
                                                    tmp_path):
    settings.AWS_SES_REGION_NAME = None
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    status, report = run_doctor()
    assert status == 1
    assert lines(report, "region") == [
        "FAIL  region        SES client: no AWS region found. Fix: set AWS_SES_REGION_NAME "
        "(or AWS_DEFAULT_REGION where the workers run)"]
    assert lines(report, "account")[0].startswith("WARN  account       not checked")


def test_no_credentials_fail_and_are_never_printed(deployment, settings, no_aws_credentials):
    status, report = run_doctor()
    assert status == 1
    assert lines(report, "credentials") == [
        "FAIL  credentials   no AWS credentials found. Fix: set AWS_SES_ACCESS_KEY_ID and "
        "AWS_SES_SECRET_ACCESS_KEY, or give boto3 credentials (environment, ~/.aws, an "
        "instance role)"]
    assert lines(report, "sender")[0].startswith("WARN  sender        not checked")


def test_credentials_show_their_source_and_key_suffix_only(deployment, settings):
    settings.AWS_SES_ACCESS_KEY_ID = "AKIAEXAMPLEKEY1234"
    settings.AWS_SES_SECRET_ACCESS_KEY = "very-secret-value"  # noqa: S105
    _, report = run_doctor()
    assert lines(report, "credentials") == [
        "OK    credentials   found (explicit, access key ...1234)"]
    assert "very-secret-value" not in report and "AKIAEXAMPLEKEY" not in report


def test_a_mailers_region_typo_fails_its_line_and_the_account_is_still_read(
        deployment, settings):
    settings.MAILERS = {"eu": {"BACKEND": "seacucumber.backend.SESBackend", "OPTIONS": {
        "region": "eu-wset-1", "endpoint_url": "https://email.eu-west-1.amazonaws.com"}}}
    status, report = run_doctor()
    assert status == 1
    assert lines(report, "region")[1] == (
        "FAIL  region        mailer 'eu': 'eu-wset-1' is no SES region (did you mean "
        "'eu-west-1'?). Fix: set MAILERS['eu']['OPTIONS']['region'] to 'eu-west-1'")
    assert lines(report, "account")[0].startswith("OK ")
