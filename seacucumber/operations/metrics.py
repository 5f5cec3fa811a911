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
from typing import Any

import redis
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ..conf import conf, lanes
from ..exceptions import OperatorError
from ..shared import quota, reputation, store, workers
from . import usage

logger = logging.getLogger(__name__)

SEP = "|"  #: between a counter's name and its label values in the hash's field names
#: counter -> (help text, label names); a field is "<counter>|<label value>|..."
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sends": ("Sends settled (one SES call, up to 50 recipients), by outcome (sent, failed, "
              "suppressed, not_allowed: every recipient off the staging allowlist, cancelled: "
              "seacucumber.cancel) and lane.",
              ("outcome", "lane")),
    "recipients": ("Recipients of the sends settled, by outcome and lane: what SES's quota, "
                   "rate and bounce and complaint rates count.", ("outcome", "lane")),
    "throttles": ("Throttling answers from SES, by lane.", ("lane",)),
    "retries": ("Send attempts retried after an SES error, by lane.", ("lane",)),
    "config_errors": ("Send attempts held by the worker's own configuration (no region, "
                      "bad or expired credentials, AccessDenied, a missing configuration "
                      "set), by error code and lane: a worker to fix, not mail to drop.",
                      ("code", "lane")),
    "ses_events": ("SES events received on the webhook, by type as SES spells it, lane (the "
                   "send's seacucumber-lane tag; the first lane without it) and bounce_type "
                   "(Permanent, Transient, Undetermined; empty for other types).",
                   ("type", "lane", "bounce_type")),
}
OUTCOMES = ("sent", "failed", "suppressed", "not_allowed", "cancelled")
#: the SES event types every lane shows from the start (at 0), bounces once per bounce type
ZEROED_EVENTS = ("Delivery", "Complaint", "Reject", "DeliveryDelay")
BOUNCE_TYPES = ("Permanent", "Transient", "Undetermined")
#: send_messages -> SES accepted, seconds: the latency histogram's upper bounds (+Inf added)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LATENCY = "send_latency_seconds"
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


def latency_fields(lane: str, seconds: float) -> tuple[str, str]:
    """The hash fields one settled send adds to in the latency histogram: its bucket's (by
    the smallest upper bound at or above ``seconds``; counts per bucket, made cumulative
    when scraped) and the lane's sum of seconds (``attempt.settle`` adds to both)."""
    bound = next((repr(b) for b in LATENCY_BUCKETS if seconds <= b), "+Inf")
    return SEP.join((f"{LATENCY}_bucket", lane, bound)), SEP.join((f"{LATENCY}_sum", lane))


def lane() -> str:
    """The lane of the running send task: the lane whose queue the task came from (its
    routing key), else the first lane."""
    from celery import current_task

    info = getattr(getattr(current_task, "request", None), "delivery_info", None) or {}
    queue = info.get("routing_key") if isinstance(info, dict) else None
    declared = lanes()
    return next((found.name for found in declared if queue and found.queue == queue),
                declared[0].name)


def count_send_outcome(outcome: str, recipients: int) -> None:
    """Count a send that ended ``outcome`` and its ``recipients`` (``send.outcome`` calls it,
    before any signal): both counters in one round trip."""
    if store.redis_url() is None:
        return
    send_lane = lane()
    try:
        with store.redis_client().pipeline(transaction=False) as pipe:
            pipe.hincrby(counters_key(), counter_field("sends", outcome, send_lane), 1)
            pipe.hincrby(counters_key(), counter_field("recipients", outcome, send_lane),
                         recipients)
            pipe.execute()
    except (redis.RedisError, OSError) as exc:
        logger.warning("metrics: the %s send not counted (%s)", outcome, exc)


def event_labels(event_type: str, mail_obj: Any, event_obj: Any) -> tuple[str, str, str]:
    """``ses_events``' labels for one SES event: its type, its send's lane (the
    ``seacucumber-lane`` tag SES copies into ``mail.tags``, as the reputation guard reads
    it) and a bounce's type."""
    tags = mail_obj.get("tags") if isinstance(mail_obj, dict) else None
    lane_tag = tags.get(reputation.LANE_TAG) if isinstance(tags, dict) else None
    event_lane = (str(lane_tag[0]) if isinstance(lane_tag, list) and lane_tag
                  else reputation.default_lane())
    bounce_type = ""
    if event_type == "Bounce" and isinstance(event_obj, dict):
        bounce_type = str(event_obj.get("bounceType") or "Undetermined")
    return str(event_type), event_lane, bounce_type


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _read_hash() -> dict[str, str]:
    if store.redis_url() is None:
        return {}
    return {_text(k): _text(v) for k, v in store.redis_client().hgetall(counters_key()).items()}


