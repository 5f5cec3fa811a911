"""Prometheus metrics: counters that add up over every worker process and host, and gauges
read at scrape time, served at ``ses/metrics/`` behind a bearer token.

Why the counters live in Redis: a Celery deployment is many processes on many hosts, and
``prometheus_client``'s own counters are per process (its multiprocess mode shares files on
one host only). So each count is one ``HINCRBY`` on one hash in the shared-state Redis
(``<prefix>:metrics``), and a custom collector turns the hash into counter families when
Prometheus scrapes. ``prometheus_client`` (the Prometheus project's own library) writes the
text exposition format, its escaping and ``# HELP``/``# TYPE`` lines, so none of that is
hand-written here. Without a shared-state Redis nothing is counted (there is nowhere to add
up) and the endpoint serves the gauges it can read.

Counters of failed and suppressed sends come from ``send.outcome``'s direct calls
(``count_send_outcome``), SES events from the webhook's (``events.handlers.count_event``,
``events.inbound_task``); sent sends
from the worker's settling round trip (``attempt.settle``, so counting costs a send no
round trip of its own); throttles, retries and configuration errors, which have no signal,
from one call each in ``tasks.send_email``. A counter never fails a send: a Redis error is
logged and the count is lost.

The ``lane`` label is the send's lane (``SEACUCUMBER_LANES``).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import redis
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ..conf import conf, lanes
from ..exceptions import OperatorError
from ..shared import quota, store, workers
from . import usage

logger = logging.getLogger(__name__)

SEP = "|"  #: between a counter's name and its label values in the hash's field names
#: counter -> (help text, label names); a field is "<counter>|<label value>|..."
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sends": ("Sends settled, by outcome (sent, failed, suppressed, not_allowed: every "
              "recipient off the staging allowlist) and lane.",
              ("outcome", "lane")),
    "throttles": ("Throttling answers from SES, by lane.", ("lane",)),
    "retries": ("Send attempts retried after an SES error, by lane.", ("lane",)),
    "config_errors": ("Send attempts held by the worker's own configuration (no region, "
                      "bad or expired credentials, AccessDenied, a missing configuration "
                      "set), by error code and lane: a worker to fix, not mail to drop.",
                      ("code", "lane")),
    "ses_events": ("SES events received on the webhook, by type as SES spells it.",
                   ("type",)),
}
QUOTA_CACHE_SECONDS = 60  #: scrapes share one SES quota read this long (GetSendQuota: 1/s)


def counters_key() -> str:
    return store.key("metrics")


# --- counting ---------------------------------------------------------------------------------

def count(name: str, *labels: str, amount: int = 1) -> None:
    """Add ``amount`` to counter ``name`` with ``labels`` (``COUNTERS`` gives their order) in
    the shared-state Redis. A Redis error is logged, never raised: a count never fails a
    send (wrong labels are a bug: ``ValueError``)."""
    if len(labels) != len(COUNTERS[name][1]):
        raise ValueError(f"counter {name} takes labels {COUNTERS[name][1]}")
    if store.redis_url() is None:
        return
    try:
        store.redis_client().hincrby(counters_key(), counter_field(name, *labels), amount)
    except (redis.RedisError, OSError) as exc:
        logger.warning("metrics: %s not counted (%s)", name, exc)


def counter_field(name: str, *labels: str) -> str:
    """The hash field counter ``name`` with ``labels`` adds to (``attempt.settle`` adds to
    it in its own script)."""
    return SEP.join((name, *labels))


def lane() -> str:
    """The lane of the running send task: the lane whose queue the task came from (its
    routing key), else the first lane."""
    from celery import current_task

    info = getattr(getattr(current_task, "request", None), "delivery_info", None) or {}
    queue = info.get("routing_key") if isinstance(info, dict) else None
    declared = lanes()
    return next((found.name for found in declared if queue and found.queue == queue),
                declared[0].name)


def count_send_outcome(outcome: str) -> None:
    """Count a send that ended ``outcome`` (``send.outcome`` calls it, before any signal)."""
    count("sends", outcome, lane())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def read_counters() -> dict[str, dict[tuple[str, ...], float]]:
    """The shared counters: {counter: {label values: count}}; empty without a Redis."""
    found: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in COUNTERS}
    if store.redis_url() is None:
        return found
    for raw_field, value in store.redis_client().hgetall(counters_key()).items():
        name, *labels = _text(raw_field).split(SEP)
        if name in COUNTERS and len(labels) == len(COUNTERS[name][1]):
            found[name][tuple(labels)] = float(value)
    return found


# --- gauges: read when asked --------------------------------------------------------------------

@dataclass
class Gauges:
    """What the account and the shared state look like now. A part that could not be read is
    None and named in ``errors``."""

    rate_in_force: float | None = None  #: recipients/s the workers hold, slow-down included
    base_rate: float | None = None  #: the same before any slow-down
    quota_hold_seconds: float | None = None  #: seconds left of a daily-quota hold
    outbox: dict[str, int] | None = None  #: {"queued": n, "running": m}
    queues: list[workers.QueueState] = field(default_factory=list)  #: each mail queue
    quota: usage.Quota | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def slow_down(self) -> float | None:
        """The share of the base rate in force (1.0: no slow-down)."""
        if self.rate_in_force is None or not self.base_rate:
            return None
        return self.rate_in_force / self.base_rate


def cached_quota() -> usage.Quota:
    """The SES quota, read at most once per ``QUOTA_CACHE_SECONDS`` for all processes (in the
    shared-state Redis when there is one). Raises ``OperatorError``."""
    if store.redis_url() is None:
        return usage.fetch_quota()
    client = store.redis_client()
    key = store.key("metrics", "quota")
    stored = client.get(key)
    if stored is not None:
        return usage.Quota(**json.loads(stored))
    found = usage.fetch_quota()
    client.set(key, json.dumps(asdict(found)), ex=QUOTA_CACHE_SECONDS)
    return found


def read_gauges(with_quota: bool = True) -> Gauges:
    """Every gauge, each read on its own: one that fails is None and noted in ``errors``."""
    gauges = Gauges()
    rate = usage.shared_rate()
    gauges.rate_in_force, gauges.quota_hold_seconds = rate.rate_in_force, rate.quota_hold_seconds
    if rate.note and rate.rate_in_force is None:
        gauges.errors["rate"] = rate.note
    if rate.rate_in_force is not None:
        try:
            gauges.base_rate = quota.base_rate()
        except Exception as exc:  # noqa: BLE001 - a report must not fail on one part
            gauges.errors["base_rate"] = str(exc)
    gauges.outbox = usage.outbox_counts()
    gauges.queues, errors = workers.queue_states()
    gauges.errors.update(errors)
    if with_quota:
        try:
            gauges.quota = cached_quota()
        except (OperatorError, redis.RedisError, OSError) as exc:
            gauges.errors["quota"] = str(exc)
    return gauges


# --- the scrape --------------------------------------------------------------------------------

class SharedStateCollector(Collector):
    """Turns the shared counters and the gauges into metric families at scrape time."""

    def collect(self) -> Iterator[Metric]:
        try:
            counters = read_counters()
        except (redis.RedisError, OSError) as exc:
            logger.warning("metrics: counters not read (%s)", exc)
            counters = {}
        for name, values in counters.items():
            help_text, label_names = COUNTERS[name]
            family = CounterMetricFamily(f"seacucumber_{name}", help_text, labels=label_names)
            for labels, value in sorted(values.items()):
                family.add_metric(list(labels), value)
            yield family
        yield from gauge_families(read_gauges())

    def describe(self) -> list[Metric]:
        return []  # families vary with what is configured: no checks at registration


def gauge_families(gauges: Gauges) -> Iterator[Metric]:
    def single(name: str, help_text: str, value: float | None) -> Iterator[Metric]:
        if value is not None:
            yield GaugeMetricFamily(f"seacucumber_{name}", help_text, value=value)

    yield from single("rate_in_force", "Recipients per second the workers hold now "
                      "(shared rate, slow-down included).", gauges.rate_in_force)
    yield from single("rate_slowdown_factor", "Share of the base rate in force after SES "
                      "throttling (1: none).", gauges.slow_down)
    hold = GaugeMetricFamily("seacucumber_hold_seconds", "Seconds left of a hold on every "
                             "send (0: none), by kind.", labels=["hold"])
    hold.add_metric(["daily_quota"], gauges.quota_hold_seconds or 0.0)
    yield hold
    depth = GaugeMetricFamily("seacucumber_queue_depth", "Send tasks waiting in each broker "
                              "queue.", labels=["queue"])
    age = GaugeMetricFamily("seacucumber_queue_oldest_age_seconds", "Seconds the oldest "
                            "queued send of each queue has waited (the outbox).",
                            labels=["queue"])
    consumers = GaugeMetricFamily("seacucumber_queue_consumers", "Live workers consuming "
                                  "each queue (their heartbeats).", labels=["queue"])
    for state in gauges.queues:
        if state.depth is not None:
            depth.add_metric([state.name], state.depth)
        age.add_metric([state.name], state.oldest_age or 0.0)
        if state.consumers is not None:
            consumers.add_metric([state.name], len(state.consumers))
    yield depth
    yield age
    yield consumers
    if gauges.outbox is not None:
        backlog = GaugeMetricFamily("seacucumber_outbox_backlog", "Sends queued but not "
                                    "settled, by state (the outbox).", labels=["state"])
        for outbox_state, value in sorted(gauges.outbox.items()):
            backlog.add_metric([outbox_state], value)
        yield backlog
    if gauges.quota is not None:
        yield from single("quota_max_24_hour_send", "SES 24-hour sending quota (-1: "
                          "unlimited).", gauges.quota.max_24_hour_send)
        yield from single("quota_sent_last_24_hours", "Recipients SES counted in the last "
                          "24 hours.", gauges.quota.sent_last_24_hours)
        yield from single("max_send_rate", "SES maximum send rate, recipients per second.",
                          gauges.quota.max_send_rate)


def exposition() -> bytes:
    """The metrics in Prometheus's text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SharedStateCollector())
    return generate_latest(registry)


def authorized(request: HttpRequest) -> int:
    """200 when the request carries ``Authorization: Bearer <SEACUCUMBER_METRICS_TOKEN>``,
    401 without a bearer token, 403 with a wrong one or when no token is set. The comparison
    takes the same time wherever the tokens differ (``hmac.compare_digest``)."""
    expected = conf.SEACUCUMBER_METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return 401
    if not expected:
        return 403
    return 200 if hmac.compare_digest(given.strip().encode(), str(expected).encode()) else 403


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET ses/metrics/``: the scrape endpoint."""
    verdict = authorized(request)
    if verdict != 200:
        response = HttpResponse(
            "bearer token required" if verdict == 401 else "forbidden: wrong token, or "
            "SEACUCUMBER_METRICS_TOKEN unset", status=verdict, content_type="text/plain")
        if verdict == 401:
            response["WWW-Authenticate"] = 'Bearer realm="seacucumber metrics"'
        return response
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
