"""Tracing with OpenTelemetry: one trace from the caller's span through ``send_messages``'
publish (Celery's instrumentation, a batch on a Redis broker) and a real worker's task to
the SES call's own span, which carries our id and SES's MessageId. The test process keeps
its spans in the SDK's in-memory exporter; the worker writes its own to a file
(tests/proj/tracing.py)."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk import trace as otel_sdk
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from seacucumber.ses import send as ses_send
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER, point_app_at, point_at_emulator


@pytest.fixture
def spans():
    """This process's ended spans, in memory, with Celery's instrumentation on."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, otel_sdk.TracerProvider):
        provider = otel_sdk.TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    CeleryInstrumentor().instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        CeleryInstrumentor().uninstrument()
        exporter.shutdown()  # its processor stays on the provider, exporting nothing


def worker_spans(path: Path, count: int, timeout: float = 60.0) -> list[dict]:
    """The worker's spans once ``count`` SES spans are among them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        found = [json.loads(line) for line in lines if line.endswith("}")]
        if sum(span["name"] == "SES SendRawEmail" for span in found) >= count:
            return found
        assert time.monotonic() < deadline, f"{count} SES spans not written: {found}"
        time.sleep(0.1)


@pytest.mark.django_db
def test_one_trace_from_the_callers_span_to_the_ses_call(spans, settings, redis_url,
                                                        start_worker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    emulator = SESEmulator(rate=0).start()
    trace_file = tmp_path / "worker-spans.jsonl"
    try:
        env = point_at_emulator(settings, f"{redis_url}/1", emulator.url, f"{redis_url}/3",
                                f"trace-{tag}", f"sc-trace-{tag}",
                                SEACUCUMBER_TEST_TRACE_FILE=str(trace_file))
        start_worker(env, queues=f"sc-trace-{tag}")
        messages = [EmailMessage(f"Hi {n}", "Body", SENDER, [f"to{n}@example.com"])
                    for n in range(2)]
        with trace.get_tracer("the caller").start_as_current_span("signup") as caller:
            assert mail.get_connection().send_messages(messages) == 2  # one batch publish
        accepted = {found.tags["seacucumber-id"]: found.ses_id
                    for found in emulator.wait_for(2, timeout=60)}
        found = worker_spans(trace_file, 2)
    finally:
        point_app_at("memory://", None)
        emulator.stop()

    trace_id = caller.get_span_context().trace_id
    ours = {span.get_span_context().span_id: span for span in spans.get_finished_spans()}
    theirs = {span["span_id"]: span for span in found}
    ses_spans = [span for span in found if span["name"] == "SES SendRawEmail"]
    assert {span["attributes"][ses_send.MESSAGE_ID_ATTRIBUTE] for span in ses_spans} == {
        message.seacucumber_ids[0] for message in messages}
    for span in ses_spans:
        attributes = span["attributes"]
        our_id = attributes[ses_send.MESSAGE_ID_ATTRIBUTE]
        assert attributes[ses_send.SES_MESSAGE_ID_ATTRIBUTE] == accepted[our_id]
        assert (attributes["rpc.system"], attributes["rpc.method"]) == ("aws-api",
                                                                       "SendRawEmail")
        assert span["trace_id"] == trace_id
        # SES call <- the worker's task run <- the publish in send_messages <- the caller
        run = theirs[span["parent_id"]]
        assert run["name"] == "run/seacucumber.send_email"
        assert run["attributes"]["celery.task_name"] == "seacucumber.send_email"
        publish = ours[run["parent_id"]]
        assert publish.name == "apply_async/seacucumber.send_email"
        assert publish.parent.span_id == caller.get_span_context().span_id


def test_without_opentelemetry_sends_and_traces_nothing(ses_emulator, tmp_path):
    """OpenTelemetry is no dependency: in a process where it cannot be imported the send
    goes through, untraced."""
    script = tmp_path / "untraced.py"
    script.write_text(
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if not installed: importing it fails\n"
        "import django\n"
        "django.setup()\n"
        "from django.core.mail import EmailMessage\n"
        "from seacucumber.payload import build_sends\n"
        "from seacucumber.ses import send\n"
        f"[outbound] = build_sends(EmailMessage('Hi', 'B', {SENDER!r}, ['to@example.com']))\n"
        "print(send.send(outbound), send._tracer())\n")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": root,
           "SEACUCUMBER_ENDPOINT_URL": ses_emulator.url}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, cwd=root, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    [accepted] = ses_emulator.wait_for(1)
    assert done.stdout.split() == [accepted.ses_id, "None"]
