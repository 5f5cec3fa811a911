"""OpenTelemetry for the test project's workers, on when ``SEACUCUMBER_TEST_TRACE_FILE`` is
set: the SDK's provider, Celery's instrumentation, and every ended span written as one JSON
line to that file, where the test reads what the worker process traced."""

import json
import os
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    """Appends each span (ids, parent, name, attributes) to a file, one JSON line each."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.get_span_context()
            parent = span.parent
            lines.append(json.dumps({
                "name": span.name, "trace_id": context.trace_id, "span_id": context.span_id,
                "parent_id": parent.span_id if parent is not None else None,
                "attributes": dict(span.attributes or {})}) + "\n")
        with self.lock, open(self.path, "a") as out:
            out.writelines(lines)
        return SpanExportResult.SUCCESS


def configure(path: str) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)


if os.environ.get("SEACUCUMBER_TEST_TRACE_FILE"):
    configure(os.environ["SEACUCUMBER_TEST_TRACE_FILE"])
