"""The account's SES usage: 24-hour quota, send rate, two weeks of send statistics, and the
bounce and complaint rates against the levels at which SES reviews or pauses an account;
from the shared state, the rate the workers hold (or why there is none) and a daily-quota
hold in force.

The logic behind ``manage.py ses_usage``. The quota comes from v1 ``GetSendQuota`` or, with
``USE_SES_V2``, v2 ``GetAccount``; the statistics from v1 ``GetSendStatistics`` (SES v2 has no
equivalent; the v1 API serves every account). SES errors come out as
``OperatorError``, naming the IAM action to allow when permission is missing.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..conf import conf
from ..ses.clients import client as ses_client
from ..ses.errors import ses_call
from . import outbox, ratelimit, reputation, store

#: SES's published levels (Developer Guide, "Reputation metrics messages"): at a bounce rate
#: of 5% SES puts the account under review, at 10% it may pause sending; for complaints
#: 0.1% and 0.5%.
BOUNCE_REVIEW, BOUNCE_AT_RISK = 0.05, 0.10
COMPLAINT_REVIEW, COMPLAINT_AT_RISK = 0.001, 0.005
STATISTICS_DAYS = 14


@dataclass(frozen=True)
class Quota:
    """GetSendQuota / GetAccount numbers. ``max_24_hour_send`` is -1 when unlimited."""

    max_24_hour_send: float
    max_send_rate: float
    sent_last_24_hours: float
    enforcement_status: str | None = None  # v2 only: HEALTHY, PROBATION, SHUTDOWN
    sending_enabled: bool | None = None  # v2 only

    @property
    def percent_used(self) -> float | None:
        if self.max_24_hour_send <= 0:
            return None
        return 100.0 * self.sent_last_24_hours / self.max_24_hour_send


@dataclass
class Day:
    """Send statistics of one UTC day."""

    date: str
    delivery_attempts: int = 0
    bounces: int = 0
    complaints: int = 0
    rejects: int = 0


@dataclass
class Usage:
    """Everything ``ses_usage`` shows."""

    region: str
    api: str
    quota: Quota
    days: list[Day] = field(default_factory=list)
    rate_in_force: float | None = None
    #: why there is no rate in force (no shared-state Redis, limiter off, Redis unreachable)
    rate_note: str | None = None
    #: seconds left of a daily-quota hold on every send, or None when sends are not held
    quota_hold_seconds: float | None = None
    #: sends queued and not yet settled (``outbox``): {"queued": n, "running": m}, or None
    #: when the outbox is off or could not be read
    outbox: dict[str, int] | None = None
    #: the reputation guard (``reputation.report``): per lane rates, samples, holds; None
    #: without a shared-state Redis, or when it could not be read
    reputation: dict[str, Any] | None = None

    @property
    def totals(self) -> Day:
        total = Day("total")
        for day in self.days:
            total.delivery_attempts += day.delivery_attempts
            total.bounces += day.bounces
            total.complaints += day.complaints
            total.rejects += day.rejects
        return total

    @property
    def bounce_rate(self) -> float | None:
        return _rate(self.totals.bounces, self.totals.delivery_attempts)

    @property
    def complaint_rate(self) -> float | None:
        return _rate(self.totals.complaints, self.totals.delivery_attempts)

    def to_json(self) -> dict[str, Any]:
        quota = asdict(self.quota)
        quota["percent_used"] = self.quota.percent_used
        return {
            "region": self.region,
            "api": self.api,
            "quota": quota,
            "rate_in_force": self.rate_in_force,
            "rate_note": self.rate_note,
            "quota_hold_seconds": self.quota_hold_seconds,
            "outbox": self.outbox,
            "reputation": self.reputation,
            "days": [asdict(day) for day in self.days],
            "totals": {k: v for k, v in asdict(self.totals).items() if k != "date"},
            "bounce_rate": self.bounce_rate,
            "bounce_level": level(self.bounce_rate, BOUNCE_REVIEW, BOUNCE_AT_RISK),
            "complaint_rate": self.complaint_rate,
            "complaint_level": level(self.complaint_rate, COMPLAINT_REVIEW, COMPLAINT_AT_RISK),
            "thresholds": {
                "bounce": {"review": BOUNCE_REVIEW, "at_risk": BOUNCE_AT_RISK},
                "complaint": {"review": COMPLAINT_REVIEW, "at_risk": COMPLAINT_AT_RISK},
            },
        }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def level(rate: float | None, review: float, at_risk: float) -> str:
    """``healthy``, ``review`` (SES reviews the account) or ``at_risk`` (SES may pause it);
    ``no data`` without sends."""
    if rate is None:
        return "no data"
    if rate >= at_risk:
        return "at_risk"
    if rate >= review:
        return "review"
    return "healthy"


NO_REDIS = "no shared rate (no Redis configured: set SEACUCUMBER_REDIS_URL)"
SHARED_RATE_OFF = "no shared rate (SEACUCUMBER_SHARED_RATE is False)"


@dataclass(frozen=True)
class SharedRate:
    """The shared rate as the workers see it now."""

    rate_in_force: float | None  #: recipients per second, None when there is none
    note: str | None = None  #: why ``rate_in_force`` is None
    quota_hold_seconds: float | None = None  #: seconds left of a daily-quota hold


def shared_rate() -> SharedRate:
    """The rate the workers hold now, why there is none, and a daily-quota hold in force.
    Never raises: a report must not fail on the shared state."""
    if not conf.SEACUCUMBER_SHARED_RATE:
        return SharedRate(None, SHARED_RATE_OFF)
    try:
        if store.redis_url() is None:
            return SharedRate(None, NO_REDIS)
        hold = ratelimit.quota_hold_remaining()
        rate = ratelimit.rate_in_force()
    except Exception as exc:  # noqa: BLE001 - Redis down, a bad rate setting, ...
        return SharedRate(None, f"unknown ({type(exc).__name__}: {exc})")
    return SharedRate(rate, None if rate is not None else NO_REDIS, hold)


def outbox_counts() -> dict[str, int] | None:
    """Sends the outbox holds (queued, running), or None when it is off or unreadable.
    Never raises."""
    try:
        return outbox.counts() if outbox.enabled() else None
    except Exception:  # noqa: BLE001 - a report must not fail on the shared state
        return None


def reputation_report() -> dict[str, Any] | None:
    """The reputation guard's state, or None without a shared Redis or when unreadable.
    Never raises."""
    try:
        return reputation.report() if store.redis_url() is not None else None
    except Exception:  # noqa: BLE001 - a report must not fail on the shared state
        return None


def rate_in_force() -> float | None:
    """Recipients per second the workers hold now under the shared rate, or ``None`` when
    there is no shared rate (see ``shared_rate`` for why)."""
    return shared_rate().rate_in_force


def fetch_quota() -> Quota:
    """The account's quota: v2 ``GetAccount`` with ``USE_SES_V2``, else v1 ``GetSendQuota``."""
    with ses_call():
        if conf.USE_SES_V2:
            account = ses_client("sesv2").get_account()
            quota = account.get("SendQuota", {})
            return Quota(
                float(quota.get("Max24HourSend", 0)),
                float(quota.get("MaxSendRate", 0)),
                float(quota.get("SentLast24Hours", 0)),
                account.get("EnforcementStatus"),
                account.get("SendingEnabled"),
            )
        quota = ses_client("ses").get_send_quota()
        return Quota(float(quota["Max24HourSend"]), float(quota["MaxSendRate"]),
                     float(quota["SentLast24Hours"]))


