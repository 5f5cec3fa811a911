"""R7, a worker host cut off: one worker runs in a network namespace of its own (another
host, as far as the network goes), reaching Redis (broker and shared state) and SES over a
veth pair; the test takes the link down for 30 s mid-run. The other worker resumes its
sends; nothing is lost, and the account's rate holds throughout.

Needs root and ``ip`` (iproute2): the test makes the namespace and the link itself."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes

import pytest
from django.core import mail
from django.core.mail import EmailMessage

from seacucumber.testing.emulator import SESEmulator
from seacucumber.testing.processes import RedisServer
from tests.conftest import (
    SENDER,
    max_over_rate,
    point_app_at,
    point_at_emulator,
    service_missing,
)

pytestmark = pytest.mark.chaos

RATE = 20.0
CUT_SECONDS = 30.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)  # noqa: S603, S607


class Host:
    """A network namespace joined to this one by a veth pair: ``address`` is this side's
    end (what the namespace reaches), ``cut()`` and ``join()`` take the link down and up."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        subnet = random.randrange(1, 250)  # noqa: S311 - a test address, not a secret
        self.namespace, self.outside, inside = f"sc-r7-{tag}", f"scr7{tag}a", f"scr7{tag}b"
        self.address, self.inside_address = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
        ip("netns", "add", self.namespace)
        ip("link", "add", self.outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", self.namespace)
        ip("addr", "add", f"{self.address}/30", "dev", self.outside)
        ip("link", "set", self.outside, "up")
        for command in (("addr", "add", f"{self.inside_address}/30", "dev", inside),
                        ("link", "set", inside, "up"), ("link", "set", "lo", "up")):
            ip("-n", self.namespace, *command)

    @property
    def prefix(self) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.namespace)

    def cut(self) -> None:
        ip("link", "set", self.outside, "down")

    def join(self) -> None:
        ip("link", "set", self.outside, "up")

    def remove(self) -> None:
        ip("netns", "delete", self.namespace)  # its end of the pair, and so the pair, goes too


@pytest.fixture
def other_host() -> Iterator[Host]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        service_missing("root and iproute2's ip (a network namespace for a worker host)")
    host = Host()
    try:
        yield host
    finally:
        host.remove()


def test_a_worker_host_cut_off_for_30s_loses_nothing_and_the_others_resume(
        other_host, settings, start_worker):
    """Duplicates: at most the cut-off worker's sends inside the SES call at the cut (one
    per thread: SES may have taken the request whose answer never came back), as for a
    worker killed. Its reserved tasks come back to the queue after the visibility timeout
    (5 s here); a send it had begun is another worker's once its claim lapses (the longest
    attempt, 13 s here). So all is sent within the 30 s the host stays cut off."""
    redis = RedisServer(bind=("127.0.0.1", other_host.address)).start()
    emulator = SESEmulator(rate=0, host=other_host.address).start()  # the workers' limiter alone
    queue = f"sc-r7-{uuid.uuid4().hex[:8]}"
    url = f"redis://{other_host.address}:{redis.port}"
    env = point_at_emulator(settings, f"{url}/1", emulator.url, f"{url}/3", queue, queue,
                            SEACUCUMBER_RATE_LIMIT=str(RATE), SEACUCUMBER_TEST_VISIBILITY="5",
                            SEACUCUMBER_READ_TIMEOUT="3", SEACUCUMBER_OUTBOX_GRACE="3",
                            SEACUCUMBER_OUTBOX_SWEEP_INTERVAL="1")
    count, threads = 300, 4
    try:
        start_worker({**env, "AWS_SDK_UA_APP_ID": "steady"}, queues=queue, pool="threads",
                     concurrency=threads)
        start_worker({**env, "AWS_SDK_UA_APP_ID": "cut"}, queues=queue, pool="threads",
                     concurrency=threads, prefix=other_host.prefix)
        messages = [EmailMessage(f"R7 {i}", "Body", SENDER, [f"to{i}@example.com"],
                                 headers={"X-R7-Id": str(i)}) for i in range(count)]
        assert mail.get_connection().send_messages(messages) == count
        deadline = time.monotonic() + 30
        while not any(m.app == "cut" for m in emulator.messages()):
            assert time.monotonic() < deadline, "the other host's worker never sent"
            time.sleep(0.1)
        time.sleep(1.0)
        other_host.cut()
        cut_at = time.time()
        while len(emulator.messages()) < count and time.time() < cut_at + CUT_SECONDS:
            time.sleep(0.25)
        all_in_while_cut = len({message_from_bytes(m.raw)["X-R7-Id"]
                                for m in emulator.messages()}) == count
        time.sleep(max(0.0, cut_at + CUT_SECONDS - time.time()))
        other_host.join()
        emulator.wait_for(count, timeout=60)
        time.sleep(3)  # the cut-off worker's last in-flight calls, if any, come back now
        accepted = emulator.messages()
    finally:
        point_app_at("memory://", None)
        emulator.stop()
        redis.stop()
    seen = Counter(message_from_bytes(m.raw)["X-R7-Id"] for m in accepted)
    duplicates = sum(n - 1 for n in seen.values())
    times = sorted(m.time for m in accepted for _ in m.destinations)
    burst = max_over_rate(times, RATE)
    print(f"R7: {duplicates} duplicates, {burst:.2f} s of burst at most")
    assert len(seen) == count
    assert all_in_while_cut, "the other worker did not resume the cut-off one's sends"
    assert any(m.app == "cut" and m.time < cut_at for m in accepted)
    assert duplicates <= threads, seen.most_common(5)
    assert burst <= 1.0
