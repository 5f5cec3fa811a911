"""The account's SES usage: 24-hour quota, send rate, two weeks of send statistics, and the
bounce and complaint rates against the levels at which SES reviews or pauses an account;
from the shared state, the rate the workers hold (or why there is none) and a daily-quota
hold in force, for each rate bucket (an SES account and region mail went to: ``buckets``).

The logic behind ``manage.py ses_usage``. The quota comes from v1 ``GetSendQuota`` or, with
``USE_SES_V2``, v2 ``GetAccount``; the statistics from v1 ``GetSendStatistics`` (SES v2 has no
equivalent; the v1 API serves every account). SES errors come out as
``OperatorError``, naming the IAM action to allow when permission is missing.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..conf import conf
from ..exceptions import OperatorError
from ..ses.clients import client as ses_client
from ..ses.errors import ses_call
from ..shared import buckets, outbox, ratelimit, reputation, store, workers
from ..shared import quota as shared_quota

#: SES's published levels (Developer Guide, "Reputation metrics messages"): at a bounce rate
#: of 5% SES puts the account under review, at 10% it may pause sending; for complaints
#: 0.1% and 0.5%.
BOUNCE_REVIEW, BOUNCE_AT_RISK = 0.05, 0.10
COMPLAINT_REVIEW, COMPLAINT_AT_RISK = 0.001, 0.005
STATISTICS_DAYS = 14

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quota:
    """GetSendQuota / GetAccount numbers. ``max_24_hour_send`` is -1 when unlimited."""

    max_24_hour_send: float
    max_send_rate: float
    sent_last_24_hours: float
    enforcement_status: str | None = None  # v2 only: HEALTHY, PROBATION, SHUTDOWN
    sending_enabled: bool | None = None  # v2 only
    production_access_enabled: bool | None = None  # v2 only: False in the sandbox

    @property
    def sandbox(self) -> bool:
        return self.production_access_enabled is False

    @property
    def percent_used(self) -> float | None:
        if self.max_24_hour_send <= 0:
            return None
        return 100.0 * self.sent_last_24_hours / self.max_24_hour_send


#: What the SES sandbox means for sending (SES Developer Guide, "Request production access").
SANDBOX_MEANS = ("mail goes only to verified addresses and domains, at most 200 messages in "
                 "24 hours and 1 per second")


@dataclass(frozen=True)
class AccountState:
    """SES v2 ``GetAccount``'s view of the account: may it send, SES's enforcement status
    (HEALTHY, PROBATION, SHUTDOWN), and has it left the sandbox. None: SES did not say."""

    sending_enabled: bool | None
    enforcement_status: str | None
    production_access_enabled: bool | None

    @property
    def sandbox(self) -> bool:
        return self.production_access_enabled is False

    @classmethod
    def from_account(cls, account: dict[str, Any]) -> AccountState:
        return cls(account.get("SendingEnabled"), account.get("EnforcementStatus"),
                   account.get("ProductionAccessEnabled"))


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
    #: v2 GetAccount's account state, or None when it could not be read (``account_note``)
    account: AccountState | None = None
    account_note: str | None = None
    #: each queue mail goes to: depth, oldest waiting send, live consumers (``workers``)
    queues: list[workers.QueueState] = field(default_factory=list)
    #: what of the queues could not be read (part -> error)
    queue_notes: dict[str, str] = field(default_factory=dict)
    #: the shared rate of each SES account and region (``bucket_rates``)
    buckets: list[BucketRate] = field(default_factory=list)

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
            "account": None if self.account is None else {
                **asdict(self.account), "sandbox": self.account.sandbox},
            "account_note": self.account_note,
            "queues": [state.to_json() for state in self.queues],
            "queue_notes": self.queue_notes,
            "buckets": [asdict(found) for found in self.buckets],
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


@dataclass(frozen=True)
class BucketRate:
    """One rate bucket (an SES account and region, ``buckets``) as the workers hold it."""

    bucket: str  #: its id: ``default`` for the settings' own client
    options: dict[str, str]  #: the client options that reach it (region, endpoint, profile)
    max_send_rate: float | None  #: SES's MaxSendRate as the workers learned it (None: not)
    source: str | None  #: where the rate came from (GetAccount, GetSendQuota, fallback ...)
    rate_in_force: float | None  #: recipients per second, slow-down included
    quota_hold_seconds: float | None = None  #: seconds left of its daily-quota hold
    note: str | None = None  #: why a part is unknown


def _bucket_rate(bucket: buckets.Bucket) -> BucketRate:
    try:  # a configured rate asks SES nothing, here either
        record = ({"source": "SEACUCUMBER_RATE_LIMIT"} if shared_quota.configured_rate()
                  else shared_quota.shared(bucket))
        found = record.get("max_send_rate")
        return BucketRate(bucket.id, bucket.options(), None if found is None else float(found),
                          record.get("source"), ratelimit.rate_in_force(bucket),
                          ratelimit.quota_hold_remaining(bucket))
    except Exception as exc:  # noqa: BLE001 - Redis down, SES refused: a report goes on
        return BucketRate(bucket.id, bucket.options(), None, None, None,
                          note=f"unknown ({type(exc).__name__}: {exc})")


def bucket_rates() -> list[BucketRate]:
    """The shared rate of every bucket the workers sent through (the default first); empty
    without a shared rate (``shared_rate`` says why). Never raises."""
    if not conf.SEACUCUMBER_SHARED_RATE or store.redis_url() is None:
        return []
    try:
        known = buckets.known()
    except Exception as exc:  # noqa: BLE001 - a report must not fail on the shared state
        return [BucketRate(buckets.DEFAULT, {}, None, None, None,
                           note=f"unknown ({type(exc).__name__}: {exc})")]
    return [_bucket_rate(bucket) for bucket in known]


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


def _get_account() -> dict[str, Any]:
    with ses_call():
        return dict(ses_client("sesv2").get_account())


def _quota_of(account: dict[str, Any]) -> Quota:
    quota = account.get("SendQuota", {})
    return Quota(
        float(quota.get("Max24HourSend", 0)),
        float(quota.get("MaxSendRate", 0)),
        float(quota.get("SentLast24Hours", 0)),
        account.get("EnforcementStatus"),
        account.get("SendingEnabled"),
        account.get("ProductionAccessEnabled"),
    )


def fetch_account_state() -> AccountState:
    """v2 ``GetAccount``'s account state (whichever API sends). Raises ``OperatorError``."""
    return AccountState.from_account(_get_account())


