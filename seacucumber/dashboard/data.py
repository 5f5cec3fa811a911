"""What the dashboard shows, in a handful of queries that stay fast at millions of status
records: sends per hour of the last 48 hours by outcome (one GROUP BY over the
``(queued_at, status)`` index), the latest failures (the ``(status, updated_at)`` index), the
stored daily statistics, the suppression list's size; and, from the shared state and SES,
the quota, the rate in force, queue depths, the outbox and holds (``operations.metrics``, the
same figures Prometheus scrapes)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import redis
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone

from ..conf import conf, lanes
from ..models import DailyStatistics, MessageStatus, SendRecipient, Status, SuppressedAddress
from ..operations import metrics, usage
from ..shared import reputation

HOURS = 48
STORED_DAYS = 90  #: the rate charts show at most this many stored days
LATEST_FAILURES = 10

#: outcome -> the statuses it gathers, in the order the chart stacks them
OUTCOMES: dict[str, tuple[str, ...]] = {
    "sent": (Status.SENT, Status.DELIVERED),
    "bounced": (Status.BOUNCED,),
    "complained": (Status.COMPLAINED,),
    "failed": (Status.FAILED,),
    "suppressed": (Status.SUPPRESSED,),
    "cancelled": (Status.CANCELLED,),
    "queued": (Status.QUEUED,),
}
_OUTCOME_OF = {str(s): name for name, statuses in OUTCOMES.items() for s in statuses}


@dataclass
class Hour:
    start: dt.datetime
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class DayRates:
    date: dt.date
    attempts: int
    bounce_rate: float | None
    complaint_rate: float | None


@dataclass
class Overview:
    gauges: metrics.Gauges
    hours: list[Hour]
    days: list[DayRates]
    suppressed: int
    failures: list[MessageStatus]
    headlines: list[Headline] = field(default_factory=list)
    lanes: list[LaneRow] = field(default_factory=list)
    #: recipients per second SES accepted over the last ``ACTUAL_RATE_WINDOW`` seconds;
    #: None without status tracking
    actual_rate: float | None = None

    @property
    def throttles(self) -> int:
        return sum(lane.throttles for lane in self.lanes)

    @property
    def retries(self) -> int:
        return sum(lane.retries for lane in self.lanes)

    @property
    def sends_48h(self) -> dict[str, int]:
        totals = dict.fromkeys(OUTCOMES, 0)
        for hour in self.hours:
            for name, value in hour.counts.items():
                totals[name] += value
        return totals


def sends_per_hour(now: dt.datetime | None = None, hours: int = HOURS) -> list[Hour]:
    """Sends queued in each of the last ``hours`` hours (UTC), by their outcome now."""
    now = now or timezone.now()
    last = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    first = last - dt.timedelta(hours=hours - 1)
    found = {first + dt.timedelta(hours=n): Hour(first + dt.timedelta(hours=n))
             for n in range(hours)}
    rows = (MessageStatus.objects.filter(queued_at__gte=first)
            .annotate(hour=TruncHour("queued_at", tzinfo=dt.UTC))
            .values("hour", "status").annotate(n=Count("*")).order_by())
    for row in rows:
        hour = found.get(row["hour"].astimezone(dt.UTC))
        if hour is not None:
            hour.counts[_OUTCOME_OF.get(row["status"], "queued")] += row["n"]
    return list(found.values())


def daily_rates(days: int = STORED_DAYS) -> list[DayRates]:
    """Bounce and complaint rates of the stored days (``get_ses_statistics``), oldest first."""
    rows = list(DailyStatistics.objects.order_by("-date")[:days])
    return [DayRates(row.date, row.delivery_attempts,
                     row.bounces / row.delivery_attempts if row.delivery_attempts else None,
                     row.complaints / row.delivery_attempts if row.delivery_attempts else None)
            for row in reversed(rows)]


def reputation_holds() -> list[reputation.Hold]:
    """Lanes the reputation guard holds; empty when it cannot tell (a page must not fail on
    the shared state: ``ses_reputation status`` says why)."""
    try:
        return reputation.holds()
    except Exception:  # noqa: BLE001 - Redis down or unset
        return []


LEVELS = {
    "bounce": (usage.BOUNCE_REVIEW, usage.BOUNCE_AT_RISK),
    "complaint": (usage.COMPLAINT_REVIEW, usage.COMPLAINT_AT_RISK),
}


def percent(rate: float | None) -> str:
    """A rate as people read it: 0.00717 -> "0.717%", 0.05 -> "5%"; "-" for none."""
    return "-" if rate is None else f"{float(f'{100 * rate:.3g}'):g}%"


@dataclass
class Rated:
    """A bounce or complaint rate against SES's levels: ``level`` is ``healthy``, ``review``
    (SES reviews the account), ``at_risk`` (SES may pause it) or ``no data``."""

    name: str  #: "bounce" or "complaint"
    rate: float | None = None

    @property
    def review(self) -> float:
        return LEVELS[self.name][0]

    @property
    def pause(self) -> float:
        return LEVELS[self.name][1]

    @property
    def level(self) -> str:
        return usage.level(self.rate, self.review, self.pause)

    @property
    def text(self) -> str:
        return percent(self.rate)

    @property
    def review_text(self) -> str:
        return percent(self.review)

    @property
    def pause_text(self) -> str:
        return percent(self.pause)


@dataclass
class Headline(Rated):
    """A headline rate: the latest stored day's (``day``)."""

    day: dt.date | None = None


