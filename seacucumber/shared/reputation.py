"""The reputation guard: rolling bounce and complaint rates per lane (and per configuration
set), and a hold on a guarded lane (``bulk`` by default) before SES reviews or pauses the
whole account.

Why here: SES judges the account as a whole (a review at a 5% bounce or 0.1% complaint
rate, a pause at 10% / 0.5%), and a pause stops password resets along with the newsletter.
The mail that usually drives the rates up is bulk mail, so that lane is held as soon as its
own rates cross thresholds set below SES's levels, while transactional mail goes on.

Counting, in the shared-state Redis: one hash per lane (and per configuration set) per
hour, ``<prefix>:reputation:<lane|cs>:<name>:<hour>``, fields ``sent`` (recipients SES
accepted), ``bounced`` (permanently bounced recipients) and ``complained``, each key kept
one rolling window (``SEACUCUMBER_REPUTATION_WINDOW``) plus an hour. The worker adds its
``sent`` count in the settling round trip it makes anyway (``attempt.settle``, with
``COUNT_LUA``); the webhook counts events (``record_event``) once their transaction
commits, at the time they arrive. A rate is judged
only on a sample of at least ``SEACUCUMBER_REPUTATION_MIN_SENDS`` recipients (for complaints,
``SEACUCUMBER_REPUTATION_MIN_COMPLAINT_SENDS``, so one complaint alone cannot trip it).

Holding: ``<prefix>:reputation:hold:<lane>`` holds the reason as JSON (no expiry: only an
operator ends a hold, ``manage.py ses_reputation release``). A worker reads it before it
claims the send or books the shared rate (``hold_key`` + ``read_hold``: the key to read and
a pure reading of its value, so the read can ride on a round trip the worker makes anyway)
and re-queues a held send without calling SES.

Re-arming: a release stores the lane's current-hour counts as a baseline
(``<prefix>:reputation:released:<lane>``); from then on the lane is judged only on what was
counted after the release (later hours in full, the release's hour less its baseline), so the
numbers that caused the hold cannot hold the lane again at once, and the minimum sample has
to be met afresh.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis
from django.core.exceptions import ImproperlyConfigured

from .. import signals
from ..conf import conf
from ..conf import lane as conf_lane
from . import store

logger = logging.getLogger(__name__)

BUCKET_SECONDS = 3600  #: one hash per lane per hour
FIELDS = ("sent", "bounced", "complained")
LANE, CONFIGURATION_SET = "lane", "cs"
#: SES message tag names on an event's ``mail.tags``: ours (set on every send) and SES's own.
LANE_TAG, CONFIGURATION_SET_TAG = "seacucumber-lane", "ses:configuration-set"


def default_lane() -> str:
    """The first lane's name: the lane of mail that names none (``SEACUCUMBER_LANES``)."""
    return conf_lane().name


def _first_lane_or_none() -> str | None:
    """The first lane's name, or None while SEACUCUMBER_LANES is malformed (E012 says so)."""
    try:
        return default_lane()
    except ImproperlyConfigured:
        return None


def enabled() -> bool:
    """Whether the guard counts and holds: the setting is on and there is a shared Redis."""
    return conf.derived("reputation:enabled", lambda: bool(conf.SEACUCUMBER_REPUTATION_GUARD)
                        and store.redis_url() is not None)


def guarded_lanes() -> tuple[str, ...]:
    return tuple(conf.SEACUCUMBER_REPUTATION_GUARD_LANES or ())


def window_seconds() -> int:
    """The rolling window, in whole buckets' worth of seconds (at least one bucket)."""
    buckets = max(1, math.ceil(float(conf.SEACUCUMBER_REPUTATION_WINDOW) / BUCKET_SECONDS))
    return buckets * BUCKET_SECONDS