def fetch_quota() -> Quota:
    """The account's quota: v2 ``GetAccount`` with ``USE_SES_V2``, else v1 ``GetSendQuota``."""
    if conf.USE_SES_V2:
        return _quota_of(_get_account())
    with ses_call():
        quota = ses_client("ses").get_send_quota()
        return Quota(float(quota["Max24HourSend"]), float(quota["MaxSendRate"]),
                     float(quota["SentLast24Hours"]))


def fetch_quota_and_state() -> Quota:
    """The quota with the account's state, whichever API sends: under v1, ``GetSendQuota``
    and a v2 ``GetAccount`` of its own, which may fail (no ``ses:GetAccount``) leaving the
    state unknown rather than failing the quota."""
    quota = fetch_quota()
    if conf.USE_SES_V2:
        return quota
    try:
        state = fetch_account_state()
    except OperatorError:
        return quota
    return replace(quota, enforcement_status=state.enforcement_status,
                   sending_enabled=state.sending_enabled,
                   production_access_enabled=state.production_access_enabled)


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
    """Quota, statistics, the account's state and the rate in force, from SES and the shared
    rate. The account state comes from the same GetAccount as the quota under v2; under v1
    from a GetAccount of its own, which may fail (no ``ses:GetAccount``) without failing the
    report."""
    account: AccountState | None = None
    note: str | None = None
    if conf.USE_SES_V2:
        answer = _get_account()
        quota, account = _quota_of(answer), AccountState.from_account(answer)
    else:
        quota = fetch_quota()
        try:
            account = fetch_account_state()
        except OperatorError as exc:
            note = str(exc)
    days = fetch_days()
    rate = shared_rate()
    queues, queue_notes = workers.queue_states()
    return Usage(ses_client().meta.region_name, "v2" if conf.USE_SES_V2 else "v1", quota,
                 days, rate.rate_in_force, rate.note, rate.quota_hold_seconds, outbox_counts(),
                 reputation_report(), account, note, queues, queue_notes, bucket_rates())