def headline_rates(days: list[DayRates]) -> list[Headline]:
    """The latest stored day's bounce and complaint rates (the latest day with sends)."""
    latest = next((day for day in reversed(days) if day.attempts), None)
    return [Headline(name, getattr(latest, f"{name}_rate") if latest else None,
                     latest.date if latest else None) for name in LEVELS]


@dataclass
class LaneRow:
    """One lane on the dashboard: what the metrics counted since they started, and the
    reputation guard's window (rates judged on recipients sent) and hold."""

    name: str
    sends: int = 0  #: sends SES accepted
    recipients: int = 0  #: their recipients
    failed: int = 0
    throttles: int = 0
    retries: int = 0
    bounce: Rated = field(default_factory=lambda: Rated("bounce"))
    complaint: Rated = field(default_factory=lambda: Rated("complaint"))
    guarded: bool = False
    hold: reputation.Hold | None = None


def lane_rows(counters: dict[str, dict[tuple[str, ...], float]],
              guard: dict[str, Any] | None) -> list[LaneRow]:
    """Every declared lane (and any other the counters or the guard know), in priority
    order, from ``metrics.read_counters`` and ``reputation.report``."""
    rows = {declared.name: LaneRow(declared.name) for declared in lanes()}
    for (outcome, lane), value in counters.get("sends", {}).items():
        row = rows.setdefault(lane, LaneRow(lane))
        if outcome == "sent":
            row.sends += int(value)
        elif outcome == "failed":
            row.failed += int(value)
    for (outcome, lane), value in counters.get("recipients", {}).items():
        if outcome == "sent":
            rows.setdefault(lane, LaneRow(lane)).recipients += int(value)
    for name in ("throttles", "retries"):
        for (lane,), value in counters.get(name, {}).items():
            row = rows.setdefault(lane, LaneRow(lane))
            setattr(row, name, getattr(row, name) + int(value))
    for lane, found in ((guard or {}).get("lanes") or {}).items():
        row = rows.setdefault(lane, LaneRow(lane))
        row.bounce.rate, row.complaint.rate = found["bounce_rate"], found["complaint_rate"]
        row.guarded = bool(found["guarded"])
        row.hold = reputation.Hold(**found["hold"]) if found.get("hold") else None
    return list(rows.values())


#: Seconds the actual send rate is measured over.
ACTUAL_RATE_WINDOW = 60
#: The statuses a send SES accepted can have moved on to within a minute.
_ACCEPTED = (Status.SENT, Status.DELIVERED, Status.BOUNCED, Status.COMPLAINED)


def actual_rate(now: dt.datetime | None = None,
                window: int = ACTUAL_RATE_WINDOW) -> float | None:
    """Recipients per second SES accepted over the last ``window`` seconds, from the status
    records (each touched when it was sent, so the ``(status, updated_at)`` index finds the
    last minute's); None when status tracking is off. The rate beside the limit: what the
    workers reach, where the limit is what they may."""
    if not conf.SEACUCUMBER_TRACK_STATUS:
        return None
    since = (now or timezone.now()) - dt.timedelta(seconds=window)
    sent = MessageStatus.objects.filter(status__in=_ACCEPTED, updated_at__gte=since,
                                        sent_at__gte=since)
    return SendRecipient.objects.filter(send__in=sent).count() / window


def overview(with_quota: bool = True) -> Overview:
    days = daily_rates()
    try:
        counters = metrics.read_counters()
    except (redis.RedisError, OSError):
        counters = {}
    return Overview(
        gauges=metrics.read_gauges(with_quota=with_quota),
        hours=sends_per_hour(),
        days=days,
        suppressed=SuppressedAddress.objects.count(),
        failures=list(MessageStatus.objects.filter(status=Status.FAILED)
                      .order_by("-updated_at")[:LATEST_FAILURES]),
        headlines=headline_rates(days),
        lanes=lane_rows(counters, usage.reputation_report()),
        actual_rate=actual_rate(),
    )
