"""What a worker does with what someone put on the queue by hand: pickle is refused and never
unpickled, malformed payloads fail with a clear reason, and the worker goes on sending; and
credentials never reach the payload or the worker's log, even at DEBUG."""

from __future__ import annotations

import base64
import json
import pickle
import re
import time
import uuid
from pathlib import Path

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from kombu import Connection, Exchange, Producer

from seacucumber.payload import build_sends
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER

SECRET = "SECRETdoNotLog0123456789abcdefghijklmnopq"  # noqa: S105 - a marker, not a secret


class CreatesFile:
    """Unpickling this creates a file: proof that a worker ran pickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path(self.path).touch, ())


def publish_raw(broker_url: str, queue: str, body: bytes, content_type: str) -> None:
    """A task message written by hand (protocol 2 headers), not through Celery."""
    task_id = str(uuid.uuid4())
    with Connection(broker_url) as connection:
        Producer(connection).publish(
            body, routing_key=queue, exchange=Exchange(queue, type="direct"),
            content_type=content_type, content_encoding="binary" if "pickle" in content_type
            or "python" in content_type else "utf-8",
            headers={"lang": "py", "task": "seacucumber.send_email", "id": task_id,
                     "root_id": task_id, "parent_id": None, "group": None, "retries": 0,
                     "argsrepr": "", "kwargsrepr": "", "origin": "test"},
            declare=[], retry=True)


def wait_for_log(worker, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in worker.log():
        assert time.monotonic() < deadline, f"{text!r} not in worker log:\n{worker.log()[-3000:]}"
        time.sleep(0.1)


def test_pickle_is_refused_and_the_worker_goes_on(pipeline, start_worker, moto_ses, tmp_path):
    worker = start_worker(pipeline.worker_env(), queues=pipeline.queue, concurrency=2)
    marker = tmp_path / "pickle-ran"
    body = pickle.dumps(((CreatesFile(str(marker)),), {}, {}))
    publish_raw(pipeline.broker_url, pipeline.queue, body, "application/x-python-serialize")
    wait_for_log(worker, "ContentDisallowed")
    mail.send_mail("After the pickle", "Body", SENDER, ["after@example.com"])
    [sent] = moto_ses.wait_for(1)
    assert set(sent.destinations) == {"after@example.com"}
    assert not marker.exists()
    assert worker.process.poll() is None


def test_malformed_payloads_fail_with_a_reason(pipeline, start_worker, moto_ses):
    worker = start_worker(pipeline.worker_env(), queues=pipeline.queue, concurrency=2)
    [good] = build_sends(EmailMessage("Good", "Body", SENDER, ["good@example.com"]))
    broken = {**json.loads(json.dumps(good.to_json())), "raw": "%%% not base64 %%%"}
    for payload in ("not a payload", {"id": "m-missing"}, broken, [1, 2, 3]):
        body = json.dumps([[payload], {}, {"callbacks": None, "errbacks": None,
                                          "chain": None, "chord": None}]).encode()
        publish_raw(pipeline.broker_url, pipeline.queue, body, "application/json")
    mail.send_mail("After the junk", "Body", SENDER, ["after@example.com"])
    [sent] = moto_ses.wait_for(1)
    assert set(sent.destinations) == {"after@example.com"}
    wait_for_log(worker, "failed: MalformedPayload")
    failures = re.findall(r"ERROR/\S+\] message \S+ failed: MalformedPayload: (.+)", worker.log())
    assert len(failures) == 4, failures  # each with its reason
    assert worker.process.poll() is None


def test_credentials_never_in_payload_or_logs(pipeline, start_worker, moto_ses, settings):
    settings.AWS_SES_SECRET_ACCESS_KEY = SECRET  # the backend process has it too
    worker = start_worker(pipeline.worker_env(AWS_SECRET_ACCESS_KEY=SECRET),
                          queues=pipeline.queue, extra_args=("-l", "DEBUG"))
    message = EmailMessage("Hi", "Body", SENDER, ["to@example.com"])
    [outbound] = build_sends(message)
    assert SECRET not in json.dumps(outbound.to_json())
    mail.get_connection().send_messages([message])
    moto_ses.wait_for(1)
    wait_for_log(worker, "sent to 1 recipient(s)")
    log = worker.log()
    assert "DEBUG" in log  # the level really was DEBUG
    assert SECRET not in log and SECRET[:20] not in log


@pytest.mark.parametrize("pipeline", ["redis"], indirect=True)
def test_forged_tasks_fail_with_their_reason_and_reach_no_other_endpoint(pipeline, start_worker,
                                                                         moto_ses):
    """Tasks written into the broker by hand: one naming an SES endpoint of the forger's (a
    listener on loopback), one with a Bcc line in a recipient, one with a header line that
    is no field, one whose ``due`` is no time. Each fails with its reason in the worker's
    log; the listener hears nothing; the worker goes on sending."""
    worker = start_worker(pipeline.worker_env(), queues=pipeline.queue, concurrency=2)

    def forged(**changes) -> dict:
        [good] = build_sends(EmailMessage("Forged", "Body", SENDER, ["to@example.com"]))
        return {**json.loads(json.dumps(good.to_json())), **changes}

    with SESEmulator(rate=0) as listener:
        tasks = [
            (forged(v=2, options={"endpoint_url": listener.url}), {}),
            (forged(to=["to@example.com\r\nBcc: victim@example.com"]), {}),
            (forged(raw=base64.b64encode(b"X-A\r\nBcc: victim@example.com\r\nX-B: v\r\n\r\n"
                                         b"Body").decode()), {}),
            (forged(), {"due": "soon"}),
        ]
        for payload, kwargs in tasks:
            body = json.dumps([[payload], kwargs, {"callbacks": None, "errbacks": None,
                                                   "chain": None, "chord": None}]).encode()
            publish_raw(pipeline.broker_url, pipeline.queue, body, "application/json")
        mail.send_mail("After the forgeries", "Body", SENDER, ["after@example.com"])
        [sent] = moto_ses.wait_for(1)
        assert set(sent.destinations) == {"after@example.com"}
        deadline = time.monotonic() + 30
        while worker.log().count(" failed: ") < len(tasks):
            assert time.monotonic() < deadline, worker.log()[-3000:]
            time.sleep(0.1)
        log = worker.log()
        for payload, words in zip(
                [p for p, _ in tasks],
                ["UntrustedClientOptions: the payload's endpoint_url",
                 "MalformedPayload: payload recipient", "MalformedPayload: raw message header "
                 "line b'X-A'", "MalformedPayload: task argument due='soon'"], strict=True):
            assert f"message {payload['id']} failed: {words}" in log, log[-3000:]
        assert listener.stats()["requests"] == 0
    assert worker.process.poll() is None
