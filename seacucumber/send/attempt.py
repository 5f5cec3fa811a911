"""One send attempt's shared state, in two Redis round trips: ``begin`` and ``settle``.

A send touches five records in the shared-state Redis: the outbox (``outbox``), the send log
(``sendlog``), the lane's hold and sent counts (the reputation guard, ``reputation``), the
metrics counters, and the account's rate (``ratelimit``). Taken one call each they cost a
worker five or six round trips per send; here they are two:

- ``begin``: one Lua script marks the outbox record running, claims the send in the send
  log (or finds it sent, or claimed by another attempt), checks the lane's hold, and books
  the recipients in the shared rate for the send's lane, atomically. An attempt that does
  not go on to send gives its claim back inside the same script.
- ``settle``: one Lua script marks the send sent in the send log, counts it (metrics: the
  send, its recipients, its latency since ``send_messages``; the reputation guard), and
  drops its outbox record.

The rate, per lane (docs/rate.rst). GCRA, as ``ratelimit`` explains: one "theoretical
arrival time" (TAT) per rate bucket (``buckets``: the SES account and region the send's
client reaches), so every lane together never exceeds the bucket's rate. A lane's share and
its waiting attempts are per bucket too (a share of that bucket's rate); the lane's hold (the
reputation guard) holds it in every bucket.
The first lane books up to ``SEACUCUMBER_RATE_HORIZON`` ahead. A lower lane books only slots
within its ``lookahead`` (0.2 s) of now, so it never holds a slot far ahead that the first
lane would need: it fills what the first lane leaves, and waits (in the task, briefly, or
re-queued) while the rate is booked further ahead than that. Its ``min_share`` is a second
GCRA timeline of its own at that share of the rate: while the lane is under it, the lane books
past its lookahead like the first lane does, so a flood of first-lane mail slows a lower lane
to its share and never stops it. Lower-lane attempts refused for now are counted (a sorted
set with expiry) so they spread their next tries over the slots ahead instead of all waking
for the same one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import redis

from ..conf import Lane, conf
from ..conf import lane as conf_lane
from ..exceptions import SendLogUnavailable
from ..operations import metrics
from ..payload import OutboundSend
from ..shared import buckets, holders, outbox, quota, ratelimit, reputation, sendlog, store
from ..shared.buckets import Bucket

logger = logging.getLogger(__name__)

#: ``begin``'s script (its keys and arguments are named in the file).
BEGIN_SCRIPT = store.LuaScript(__file__, "attempt_begin.lua", (outbox.DROP_RECORD_LUA,))


class BeginOutcome(StrEnum):
    """What ``begin`` found (``Begin`` says what comes with each)."""

    GO = "go"
    ADMITTED = "admitted"
    SENT = "sent"
    CANCELLED = "cancelled"
    BUSY = "busy"
    LANE_HELD = "lane_held"
    QUOTA_HELD = "quota_held"
    REFUSED = "refused"


class Begin(NamedTuple):
    """What ``begin`` found (a named tuple: immutable, and quicker to make at every send than
    a frozen dataclass, which sets each field through ``object.__setattr__``). ``outcome``:

    - ``go``: send now (no rate to book); ``admitted``: send after sleeping ``wait`` seconds
      (if ``wait`` is over ``SEACUCUMBER_RATE_MAX_WAIT`` the slot is booked but the claim
      was given back: re-queue for the slot);
    - ``sent``: SES has the message already (``sent_id``); ``cancelled``: the send was
      cancelled (``seacucumber.cancel``; ``reason``); ``busy``: another attempt is in
      the SES call for ``wait`` more seconds;
    - ``lane_held``: the lane is held (``hold``: the guard's reason);
    - ``quota_held``: the daily quota is spent, for ``wait`` more seconds;
    - ``refused``: the rate is booked further ahead than the lane may book (``wait``: the
      slot this send would have had, seconds from now; ``waiters``: lower-lane attempts
      refused in the last seconds).
    """

    outcome: BeginOutcome
    wait: float = 0.0
    rate: float = 0.0
    waiters: int = 0
    sent_id: str | None = None
    hold: str | None = None
    claimed: bool = False
    reason: str | None = None


def lane_hold_key(lane: str) -> str:
    """The key whose presence holds ``lane``: the reputation guard's (``reputation``), or,
    when nothing can hold the lane, one nothing sets."""
    return reputation.hold_key(lane) or store.key("reputation", "never-held")


@dataclass(frozen=True)
class _Fixed:
    """What ``begin``'s script takes for a lane that depends on settings alone, made once
    while the settings are held: the script with every key but the send log's and the fixed
    arguments given (``script``; as bytes: ``store.wire``), and the values the rest are
    made from."""

    lane: Lane
    script: store.BoundScript
    running_for: float
    burst: bytes
    horizon: bytes
    max_wait: float

    @classmethod
    def of(cls, lane: Lane, bucket: str = store.DEFAULT_BUCKET) -> _Fixed:
        names = outbox.key_names()
        rate_tat, slow_down, quota_hold = ratelimit.Limiter.keys(bucket)
        top_horizon = float(conf.SEACUCUMBER_RATE_HORIZON)
        max_wait = float(conf.SEACUCUMBER_RATE_MAX_WAIT)
        keys = {"rate_tat": rate_tat, "slow_down": slow_down, "quota_hold": quota_hold,
                "lane_share": store.bucket_key(bucket, "lane", lane.name, "share"),
                "lane_waiters": store.bucket_key(bucket, "lane", lane.name, "waiters"),
                "lane_hold": lane_hold_key(lane.name), "outbox_task": names["task"],
                "outbox_queue": names["queue"], "outbox_queued": names["queued"],
                "outbox_running": names["running"], "outbox_holder": names["holder"],
                "holders": holders.holders_key()}
        args: dict[str, str | float] = {
            "claim_ms": int(sendlog.claim_seconds() * 1000),
            "published_prefix": outbox.published_prefix(), "held_prefix": outbox.held_prefix(),
            "recovery": ratelimit.RECOVERY_SECONDS, "min_share": lane.min_share,
            "top_horizon": top_horizon, "max_wait": max_wait}
        return cls(
            lane=lane,
            script=BEGIN_SCRIPT.bound({name: store.wire(key) for name, key in keys.items()},
                                      {name: store.wire(value) for name, value in args.items()}),
            running_for=outbox.attempt_seconds() + outbox.grace(),
            burst=store.wire(float(conf.SEACUCUMBER_RATE_BURST)),
            horizon=store.wire(top_horizon if lane.lookahead is None else lane.lookahead),
            max_wait=max_wait)


def _run(flags: str, message_id: str, attempt: str, lane: Lane, cost: int, rate: float,
         horizon: float | None = None, burst: float | None = None,
         task_id: str | None = None, bucket: str = store.DEFAULT_BUCKET) -> Begin:
    fixed = conf.derived(f"attempt:{lane.name}:{bucket}", lambda: _Fixed.of(lane, bucket))
    if fixed.lane is not lane and fixed.lane != lane:  # made by hand under a declared name
        fixed = _Fixed.of(lane, bucket)
    if "r" in flags and lane.rank > 0:
        flags += "l"
    holder = holders.current()
    args = {"flags": flags, "attempt_id": task_id or attempt,
            "claim_token": _claim_token(attempt, holder),
            "running_deadline": time.time() + fixed.running_for, "rate": repr(float(rate)),
            "burst": fixed.burst if burst is None else repr(float(burst)), "cost": int(cost),
            "horizon": fixed.horizon if horizon is None else repr(float(horizon)),
            "holder": holder or ""}
    answer = fixed.script.run({"send_log": sendlog.key(message_id)}, args,
                              client=store.task_client())
    return _read_begin(answer, "c" in flags, fixed.max_wait)


#: ``begin``'s script's first answer, as redis-py reads it (bytes), to its outcome.
_OUTCOMES = {member.value.encode(): member for member in BeginOutcome}


def _read_begin(answer: list[Any], claiming: bool, max_wait: float) -> Begin:
    """``begin``'s script's answer as a ``Begin``."""
    first = answer[0]
    outcome = _OUTCOMES.get(first) or BeginOutcome(_text(first))
    if outcome is BeginOutcome.SENT:
        return Begin(outcome, sent_id=_text(answer[1]))
    if outcome is BeginOutcome.LANE_HELD:
        return Begin(outcome, hold=_text(answer[1]))
    if outcome is BeginOutcome.CANCELLED:
        return Begin(outcome, reason=_text(answer[1]))
    claimed = claiming and outcome in (BeginOutcome.GO, BeginOutcome.ADMITTED)
    numbers = [float(v) for v in answer[1:]]  # float() reads Redis's bytes as they come
    wait, rate_in_force = (numbers + [0.0, 0.0])[:2]
    if outcome is BeginOutcome.ADMITTED and wait > max_wait:
        claimed = False  # the script gave the claim back: the re-run claims again
    waiters = int(numbers[2]) if len(numbers) > 2 else 0
    return Begin(outcome, wait=max(0.0, wait), rate=rate_in_force, waiters=waiters,
                 claimed=claimed)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def begin(message_id: str, attempt: str, lane: Lane, cost: int, reserve: bool,
          task_id: str | None = None, bucket: Bucket | None = None) -> Begin:
    """Start one attempt at sending ``message_id`` (``attempt``: unique per execution):
    outbox record running (``task_id``), send-log claim, lane hold, and, when ``reserve``,
    ``cost`` recipients of ``bucket``'s (None: the default's) shared rate for ``lane``: one
    round trip. Without a shared-state Redis: ``go`` (nothing to share).
    ``redis.RedisError`` propagates."""
    if store.redis_url() is None:
        if reserve:
            ratelimit.limiter()  # says, once, that the rate is not shared
        return Begin(BeginOutcome.GO, claimed=False)
    reserve = reserve and bool(conf.SEACUCUMBER_SHARED_RATE)  # as ratelimit.limiter() checks
    flags = "c" + ("o" if task_id and outbox.enabled() else "") + ("r" if reserve else "")
    bucket = bucket or buckets.default()
    if reserve:
        buckets.register(bucket)  # once per process: reports list the bucket
    rate = quota.base_rate(bucket) if reserve else 1.0
    return _run(flags, message_id, attempt, lane, cost, rate, task_id=task_id,
                bucket=bucket.id)


def claim_token(attempt: str) -> str:
    """The send-log claim of ``attempt``: it names this process's holder while its heartbeat
    runs (``holders``), so another attempt takes the claim over once the holder is dead."""
    return _claim_token(attempt, holders.current())


def _claim_token(attempt: str, holder: str | None) -> str:
    return f"claim:{attempt}/{holder}" if holder else f"claim:{attempt}"


def claim(message_id: str, attempt: str) -> sendlog.Claim:
    """The send-log claim alone (``begin`` without the rate; tests stand in for another
    attempt with it): ours, sent before, or busy."""
    token = claim_token(attempt)
    if store.redis_url() is None:
        return sendlog.Claim(message_id, token=token)
    try:
        found = _run("c", message_id, attempt, conf_lane(), 1, 1.0)
    except redis.RedisError as exc:
        raise SendLogUnavailable(str(exc)) from exc
    if found.outcome is BeginOutcome.SENT:
        return sendlog.Claim(message_id, sent_id=found.sent_id)
    if found.outcome is BeginOutcome.BUSY:
        return sendlog.Claim(message_id, busy_for=max(0.1, found.wait))
    if found.outcome is BeginOutcome.CANCELLED:
        return sendlog.Claim(message_id, cancelled=found.reason)
    return sendlog.Claim(message_id, token=token)


def started(task_id: str) -> None:
    """Mark the outbox record of ``task_id`` running (``begin``'s outbox step alone)."""
    if outbox.enabled():
        _run("o", "-", task_id, conf_lane(), 1, 1.0, task_id=task_id)


def reserve(cost: int, rate: float, lane: Lane | None = None, horizon: float | None = None,
            burst: float | None = None, attempt: str = "reserve",
            bucket: str = store.DEFAULT_BUCKET) -> ratelimit.Decision:
    """Book ``cost`` tokens at ``rate`` for ``lane`` (None: the first) in ``bucket`` without
    a claim: ``begin``'s rate step alone (tests, benchmarks)."""
    found = _run("r", "-", attempt, lane or conf_lane(), cost, rate, horizon, burst,
                 bucket=bucket)
    return ratelimit.Decision(admitted=found.outcome is BeginOutcome.ADMITTED,
                              held=found.outcome is BeginOutcome.QUOTA_HELD, wait=found.wait,
                              rate=found.rate, waiters=found.waiters)


#: ``settle``'s script (its keys and arguments are named in the file), with the outbox's and
#: the reputation guard's Lua functions it calls.
SETTLE_SCRIPT = store.LuaScript(__file__, "attempt_settle.lua",
                                (outbox.DROP_RECORD_LUA, reputation.COUNT_LUA))


def _settle_fixed(lane: str) -> tuple[bool, store.BoundScript]:
    """What ``settle``'s script takes for a lane that depends on settings alone, made once
    while the settings are held: whether the outbox is on, and the script with the counters'
    and outbox keys, the sent mark's seconds, the sends and recipients counters' fields and
    the outbox published and held prefixes given (as bytes: ``store.wire``)."""
    task, queue, queued, running, holder = outbox.record_keys()
    keys = {"counters": metrics.counters_key(), "outbox_task": task, "outbox_queue": queue,
            "outbox_queued": queued, "outbox_running": running, "outbox_holder": holder}
    args: dict[str, str | float] = {
        "keep_seconds": sendlog.keep_seconds(),
        "counter_field": metrics.counter_field("sends", "sent", lane),
        "recipients_field": metrics.counter_field("recipients", "sent", lane),
        "published_prefix": outbox.published_prefix(), "held_prefix": outbox.held_prefix()}
    return outbox.enabled(), SETTLE_SCRIPT.bound(
        {name: store.wire(key) for name, key in keys.items()},
        {name: store.wire(value) for name, value in args.items()})


def settle(outbound: OutboundSend, ses_message_id: str, lane: str,
           task_id: str | None) -> None:
    """The send went through: mark it sent in the send log, count it (the metrics, the
    reputation guard's sent recipients), drop its outbox record; one script, one round
    trip. A Redis error is logged: the message is sent all the same (only a redelivery
    could send it again, and the sweeper finds no record)."""
    if store.redis_url() is None:
        return
    message_id = outbound.message_id
    drop, script = conf.derived(f"settle:{lane}", lambda: _settle_fixed(lane))
    now = time.time()
    latency = max(0.0, now - outbound.starts)  # a scheduled send's: since it was due
    bucket, latency_sum = metrics.latency_fields(lane, latency)
    guard_keys, guard_args = reputation.counted(
        "sent", lane, outbound.options.get("configuration_set"), len(outbound.recipients), now)
    args = {"drop_outbox": "o" if drop and task_id else "-",
            "sent_mark": sendlog.sent_mark(ses_message_id), "task_id": task_id or "",
            "recipients": len(outbound.recipients), "latency_bucket_field": bucket,
            "latency_sum_field": latency_sum, "latency": repr(latency)}
    try:
        _settle_persistently(script, {"send_log": sendlog.key(message_id)}, args, guard_keys,
                             guard_args)
    except redis.RedisError as exc:
        logger.warning("message %s sent as SES %s, but its shared records were not updated: %s",
                       message_id, ses_message_id, exc)


#: Seconds ``settle`` keeps trying while the shared-state Redis cannot be reached (a restart,
#: a Sentinel failover take a few): a "sent" mark never written lets a redelivery of the
#: task, or the outbox's sweep, send the message again.
SETTLE_PERSISTENCE = 10.0


def _settle_persistently(script: store.BoundScript, keys: dict[str, str | bytes],
                         args: dict[str, Any], guard_keys: list[str],
                         guard_args: list[Any]) -> None:
    """``settle``'s script, tried again on connection errors for up to
    ``SETTLE_PERSISTENCE`` seconds, backing off to one try a second (the script is
    idempotent: a try whose answer was lost counts nothing twice)."""
    deadline, delay = time.monotonic() + SETTLE_PERSISTENCE, 0.1
    while True:
        try:
            script.run(keys, args, guard_keys, guard_args, client=store.task_client())
            return
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(1.0, delay * 2)