def check_account_at_start() -> None:
    """Log what the account's state means for sending (a worker calls this as it starts): an
    ERROR when SES has sending disabled, a WARNING in the sandbox. Never raises: SES out of
    reach or the call not permitted is logged and the worker goes on."""
    try:
        state = fetch_account_state()
    except Exception as exc:  # noqa: BLE001 - OperatorError, a bad setting: log and go on
        logger.warning("SES account state not read at worker start (%s); sending goes on",
                       exc)
        return
    region = ses_client("sesv2").meta.region_name
    if state.sending_enabled is False:
        logger.error(
            "SES sending is DISABLED for this account in %s (GetAccount SendingEnabled false, "
            "enforcement status %s): every send will fail until it is enabled again (see the "
            "SES console, Reputation metrics)", region, state.enforcement_status or "unknown")
    if state.sandbox:
        logger.warning(
            "the SES account in %s is in the sandbox (GetAccount ProductionAccessEnabled "
            "false): %s; mail to anyone else is refused. Request production access in the SES "
            "console.", region, SANDBOX_MEANS)
    if state.production_access_enabled and state.sending_enabled:
        logger.info("SES account in %s: production access, sending enabled, enforcement "
                    "status %s", region, state.enforcement_status or "unknown")


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


def _account_lines(usage: Usage) -> list[str]:
    state = usage.account
    if state is None:
        return [f"  account status     unknown ({usage.account_note or 'not read'})"]
    access = {True: "yes", None: "unknown"}.get(state.production_access_enabled,
                                               f"NO: the sandbox ({SANDBOX_MEANS})")
    sending = {True: "enabled", None: "unknown"}.get(
        state.sending_enabled, "DISABLED by SES: every send fails")
    return [f"  account status     {state.enforcement_status or 'unknown'}"
            f"{'' if state.sending_enabled is not False else ', sending disabled'}",
            f"  production access  {access}",
            f"  sending            {sending}"]


def _queue_lines(usage: Usage) -> list[str]:
    """Each queue mail goes to: waiting sends, the oldest one's age, the live workers."""
    if not usage.queues and not usage.queue_notes:
        return []
    lines = ["", "Queues (send tasks waiting; live workers from their heartbeats)",
             f"  {'queue':<24} {'waiting':>8} {'oldest':>9}  workers"]
    for state in usage.queues:
        depth = "?" if state.depth is None else f"{state.depth:,}"
        oldest = "-" if state.oldest_age is None else duration(state.oldest_age)
        if state.consumers is None:
            consumed = "unknown (no shared-state Redis)"
        elif state.consumers:
            consumed = ", ".join(state.consumers)
        else:
            consumed = "NONE: no live worker consumes it; mail here waits"
        senders = f" ({', '.join(state.senders)})" if state.senders else ""
        lines.append(f"  {state.name:<24} {depth:>8} {oldest:>9}  {consumed}{senders}")
    lines += [f"  {part}: not read ({note})" for part, note in usage.queue_notes.items()]
    return lines


def _bucket_lines(usage: Usage) -> list[str]:
    """A row per rate bucket (an SES account and region) when mail went to more than one."""
    if len(usage.buckets) < 2:
        return []
    lines = ["", "Send rate per SES account and region (rate buckets)",
             f"  {'bucket':<22} {'max rate':>9} {'in force':>9}  reached with"]
    for row in usage.buckets:
        most = "?" if row.max_send_rate is None else _number(row.max_send_rate)
        force = "?" if row.rate_in_force is None else f"{row.rate_in_force:,.2f}"
        reach = ", ".join(f"{k}={v}" for k, v in row.options.items()) or "the settings' client"
        held = "" if row.quota_hold_seconds is None else \
            f"; HELD {duration(row.quota_hold_seconds)} (daily quota used up)"
        note = f"; {row.note}" if row.note else ""
        lines.append(f"  {row.bucket:<22} {most:>9} {force:>9}  {reach}{held}{note}")
    return lines


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
                     f"{usage.outbox['running']:,} running (the outbox)")
    lines += _account_lines(usage)
    lines += _bucket_lines(usage)
    lines += _queue_lines(usage)
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