def _counters_of(fields: dict[str, str]) -> dict[str, dict[tuple[str, ...], float]]:
    found: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in COUNTERS}
    for raw_field, value in fields.items():
        name, *labels = raw_field.split(SEP)
        if name == "ses_events" and len(labels) == 1:  # counted before lane and bounce_type
            labels += ["", ""]
        if name in COUNTERS and len(labels) == len(COUNTERS[name][1]):
            found[name][tuple(labels)] = found[name].get(tuple(labels), 0.0) + float(value)
    return found


def read_counters() -> dict[str, dict[tuple[str, ...], float]]:
    """The shared counters: {counter: {label values: count}}; empty without a Redis."""
    return _counters_of(_read_hash())


def zeroed_labels() -> dict[str, list[tuple[str, ...]]]:
    """The label values each counter shows from the first scrape, at 0 until counted: so
    ``rate()`` and alerts see a series before its first event (config errors' codes are
    not known in advance: they appear when counted)."""
    names = [found.name for found in lanes()]
    events: list[tuple[str, ...]] = [(kind, name, "") for name in names for kind in ZEROED_EVENTS]
    events += [("Bounce", name, bounce) for name in names for bounce in BOUNCE_TYPES]
    by_outcome: list[tuple[str, ...]] = [(outcome, name) for name in names for outcome in OUTCOMES]
    return {"sends": by_outcome, "recipients": by_outcome, "throttles": [(n,) for n in names],
            "retries": [(n,) for n in names], "ses_events": events}


@dataclass
class Latency:
    """One lane's latency histogram: per-bucket counts (not cumulative) and the sum."""

    buckets: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, sends at or under it) in Prometheus's order, ``+Inf`` last."""
        running, found = 0.0, []
        for bound in [*map(repr, LATENCY_BUCKETS), "+Inf"]:
            running += self.buckets.get(bound, 0.0)
            found.append((bound, running))
        return found


def _latencies_of(fields: dict[str, str]) -> dict[str, Latency]:
    found = {declared.name: Latency() for declared in lanes()}
    for raw_field, value in fields.items():
        name, *labels = raw_field.split(SEP)
        if name == f"{LATENCY}_bucket" and len(labels) == 2:
            found.setdefault(labels[0], Latency()).buckets[labels[1]] = float(value)
        elif name == f"{LATENCY}_sum" and len(labels) == 1:
            found.setdefault(labels[0], Latency()).total_seconds = float(value)
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
    #: each guarded lane -> the rate that holds it ("" while it sends); None: not read
    lane_holds: dict[str, str] | None = None
    #: the shared rate of each SES account and region mail went to (``usage.bucket_rates``)
    buckets: list[usage.BucketRate] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def slow_down(self) -> float | None:
        """The share of the base rate in force (1.0: no slow-down)."""
        if self.rate_in_force is None or not self.base_rate:
            return None
        return self.rate_in_force / self.base_rate


def cached_quota() -> usage.Quota:
    """The SES quota and the account's state, read at most once per ``QUOTA_CACHE_SECONDS``
    for all processes (in the shared-state Redis when there is one). Raises
    ``OperatorError``."""
    if store.redis_url() is None:
        return usage.fetch_quota_and_state()
    client = store.redis_client()
    key = store.key("metrics", "quota")
    stored = client.get(key)
    if stored is not None:
        return usage.Quota(**json.loads(stored))
    found = usage.fetch_quota_and_state()
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
    gauges.buckets = usage.bucket_rates()
    try:
        held = {hold.lane: hold.rate for hold in reputation.holds()}
        guarded = reputation.guarded_lanes() if reputation.enabled() else ()
        gauges.lane_holds = {name: held.get(name, "") for name in guarded}
    except (redis.RedisError, OSError) as exc:
        gauges.errors["lane_holds"] = str(exc)
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
            fields, counting = _read_hash(), store.redis_url() is not None
        except (redis.RedisError, OSError) as exc:
            logger.warning("metrics: counters not read (%s)", exc)
            fields, counting = {}, False
        zeroed = zeroed_labels() if counting else {}  # nothing counted: no zeros either
        for name, values in _counters_of(fields).items():
            yield counter_family(name, {**dict.fromkeys(zeroed.get(name, ()), 0.0), **values})
        if counting:
            yield latency_family(_latencies_of(fields))
        yield from gauge_families(read_gauges())

    def describe(self) -> list[Metric]:
        return []  # families vary with what is configured: no checks at registration