def fetch_days(today: dt.date | None = None) -> list[Day]:
    """v1 ``GetSendStatistics`` (15-minute data points over two weeks) summed per UTC day,
    one entry per day of the last ``STATISTICS_DAYS`` days, oldest first."""
    with ses_call():
        points = ses_client("ses").get_send_statistics().get("SendDataPoints", [])
    today = today or dt.datetime.now(dt.UTC).date()
    days = {
        (today - dt.timedelta(days=n)).isoformat(): Day((today - dt.timedelta(days=n)).isoformat())
        for n in range(STATISTICS_DAYS - 1, -1, -1)
    }
    for point in points:
        stamp = point["Timestamp"]
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(dt.UTC)
        day = days.setdefault(stamp.date().isoformat(), Day(stamp.date().isoformat()))
        day.delivery_attempts += int(point.get("DeliveryAttempts", 0))
        day.bounces += int(point.get("Bounces", 0))
        day.complaints += int(point.get("Complaints", 0))
        day.rejects += int(point.get("Rejects", 0))
    return [days[key] for key in sorted(days)]


def fetch() -> Usage:
    """Quota, statistics and the rate in force, from SES and the shared rate."""
    quota = fetch_quota()
    days = fetch_days()
    rate = shared_rate()
    return Usage(ses_client().meta.region_name, "v2" if conf.USE_SES_V2 else "v1", quota,
                 days, rate.rate_in_force, rate.note, rate.quota_hold_seconds, outbox_counts(),
                 reputation_report())


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def duration(seconds: float) -> str:
    """``1h 02m 05s``, ``9m 12s``, ``41s``: seconds rounded up, so a live hold never shows 0."""
    whole = max(1, math.ceil(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _percent(rate: float | None, digits: int) -> str:
    return "n/a" if rate is None else f"{100 * rate:.{digits}f}%"


def render(usage: Usage, bar_width: int = 30) -> str:
    """The usage as a readable text table, a bar of ``#`` per day."""
    quota = usage.quota
    limit = "unlimited" if quota.max_24_hour_send < 0 else _number(quota.max_24_hour_send)
    used = quota.percent_used
    used_text = "" if used is None else f" ({used:.1f}% of quota)"
    rate = ((usage.rate_note or "unknown") if usage.rate_in_force is None
            else f"{usage.rate_in_force:,.2f} recipients/s")
    lines = [
        f"SES usage in {usage.region} (SES {usage.api} API)",
        f"  24-hour quota      {limit}",
        f"  sent, last 24 h    {_number(quota.sent_last_24_hours)}{used_text}",
        f"  max send rate      {_number(quota.max_send_rate)} recipients/s",
        f"  rate in force      {rate}",
    ]
    if usage.quota_hold_seconds is not None:
        lines.append(f"  sends held         daily quota used up: held for "
                     f"{duration(usage.quota_hold_seconds)} more (SEACUCUMBER_QUOTA_HOLD)")
    if usage.outbox is not None:
        lines.append(f"  not yet settled    {usage.outbox['queued']:,} queued, "
                     f"{usage.outbox['running']:,} sending (the outbox)")
    if quota.enforcement_status is not None:
        lines.append(f"  account status     {quota.enforcement_status}"
                     f"{'' if quota.sending_enabled is not False else ', sending disabled'}")
    lines += ["", f"Send statistics, last {STATISTICS_DAYS} days (UTC days, GetSendStatistics)",
              f"  {'day':<10} {'attempts':>9} {'bounces':>8} {'complaints':>10} {'rejects':>8}"]
    peak = max((day.delivery_attempts for day in usage.days), default=0)
    for day in [*usage.days, usage.totals]:
        bar = ""
        if day.date != "total" and day.delivery_attempts:
            bar = "  " + "#" * max(1, round(bar_width * day.delivery_attempts / peak))
        lines.append(f"  {day.date:<10} {day.delivery_attempts:>9,} {day.bounces:>8,} "
                     f"{day.complaints:>10,} {day.rejects:>8,}{bar}")
    lines.append("")
    for name, value, digits, review, at_risk in (
        ("bounce rate", usage.bounce_rate, 2, BOUNCE_REVIEW, BOUNCE_AT_RISK),
        ("complaint rate", usage.complaint_rate, 3, COMPLAINT_REVIEW, COMPLAINT_AT_RISK),
    ):
        lines.append(
            f"{name.capitalize():<15} {_percent(value, digits):>7}   "
            f"{level(value, review, at_risk)} (SES reviews at {_percent(review, 1)}, "
            f"may pause at {_percent(at_risk, 1)})"
        )
    if usage.reputation is not None:
        lines += ["", *reputation.render(usage.reputation)]
    return "\n".join(lines)