def _bucket(now: float) -> int:
    return int(now // BUCKET_SECONDS)


def bucket_key(scope: str, name: str, bucket: int) -> str:
    return store.key("reputation", scope, name, str(bucket))


def names_key(scope: str) -> str:
    """A set of the lanes (configuration sets) counted lately, for reports."""
    return store.key("reputation", "names", scope)


def hold_key_of(lane: str) -> str:
    return store.key("reputation", "hold", lane)


def released_key(lane: str) -> str:
    return store.key("reputation", "released", lane)


def setting_problems() -> list[str]:
    """What is wrong with the guard's settings, one line each (the system check E032 shows
    them before a worker or the webhook trips over one)."""
    problems = []
    lanes = conf.SEACUCUMBER_REPUTATION_GUARD_LANES
    if isinstance(lanes, str) or not isinstance(lanes, list | tuple) or not all(
            isinstance(lane, str) and lane for lane in lanes):
        problems.append(f"SEACUCUMBER_REPUTATION_GUARD_LANES = {lanes!r}: a list of lane names")
    elif _first_lane_or_none() in lanes:
        problems.append(f"SEACUCUMBER_REPUTATION_GUARD_LANES holds {default_lane()!r}, the "
                        "first lane: holding transactional mail is what the guard is there "
                        "to prevent")
    checks = (
        ("SEACUCUMBER_REPUTATION_WINDOW", lambda v: v >= BUCKET_SECONDS,
         f"seconds, at least {BUCKET_SECONDS}"),
        ("SEACUCUMBER_REPUTATION_BOUNCE_THRESHOLD", lambda v: 0 < v < 1, "a fraction, 0 to 1"),
        ("SEACUCUMBER_REPUTATION_COMPLAINT_THRESHOLD", lambda v: 0 < v < 1,
         "a fraction, 0 to 1"),
        ("SEACUCUMBER_REPUTATION_MIN_SENDS", lambda v: v >= 1 and v == int(v),
         "a whole number of recipients, at least 1"),
        ("SEACUCUMBER_REPUTATION_MIN_COMPLAINT_SENDS", lambda v: v >= 1 and v == int(v),
         "a whole number of recipients, at least 1"),
        ("SEACUCUMBER_REPUTATION_RETRY", lambda v: v > 0, "seconds, above 0"),
    )
    for name, good, meaning in checks:
        value = getattr(conf, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not good(value):
            problems.append(f"{name} = {value!r}: {meaning}")
    return problems


# --- counting -----------------------------------------------------------------------------

#: A Lua fragment (``count_reputation``: recipients counted per scope) other scripts include;
#: ``reputation_count.lua`` says which keys and arguments it reads.
COUNT_LUA = store.lua_fragment(__file__, "reputation_count.lua")

_COUNT = COUNT_LUA + """
count_reputation(1, 1)
return 1
"""


def counted(field: str, lane: str, configuration_set: str | None, recipients: int,
            now: float) -> tuple[list[str], list[Any]]:
    """The keys and arguments ``COUNT_LUA`` takes to count ``recipients`` under ``field``
    for the lane (and the configuration set); nothing while the guard is off."""
    if not enabled() or recipients <= 0:
        return [], []
    bucket = _bucket(now)
    keys: list[str] = []
    names: list[str] = []
    for scope, name in _scopes(lane, configuration_set):
        keys += [bucket_key(scope, name, bucket), names_key(scope)]
        names.append(name)
    return keys, [field, recipients, window_seconds() + BUCKET_SECONDS, *names]


def _scopes(lane: str, configuration_set: str | None) -> list[tuple[str, str]]:
    found = [(LANE, lane)]
    if configuration_set:
        found.append((CONFIGURATION_SET, configuration_set))
    return found


def count(field: str, lane: str, configuration_set: str | None, recipients: int,
          now: float | None = None) -> None:
    """Count ``recipients`` under ``field`` (``FIELDS``) now: one round trip. A worker's
    sent recipients ride on ``attempt.settle``'s round trip instead."""
    if field not in FIELDS:
        raise ValueError(f"the guard counts {', '.join(FIELDS)}, not {field!r}")
    keys, args = counted(field, lane, configuration_set, recipients,
                         time.time() if now is None else now)
    if keys:
        store.run_script(_COUNT, keys, args)


def record_event(field: str, lane: str, configuration_set: str | None, recipients: int,
                 now: float | None = None) -> Hold | None:
    """Count ``recipients`` permanently bounced (``field`` "bounced") or complaining
    ("complained") recipients, then judge the lane; returns the hold this placed, if any."""
    if field not in FIELDS[1:]:
        raise ValueError(f"record_event counts bounced or complained, not {field!r}")
    if not enabled() or recipients <= 0:
        return None
    now = time.time() if now is None else now
    count(field, lane, configuration_set, recipients, now)
    return judge(lane, now)


@dataclass(frozen=True)
class Counts:
    """Recipients sent, permanently bounced and complaining, in a window."""

    sent: int = 0
    bounced: int = 0
    complained: int = 0

    def rate(self, field: str) -> float | None:
        return getattr(self, field) / self.sent if self.sent else None

    def __sub__(self, other: Counts) -> Counts:
        return Counts(*(max(0, getattr(self, f) - getattr(other, f)) for f in FIELDS))

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f) + getattr(other, f) for f in FIELDS))


def _counts(values: list[Any]) -> Counts:
    return Counts(*(int(v or 0) for v in values))


