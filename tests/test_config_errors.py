"""Configuration errors never discard mail: a worker with no AWS region or no credentials
holds each message (retried with backoff, logged at ERROR with the fix, counted in
``config_errors``, the shared rate left alone) for its lifetime, and a correctly configured
worker then sends it. Past the lifetime it is failed with the reason and the fix.

First the send task called in this process (SES is the project's emulator, the shared state
a private redis-server); then real ``celery worker`` processes whose settings
(tests/settings_misconfigured.py) lack the region or the credentials.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.core import mail
from django.core.mail import EmailMessage

from seacucumber import clients
from seacucumber.exceptions import PermanentSendError, TransientSendError
from seacucumber.operations import metrics
from seacucumber.shared import quota, ratelimit
from seacucumber.tasks import send_email
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER, payload, point_app_at, point_at_emulator

LIFETIME = 3600.0
#: per break: the code botocore raises, and words of the fix the worker must name
BREAKS = {
    "region": ("NoRegionError", "set AWS_SES_REGION_NAME or AWS_DEFAULT_REGION on this worker"),
    "credentials": ("NoCredentialsError", "give this worker valid AWS credentials"),
}


def config_errors() -> dict[tuple[str, ...], float]:
    return metrics.read_counters()["config_errors"]


# --- the send task, called in this process ----------------------------------------------------

@pytest.fixture(params=list(BREAKS))
def broken(request, ses_emulator, redis_url, settings, monkeypatch, tmp_path):
    """This process configured as a worker lacking a region or credentials, with a shared
    state of the test's own; yields the break's name."""
    from tests.proj.celery import app  # the current app: its broker is memory://

    app.set_current()
    settings.SEACUCUMBER_MESSAGE_LIFETIME = LIFETIME
    settings.SEACUCUMBER_RETRY_BASE_DELAY = 2.0
    settings.SEACUCUMBER_RATE_LIMIT = 100.0
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/6"
    settings.SEACUCUMBER_REDIS_PREFIX = f"t-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    if request.param == "region":
        settings.AWS_SES_REGION_NAME = None
        for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
            monkeypatch.delenv(name, raising=False)
    else:
        request.getfixturevalue("no_aws_credentials")
        settings.AWS_SES_ACCESS_KEY_ID = settings.AWS_SES_SECRET_ACCESS_KEY = None
    clients.clear()  # the client cache is keyed by settings, not by the environment
    quota.forget()  # the rate: this test's
    yield request.param
    clients.clear()
    quota.forget()


def test_a_configuration_error_holds_the_message_loudly(broken, ses_emulator, failed, caplog):
    code, fix = BREAKS[broken]
    data = payload(age=60)
    with caplog.at_level("INFO", logger="seacucumber"), \
            pytest.raises(TransientSendError) as raised:  # what a direct call's retry raises
        send_email(data)
    assert raised.value.code == code
    assert failed == []  # held, not failed
    [logged] = [r for r in caplog.records if r.name == "seacucumber.tasks"
                and data["id"] in r.getMessage()]
    assert logged.levelname == "ERROR"
    assert code in logged.getMessage() and fix in logged.getMessage()
    assert config_errors() == {(code, "transactional"): 1.0}
    assert metrics.read_counters()["retries"] == {("transactional",): 1.0}
    assert metrics.read_counters()["throttles"] == {}
    assert ratelimit.rate_in_force() == 100.0  # the shared rate is not slowed
    assert ses_emulator.stats()["requests"] == 0


def test_past_the_lifetime_it_fails_with_the_reason_and_the_fix(broken, ses_emulator,
                                                                failed):
    code, fix = BREAKS[broken]
    data = payload(age=LIFETIME)
    with pytest.raises(PermanentSendError) as raised:
        send_email(data)
    assert raised.value.code == code
    [record] = failed
    assert (record["message_id"], record["code"]) == (data["id"], code)
    assert record["reason"].startswith("still failing at the end of its lifetime: ")
    assert fix in record["reason"]
    assert config_errors() == {(code, "transactional"): 1.0}
    assert ses_emulator.stats()["requests"] == 0


# --- real workers: a misconfigured one holds the message, a correct one sends it ---------------

@pytest.fixture
def pipeline_to_emulator(request, redis_url, settings) -> Iterator[tuple[dict, str,
                                                                         SESEmulator]]:
    """Workers' environment, their queue and the emulator, on the broker the test asks for
    (Redis or RabbitMQ), with a shared state under a prefix of the test's own."""
    broker_kind = getattr(request, "param", "redis")
    broker = f"{redis_url}/1" if broker_kind == "redis" else request.getfixturevalue("amqp_url")
    tag = uuid.uuid4().hex[:8]
    queue = f"sc-config-{tag}"
    emulator = SESEmulator(rate=0).start()
    env = point_at_emulator(settings, broker, emulator.url, f"{redis_url}/3", f"t-{tag}", queue,
                            SEACUCUMBER_RETRY_MAX_DELAY="1")
    try:
        yield env, queue, emulator
    finally:
        point_app_at("memory://", None)
        emulator.stop()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


@pytest.mark.parametrize(("pipeline_to_emulator", "broken_part"),
                         [("redis", "region"), ("amqp", "credentials")],
                         indirect=["pipeline_to_emulator"], ids=["redis-region",
                                                                 "amqp-credentials"])
def test_a_misconfigured_worker_holds_mail_until_a_correct_one_sends_it(
        pipeline_to_emulator, broken_part, start_worker):
    env, queue, emulator = pipeline_to_emulator
    code, fix = BREAKS[broken_part]
    broken = start_worker({**env, "DJANGO_SETTINGS_MODULE": "tests.settings_misconfigured",
                           "SEACUCUMBER_TEST_BREAK": broken_part}, queues=queue)
    message = EmailMessage("Held", "Body", SENDER, ["to@example.com"])
    assert mail.get_connection().send_messages([message]) == 1
    [message_id] = message.seacucumber_ids

    # held: tried again and again (backoff of at most 1 s here), never failed, never sent
    wait_until(lambda: config_errors().get((code, "transactional"), 0) >= 3,
               f"three {code} counted")
    log = broken.log()
    log = log[:log.rfind("\n")]  # complete lines only: the worker may be writing one
    held_lines = [line for line in log.splitlines()  # "[time: LEVEL/process] ..."
                  if line.startswith("[") and message_id in line
                  and "held: this worker's configuration" in line]
    assert held_lines and all("ERROR/" in line and fix in line for line in held_lines)
    assert ("failed", "transactional") not in metrics.read_counters()["sends"]
    assert emulator.stats()["requests"] == 0

    # fixed: the misconfigured worker stops (its held task goes back to the broker) and a
    # correctly configured worker on the same broker sends the message
    broken.stop()
    start_worker(env, queues=queue)
    [accepted] = emulator.wait_for(1, timeout=60)
    assert accepted.tags["seacucumber-id"] == message_id
    wait_until(lambda: metrics.read_counters()["sends"].get(("sent", "transactional")) == 1,
               "the send settled")
    assert ("failed", "transactional") not in metrics.read_counters()["sends"]
