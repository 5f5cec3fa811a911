"""The shared state on a real Redis Cluster (``SEACUCUMBER_REDIS_CLUSTER``): three masters on
loopback from Debian's ``redis-server`` (``--cluster-enabled yes``) joined by ``redis-cli
--cluster create``, started once per session. On it: the rate, the send log, the outbox and
its sweeper, the reputation guard, the quota, and a real worker sending through the emulator
with the broker on a plain Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.core import checks, mail
from django.core.mail import EmailMessage

from seacucumber.conf import lane as conf_lane
from seacucumber.send import attempt
from seacucumber.shared import outbox, quota, ratelimit, reputation, store, sweeper
from seacucumber.testing.emulator import SESEmulator
from seacucumber.testing.processes import free_port, wait_for_port
from tests.conftest import SENDER, point_app_at, point_at_emulator, service_missing

MASTERS = 3


def _cluster_ports() -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < MASTERS:
        port = free_port()
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[str]:
    """A URL of one node of a fresh 3-master Redis Cluster on loopback."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        service_missing("redis-server and redis-cli (Debian's redis-server, redis-tools) for "
                        "the Redis Cluster tests")
    directory = Path(tempfile.mkdtemp(prefix="sc-cluster-"))
    ports = _cluster_ports()
    processes = []
    try:
        for port in ports:
            node = directory / str(port)
            node.mkdir()
            processes.append(subprocess.Popen(  # noqa: S603 - our own fixed command line
                [server, "--bind", "127.0.0.1", "--port", str(port), "--cluster-enabled", "yes",
                 "--cluster-config-file", str(node / "nodes.conf"), "--save", "",
                 "--appendonly", "no", "--dir", str(node), "--protected-mode", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            wait_for_port("127.0.0.1", port)
        subprocess.run(  # noqa: S603
            [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60)
        _wait_cluster_ok(ports)
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_cluster_ok(ports: list[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = [redis.Redis(port=port).cluster("info")["cluster_state"] for port in ports]
        if all(state == "ok" for state in states):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the Redis Cluster did not come up: {states}")
        time.sleep(0.2)


@pytest.fixture
def on_cluster(redis_cluster, settings):
    """Settings with the shared state on the cluster, under a prefix of the test's own."""
    settings.SEACUCUMBER_REDIS_URL = redis_cluster
    settings.SEACUCUMBER_REDIS_CLUSTER = True
    settings.SEACUCUMBER_REDIS_PREFIX = f"t-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_RATE_LIMIT = None
    quota.forget()
    yield redis_cluster
    quota.forget()


def test_the_client_is_a_cluster_client_and_every_key_shares_one_slot(on_cluster):
    client = store.redis_client()
    assert isinstance(client, redis.RedisCluster)
    assert store.task_client() is client
    keys = [store.key("rate", "tat"), store.bucket_key("eu-west-1", "rate", "tat"),
            store.key("sent", "x"), outbox.published("some-queue")]
    assert all(name.startswith("{") for name in keys)
    assert len({client.keyslot(name) for name in keys}) == 1


def test_rate_send_log_and_reputation_on_the_cluster(on_cluster, settings):
    started = time.monotonic()
    booked = [attempt.reserve(1, 10.0, burst=0, attempt=f"r{n}") for n in range(10)]
    waits = [d.wait for d in booked]
    assert waits == sorted(waits) and all(d.admitted for d in booked)
    # ten slots 0.1 s apart from the first call: the last one 1 s after it
    assert 0.95 <= waits[-1] + (time.monotonic() - started) and waits[-1] <= 1.01
    assert attempt.claim("m1", "a").token == "claim:a"
    assert attempt.claim("m1", "b").busy_for > 0  # one claim at a time
    ratelimit.throttled()
    assert ratelimit.limiter().factor() == pytest.approx(0.8, abs=0.01)
    settings.SEACUCUMBER_REPUTATION_MIN_SENDS = 2
    reputation.count("sent", "bulk", None, 10)
    hold = reputation.record_event("bounced", "bulk", None, 5)
    assert hold is not None and [h.lane for h in reputation.holds()] == ["bulk"]
    assert attempt.reserve(1, 10.0, lane=conf_lane("bulk"), attempt="held").admitted is False
    assert reputation.release("bulk") == hold  # a MULTI transaction: one slot
    assert reputation.holds() == []


def test_outbox_record_settle_and_sweep_on_the_cluster(on_cluster, redis_url, settings,
                                                       test_celery_app):
    settings.SEACUCUMBER_OUTBOX = True
    settings.SEACUCUMBER_OUTBOX_GRACE = 0.0
    point_app_at(f"{redis_url}/1", None)  # the broker: a plain Redis, its queue empty
    try:
        lost, settled = {"id": uuid.uuid4().hex}, {"id": uuid.uuid4().hex}
        queue = f"sc-cluster-{uuid.uuid4().hex[:8]}"
        assert outbox.record([lost, settled], None, queue, timeout=5)
        outbox.settled(settled["id"])
        assert outbox.counts() == {"queued": 1, "running": 0}
        republished: list[str] = []
        found = sweeper.Sweeper(test_celery_app, lambda p, i, q: republished.append(i))
        assert found.sweep() == []  # the first look takes the queue's watermark
        time.sleep(0.01)
        assert found.sweep() == [lost["id"]] == republished  # never started: lost
        outbox.settled(lost["id"])
        assert outbox.counts() == {"queued": 0, "running": 0}
    finally:
        point_app_at("memory://", None)


def test_a_worker_sends_with_its_shared_state_on_the_cluster(on_cluster, redis_url, settings,
                                                             start_worker):
    emulator = SESEmulator(rate=20).start()
    queue = f"sc-cluster-{uuid.uuid4().hex[:8]}"
    try:
        env = point_at_emulator(settings, f"{redis_url}/1", emulator.url, on_cluster,
                                settings.SEACUCUMBER_REDIS_PREFIX, queue,
                                SEACUCUMBER_RATE_LIMIT="", SEACUCUMBER_REDIS_CLUSTER="1")
        start_worker(env, queues=queue, pool="threads", concurrency=4)
        messages = [EmailMessage(f"Cluster {i}", "Body", SENDER, [f"to{i}@example.com"])
                    for i in range(30)]
        assert mail.get_connection().send_messages(messages) == 30
        accepted = emulator.wait_for(30, timeout=60)
        assert emulator.stats()["throttled"] == 0
        assert len({m.destinations[0] for m in accepted}) == 30  # each once
        client = store.redis_client()
        marks = [client.get(store.key("sent", i)) for m in messages for i in m.seacucumber_ids]
        assert all(mark is not None and mark.startswith(b"sent:") for mark in marks)
        deadline = time.monotonic() + 10  # the last settle may still be on its way
        while outbox.counts() != {"queued": 0, "running": 0}:
            assert time.monotonic() < deadline, outbox.counts()
            time.sleep(0.1)
        assert float(quota.shared()["max_send_rate"]) == 20.0  # learned, on the cluster
    finally:
        point_app_at("memory://", None)
        emulator.stop()


def test_a_cluster_without_its_url_is_a_system_check_error(settings):
    settings.SEACUCUMBER_REDIS_CLUSTER = True
    settings.SEACUCUMBER_REDIS_URL = None
    found = {error.id: error.msg for error in checks.run_checks()}
    assert "SEACUCUMBER_REDIS_URL is unset" in found["seacucumber.E013"]
    assert store.redis_url() is None  # never the broker's URL taken for a cluster's
    settings.SEACUCUMBER_REDIS_URL = "redis://127.0.0.1:7000"
    assert "seacucumber.E013" not in {error.id for error in checks.run_checks()}
