"""What the dashboard shows, in a handful of queries that stay fast at millions of status
records: sends per hour of the last 48 hours by outcome (one GROUP BY over the
``(queued_at, status)`` index), the latest failures (the ``(status, updated_at)`` index), the
stored daily statistics, the suppression list's size; and, from the shared state and SES,
the quota, the rate in force, queue depths, the outbox and holds (``operations.metrics``, the
same figures Prometheus scrapes)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone

from ..models import DailyStatistics, MessageStatus, Status, SuppressedAddress
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


def overview(with_quota: bool = True) -> Overview:
    return Overview(
        gauges=metrics.read_gauges(with_quota=with_quota),
        hours=sends_per_hour(),
        days=daily_rates(),
        suppressed=SuppressedAddress.objects.count(),
        failures=list(MessageStatus.objects.filter(status=Status.FAILED)
                      .order_by("-updated_at")[:LATEST_FAILURES]),
    )


LEVELS = {
    "bounce": (usage.BOUNCE_REVIEW, usage.BOUNCE_AT_RISK),
    "complaint": (usage.COMPLAINT_REVIEW, usage.COMPLAINT_AT_RISK),
}