def counter_family(name: str, values: dict[tuple[str, ...], float]) -> Metric:
    help_text, label_names = COUNTERS[name]
    family = CounterMetricFamily(f"seacucumber_{name}", help_text, labels=label_names)
    for labels, value in sorted(values.items()):
        family.add_metric(list(labels), value)
    return family


def latency_family(latencies: dict[str, Latency]) -> Metric:
    family = HistogramMetricFamily(
        f"seacucumber_{LATENCY}", "Seconds from send_messages to SES accepting the send, by "
        "lane (waits for the rate, retries and queueing included).", labels=["lane"])
    for name, latency in sorted(latencies.items()):
        family.add_metric([name], latency.cumulative(), latency.total_seconds)
    return family


#: deprecated gauge name -> its new name; served beside it until the next release
DEPRECATED_ALIASES = {
    "rate_in_force": "rate_in_force_recipients_per_second",
    "max_send_rate": "quota_max_send_rate_recipients_per_second",
    "quota_max_24_hour_send": "quota_max_recipients_24h",
}


def bucket_families(rows: list[usage.BucketRate]) -> Iterator[Metric]:
    """The rate in force of each rate bucket (an SES account and region), when there are
    buckets."""
    if not rows:
        return
    per_bucket = GaugeMetricFamily(
        "seacucumber_bucket_rate_in_force_recipients_per_second", "Recipients per second the "
        "workers hold now in each rate bucket (an SES account and region).", labels=["bucket"])
    for row in rows:
        if row.rate_in_force is not None:
            per_bucket.add_metric([row.bucket], row.rate_in_force)
    yield per_bucket


def gauge_families(gauges: Gauges) -> Iterator[Metric]:
    def single(name: str, help_text: str, value: float | None) -> Iterator[Metric]:
        if value is None:
            return
        yield GaugeMetricFamily(f"seacucumber_{name}", help_text, value=value)
        for old, new in DEPRECATED_ALIASES.items():
            if new == name:
                yield GaugeMetricFamily(f"seacucumber_{old}", f"Deprecated: use "
                                        f"seacucumber_{new}. {help_text}", value=value)

    yield from single("rate_in_force_recipients_per_second", "Recipients per second the "
                      "workers hold now (shared rate, slow-down included).",
                      gauges.rate_in_force)
    yield from single("rate_slowdown_factor", "Share of the base rate in force after SES "
                      "throttling (1: none).", gauges.slow_down)
    yield from bucket_families(gauges.buckets)
    hold = GaugeMetricFamily("seacucumber_hold_seconds", "Seconds left of a hold on every "
                             "send (0: none), by kind.", labels=["hold"])
    hold.add_metric(["daily_quota"], gauges.quota_hold_seconds or 0.0)
    yield hold
    if gauges.lane_holds is not None:
        held = GaugeMetricFamily("seacucumber_lane_held", "1 while the reputation guard "
                                 "holds the lane (rate: the bounce or complaint rate that "
                                 "crossed its threshold), 0 for a guarded lane sending.",
                                 labels=["lane", "rate"])
        for name, rate in sorted(gauges.lane_holds.items()):
            held.add_metric([name, rate], 1.0 if rate else 0.0)
        yield held
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
                                    "settled, by state (queued; running: an attempt "
                                    "started).", labels=["state"])
        for outbox_state, value in sorted(gauges.outbox.items()):
            backlog.add_metric([outbox_state], value)
        yield backlog
    if gauges.quota is not None:
        yield from single("quota_max_recipients_24h", "SES 24-hour sending quota, "
                          "recipients (-1: unlimited).", gauges.quota.max_24_hour_send)
        yield from single("quota_sent_recipients_24h", "Recipients SES counted in the last "
                          "24 hours.", gauges.quota.sent_last_24_hours)
        yield from single("quota_max_send_rate_recipients_per_second", "SES maximum send "
                          "rate, recipients per second.", gauges.quota.max_send_rate)


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
