"""Fixtures: real services (private redis-server, RabbitMQ, moto's SES server), real workers.

A missing Redis or RabbitMQ skips the tests that need it on a developer's machine and fails
them under ``CI=true``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

# Credentials and region for the SES emulators; set before boto3 or a worker reads them.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SES"):
    os.environ.pop(_name, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106
    AWS_DEFAULT_REGION="us-east-1",
)

from seacucumber.testing.processes import (  # noqa: E402
    RedisServer,
    Worker,
    free_port,
    port_open,
)

pytest_plugins = ["tests.fixtures_ops", "tests.fixtures_events", "tests.fixtures_emulator",
                  "tests.fixtures_inbound"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SENDER = "sender@example.com"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts real ``celery worker`` processes is marked ``worker`` (by its
    use of ``start_worker``), so ``make test-fast`` leaves it out without a list to keep."""
    for item in items:
        if "start_worker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.worker)


def service_missing(what: str) -> None:
    """Fail under CI, skip elsewhere: a missing service never passes silently in CI."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available", pytrace=False)
    pytest.skip(f"{what} is not available")


@pytest.fixture(scope="session", autouse=True)
def test_celery_app():
    """Make the test project's Celery app the current one for every test. Otherwise a test
    that does not import it runs on Celery's default app, which loads ``celeryconfig.py``
    from the working directory: a broker and shared state at 127.0.0.1:6379, someone's
    own Redis."""
    from tests.proj.celery import app

    app.set_current()
    app.set_default()
    return app


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """No AWS credentials anywhere boto3 looks; SES clients made before or during the test
    are dropped on both sides of it (the client cache is keyed by settings, not by the
    environment, so a client without credentials must not outlive the test)."""
    from seacucumber import clients

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    clients.clear()
    yield
    clients.clear()


# --- Redis, RabbitMQ -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL: SEACUCUMBER_TEST_REDIS_URL, or a private redis-server on a free port."""
    given = os.environ.get("SEACUCUMBER_TEST_REDIS_URL")
    if given:
        yield given
        return
    if not RedisServer.available():
        service_missing("redis-server (or SEACUCUMBER_TEST_REDIS_URL)")
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """RabbitMQ: SEACUCUMBER_TEST_AMQP_URL or the local guest account."""
    url = os.environ.get("SEACUCUMBER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    from kombu.utils.url import url_to_parts

    parts = url_to_parts(url)
    if not port_open(parts.hostname or "127.0.0.1", parts.port or 5672, timeout=2):
        service_missing(f"RabbitMQ at {parts.hostname}:{parts.port or 5672}")
    return url


# --- SES: moto's server on loopback ---------------------------------------------------------

@dataclass
class MotoSES:
    """moto's SES server, run in this process; tests read what it received."""

    url: str
    region: str = "us-east-1"

    def backend(self):
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        return ses_backends[DEFAULT_ACCOUNT_ID][self.region]

    def sent(self) -> list:
        """Raw messages moto accepted (each with .id, .source, .destinations, .raw_data)."""
        return list(self.backend().sent_messages)

    def reset(self) -> None:
        import requests

        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def verify(self, identity: str) -> None:
        import boto3

        ses = boto3.client("ses", endpoint_url=self.url, region_name=self.region)
        if "@" in identity:
            ses.verify_email_identity(EmailAddress=identity)
        else:
            ses.verify_domain_identity(Domain=identity)

    def wait_for(self, count: int, timeout: float = 60.0) -> list:
        """Wait until moto holds at least ``count`` messages; returns them."""
        deadline = time.monotonic() + timeout
        while len(self.sent()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"SES got {len(self.sent())} messages, wanted {count}")
            time.sleep(0.05)
        return self.sent()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoSES]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoSES(url=f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def moto_ses(moto_server: MotoSES, settings) -> MotoSES:
    """moto's SES, emptied, with ``SENDER`` verified, and settings pointing at it."""
    moto_server.reset()
    moto_server.verify(SENDER)
    settings.SEACUCUMBER_ENDPOINT_URL = moto_server.url
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.DEFAULT_FROM_EMAIL = SENDER
    return moto_server


# --- Celery ------------------------------------------------------------------------------------

def point_app_at(broker_url: str, result_backend: str | None) -> None:
    """Send this test process's tasks to ``broker_url`` (dropping cached connections)."""
    from kombu import pools

    from tests.proj.celery import app

    app._after_fork()  # drops the app's references to its connection and producer pools
    pools.reset()  # closes kombu's process-wide pools, which Celery's producers come from
    app._backend_cache = None
    app._local = threading.local()
    app.conf.broker_url = broker_url
    app.conf.result_backend = result_backend


@pytest.fixture
def eager():
    """Run tasks in this process (unit tests only)."""
    from tests.proj.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    try:
        yield app
    finally:
        app.conf.task_always_eager = False
        app.conf.task_eager_propagates = False


@pytest.fixture
def start_worker(request) -> Iterator[Callable[..., Worker]]:
    """Start real ``celery worker`` processes for the test project; stopped at teardown."""
    started: list[Worker] = []

    def start(env: dict[str, str], **options) -> Worker:
        worker = Worker(app="tests.proj", env=env, **options)
        started.append(worker)
        return worker.start()

    yield start
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    for worker in started:
        worker.stop()
        if failed:
            print(f"--- worker log {worker.log_path}\n{worker.log()[-6000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def point_at_emulator(settings, broker: str, emulator_url: str, shared_redis: str, prefix: str,
                      queue: str, **worker_env: str) -> dict[str, str]:
    """Point this process (settings, Celery app) and its workers at ``broker``, an SES
    emulator and a shared-state Redis under a key ``prefix`` of the test's own; returns the
    workers' environment, with ``worker_env`` on top."""
    settings.SEACUCUMBER_QUEUE = queue
    settings.SEACUCUMBER_ENDPOINT_URL = emulator_url
    settings.EMAIL_BACKEND = "seacucumber.backend.SESBackend"
    settings.SEACUCUMBER_REDIS_URL = shared_redis
    settings.SEACUCUMBER_REDIS_PREFIX = prefix
    point_app_at(broker, None)
    return {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CELERY_BROKER_URL": broker,
        "SEACUCUMBER_ENDPOINT_URL": emulator_url,
        "SEACUCUMBER_REDIS_URL": shared_redis,
        "SEACUCUMBER_REDIS_PREFIX": prefix,
        **worker_env,
    }


@dataclass
class Pipeline:
    """The broker, result backend and queue a test's workers and this process share."""

    broker_url: str
    result_backend: str
    queue: str
    ses_url: str

    def worker_env(self, **extra: str) -> dict[str, str]:
        return {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_RESULT_BACKEND": self.result_backend,
            "SEACUCUMBER_ENDPOINT_URL": self.ses_url,
            **extra,
        }


@pytest.fixture(params=["redis", "amqp"])
def pipeline(request, redis_url, moto_ses, settings) -> Iterator[Pipeline]:
    """This process and its workers on a real broker (Redis, then RabbitMQ), with a queue of
    their own, results in Redis, and SES at moto."""
    if request.param == "redis":
        broker = f"{redis_url}/1"
    else:
        broker = request.getfixturevalue("amqp_url")
    queue = f"sc-test-{uuid.uuid4().hex[:10]}"
    settings.SEACUCUMBER_QUEUE = queue
    point_app_at(broker, f"{redis_url}/2")
    try:
        yield Pipeline(broker, f"{redis_url}/2", queue, moto_ses.url)
    finally:
        point_app_at("memory://", None)


@pytest.fixture
def hung_broker():
    """A loopback server that accepts connections and never answers: a broker host that
    hangs (the case a refused port does not show)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        server.close()


@pytest.fixture
def failed() -> Iterator[list[dict]]:
    """What ``message_failed`` said, one dict per message failed."""
    from seacucumber import signals

    got: list[dict] = []

    def record(sender, **kwargs):
        got.append(kwargs)

    signals.message_failed.connect(record)
    try:
        yield got
    finally:
        signals.message_failed.disconnect(record)


def payload(age: float) -> dict:
    """A one-recipient task payload for a message handed to ``send_messages`` ``age``
    seconds ago."""
    from django.core.mail import EmailMessage

    from seacucumber.payload import build_sends

    [outbound] = build_sends(EmailMessage("Hi", "Body", SENDER, ["to@example.com"]))
    data = outbound.to_json()
    data["created"] = time.time() - age
    return data


def max_over_rate(times: list[float], rate: float) -> float:
    """The most recipients any stretch of the timeline ``times`` (one entry per recipient,
    sorted) carried beyond ``rate`` per second of its own length, in seconds' worth of the
    rate: 0.5 is half a second of burst."""
    worst = 0.0
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            worst = max(worst, (j - i + 1 - rate * (times[j] - start)) / rate)
    return worst