def window_counts(scope: str, name: str, now: float | None = None,
                  client: redis.Redis | None = None) -> tuple[Counts, Counts]:
    """(the whole window's counts, those since the last release: what the guard judges)."""
    now = time.time() if now is None else now
    client = client or store.redis_client()
    last = _bucket(now)
    buckets = list(range(last - window_seconds() // BUCKET_SECONDS + 1, last + 1))
    pipe = client.pipeline(transaction=False)
    for bucket in buckets:
        pipe.hmget(bucket_key(scope, name, bucket), *FIELDS)
    if scope == LANE:
        pipe.get(released_key(name))
    found = pipe.execute()
    per_bucket = {b: _counts(v) for b, v in zip(buckets, found, strict=False)}
    total = sum(per_bucket.values(), Counts())
    release = _read_release(found[-1]) if scope == LANE else None
    if release is None:
        return total, total
    since = Counts()
    for bucket, counts in per_bucket.items():
        if bucket > release["bucket"]:
            since += counts
        elif bucket == release["bucket"]:
            since += counts - Counts(**release["base"])
    return total, since


def _read_release(value: Any) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        found = json.loads(value)
        return {"at": float(found["at"]), "bucket": int(found["bucket"]),
                "base": {f: int(found["base"].get(f, 0)) for f in FIELDS}}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


# --- judging and holding -----------------------------------------------------------------

@dataclass(frozen=True)
class Hold:
    """Why a lane is held: the rate, its value and threshold, the sample, when (Unix time)."""

    lane: str
    rate: str        #: "bounce" or "complaint"
    value: float
    threshold: float
    sample: int      #: recipients sent in the judged window
    at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def describe(self) -> str:
        """One line for people: the rate, its value, the threshold and the sample."""
        return (f"{self.rate} rate {100 * self.value:.3f}% is above the threshold "
                f"{100 * self.threshold:.3f}% ({self.sample:,} recipients sent in the window)")


def read_hold(value: bytes | str | None, lane: str = "") -> Hold | None:
    """The hold a hold key's ``value`` holds (None: the lane is not held). Pure: the caller
    reads the key however it likes. A value that is not ours still holds the lane."""
    if value is None:
        return None
    try:
        data = json.loads(value)
        return Hold(str(data["lane"]), str(data["rate"]), float(data["value"]),
                    float(data["threshold"]), int(data["sample"]), float(data["at"]))
    except (ValueError, TypeError, KeyError):
        return Hold(lane, "unknown", 0.0, 0.0, 0, 0.0)


def hold_key(lane: str) -> str | None:
    """The key a worker reads before sending on ``lane``; None when nothing can hold it
    (guard off, or a lane not guarded): no read needed."""
    if not enabled() or lane not in guarded_lanes():
        return None
    return hold_key_of(lane)


def _limits() -> list[tuple[str, str, float, int]]:
    """(rate name, counted field, threshold, minimum sample) for each judged rate."""
    return [
        ("bounce", "bounced", float(conf.SEACUCUMBER_REPUTATION_BOUNCE_THRESHOLD),
         int(conf.SEACUCUMBER_REPUTATION_MIN_SENDS)),
        ("complaint", "complained", float(conf.SEACUCUMBER_REPUTATION_COMPLAINT_THRESHOLD),
         max(int(conf.SEACUCUMBER_REPUTATION_MIN_SENDS),
             int(conf.SEACUCUMBER_REPUTATION_MIN_COMPLAINT_SENDS))),
    ]


def crossed(counts: Counts, lane: str, now: float) -> Hold | None:
    """The first threshold ``counts`` cross with a large enough sample, as a hold (pure)."""
    for name, field, threshold, minimum in _limits():
        value = counts.rate(field)
        if counts.sent >= minimum and value is not None and value > threshold:
            return Hold(lane, name, value, threshold, counts.sent, now)
    return None


def judge(lane: str, now: float | None = None) -> Hold | None:
    """Judge a guarded lane's rates since its last release; hold it when one crosses its
    threshold. Returns the new hold (None: not held now, or held already)."""
    if not enabled() or lane not in guarded_lanes():
        return None
    now = time.time() if now is None else now
    client = store.redis_client()
    hold = crossed(window_counts(LANE, lane, now, client)[1], lane, now)
    if hold is None or not client.set(hold_key_of(lane), hold.to_json(), nx=True):
        return None
    logger.error("reputation guard: lane %r held: %s; release it with "
                 "`manage.py ses_reputation release %s`", lane, hold.describe(), lane)
    signals.reputation_hold.send(sender=Hold, lane=lane, hold=hold)
    return hold


def release(lane: str, now: float | None = None) -> Hold | None:
    """End a hold on ``lane`` and re-arm the guard (see the module docstring); returns the
    hold released (None: it was not held; it is re-armed all the same)."""
    now = time.time() if now is None else now
    client = store.redis_client()
    bucket = _bucket(now)
    base = _counts(client.hmget(bucket_key(LANE, lane, bucket), *FIELDS))
    pipe = client.pipeline(transaction=True)
    pipe.get(hold_key_of(lane))
    pipe.delete(hold_key_of(lane))
    pipe.set(released_key(lane),
             json.dumps({"at": now, "bucket": bucket, "base": asdict(base)}),
             ex=window_seconds() + BUCKET_SECONDS)
    value = pipe.execute()[0]
    hold = read_hold(value, lane)
    if hold is not None:
        logger.warning("reputation guard: lane %r released (held for its %s rate since %s)",
                       lane, hold.rate, time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                                      time.gmtime(hold.at)))
    signals.reputation_released.send(sender=Hold, lane=lane, hold=hold)
    return hold


def holds() -> list[Hold]:
    """The holds in force on the guarded lanes (one round trip), for the dashboard."""
    lanes = guarded_lanes()
    if store.redis_url() is None or not lanes:
        return []
    values = store.redis_client().mget([hold_key_of(lane) for lane in lanes])
    return [hold for lane, value in zip(lanes, values, strict=True)
            if (hold := read_hold(value, lane)) is not None]


# --- reports ----------------------------------------------------------------------------------

def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _rates(counts: Counts) -> dict[str, Any]:
    return {**asdict(counts), "bounce_rate": counts.rate("bounced"),
            "complaint_rate": counts.rate("complained")}


def report(now: float | None = None) -> dict[str, Any]:
    """The guard's state for ``ses_usage`` and ``ses_reputation status``: settings, per lane
    the window's counts, the judged counts since a release and any hold; per configuration
    set the window's counts. Raises Redis errors (callers that must not fail catch them)."""
    now = time.time() if now is None else now
    found: dict[str, Any] = {
        "enabled": enabled(),
        "guarded_lanes": list(guarded_lanes()),
        "window_seconds": window_seconds(),
        "thresholds": {name: threshold for name, _, threshold, _ in _limits()},
        "min_sends": {name: minimum for name, _, _, minimum in _limits()},
        "lanes": {},
        "configuration_sets": {},
    }
    if store.redis_url() is None:
        return found
    client = store.redis_client()
    lanes = {default_lane(), *guarded_lanes(),
             *(_text(n) for n in client.smembers(names_key(LANE)))}
    for lane in sorted(lanes):
        total, judged = window_counts(LANE, lane, now, client)
        raw_hold = client.get(hold_key_of(lane))
        hold = read_hold(raw_hold, lane)
        release_info = _read_release(client.get(released_key(lane)))
        found["lanes"][lane] = {
            **_rates(total),
            "guarded": lane in guarded_lanes(),
            "judged": _rates(judged),
            "released_at": release_info["at"] if release_info else None,
            "hold": asdict(hold) if hold else None,
        }
    for name in sorted(_text(n) for n in client.smembers(names_key(CONFIGURATION_SET))):
        found["configuration_sets"][name] = _rates(
            window_counts(CONFIGURATION_SET, name, now, client)[0])
    return found


def _percent(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def render(found: dict[str, Any]) -> list[str]:
    """``report()`` as text lines."""
    hours = found["window_seconds"] // 3600
    state = "on" if found["enabled"] else "off (SEACUCUMBER_REPUTATION_GUARD, or no Redis)"
    lines = [
        f"Reputation guard ({state}; last {hours} h; holds "
        f"{', '.join(found['guarded_lanes']) or 'no lane'} above "
        f"{_percent(found['thresholds']['bounce'])} bounces or "
        f"{_percent(found['thresholds']['complaint'], 3)} complaints)",
        f"  {'lane':<16} {'sent':>9} {'bounce':>8} {'complaint':>10}  state",
    ]
    for lane, data in found["lanes"].items():
        if data["hold"]:
            hold = data["hold"]
            state = (f"HELD: {hold['rate']} rate {_percent(hold['value'], 3)} > "
                     f"{_percent(hold['threshold'], 3)} on {hold['sample']:,} sent")
        elif not data["guarded"]:
            state = "not guarded"
        else:
            judged = data["judged"]
            state = f"not held (judged on {judged['sent']:,} sent"
            state += ", since its release)" if data["released_at"] else ")"
        lines.append(f"  {lane:<16} {data['sent']:>9,} {_percent(data['bounce_rate']):>8} "
                     f"{_percent(data['complaint_rate'], 3):>10}  {state}")
    for name, data in found["configuration_sets"].items():
        lines.append(f"  set {name:<12} {data['sent']:>9,} {_percent(data['bounce_rate']):>8} "
                     f"{_percent(data['complaint_rate'], 3):>10}")
    return lines
