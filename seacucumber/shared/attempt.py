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
arrival time" (TAT) for the whole account, so every lane together never exceeds the rate.
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

import redis

from ..conf import Lane, conf
from ..conf import lane as conf_lane
from ..exceptions import SendLogUnavailable
from ..payload import OutboundSend
from . import outbox, quota, ratelimit, reputation, sendlog, store

logger = logging.getLogger(__name__)

#: KEYS: 1 send-log key, 2 rate TAT, 3 slow-down, 4 quota hold, 5 the lane's share TAT,
#: 6 the lane's waiters, 7 the lane's hold, 8-11 outbox task, queue, queued, running.
#: ARGV: 1 flags (c: claim, o: outbox, r: reserve, l: a lower lane), 2 claim token,
#: 3 claim ms, 4 attempt id, 5 outbox published prefix, 6 outbox running deadline,
#: 7 rate, 8 burst, 9 cost, 10 horizon, 11 recovery seconds, 12 min share,
#: 13 the first lane's horizon, 14 longest wait slept in the task.
_BEGIN = """
pcall(redis.replicate_commands)
local flags = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if string.find(flags, 'o', 1, true) and redis.call('HEXISTS', KEYS[8], ARGV[4]) == 1 then
  local queue = redis.call('HGET', KEYS[9], ARGV[4])
  if queue then redis.call('ZREM', ARGV[5] .. queue, ARGV[4]) end
  redis.call('ZREM', KEYS[10], ARGV[4])
  redis.call('ZADD', KEYS[11], ARGV[6], ARGV[4])
end
local claimed = false
if string.find(flags, 'c', 1, true) then
  if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3]) then
    local value = redis.call('GET', KEYS[1])
    if string.sub(value, 1, 5) == 'sent:' then return {'sent', string.sub(value, 6)} end
    return {'busy', tostring(redis.call('PTTL', KEYS[1]) / 1000)}
  end
  claimed = true
end
local function unclaim() if claimed then redis.call('DEL', KEYS[1]) end end
local lane_hold = redis.call('GET', KEYS[7])
if lane_hold then unclaim() return {'lane_held', lane_hold} end
if not string.find(flags, 'r', 1, true) then return {'go', '0', '0'} end
local held = redis.call('PTTL', KEYS[4])
if held > 0 then unclaim() return {'quota_held', tostring(held / 1000)} end
local rate = tonumber(ARGV[7])
local slow = redis.call('HMGET', KEYS[3], 'factor', 'at')
if slow[1] then
  local recovered = (now - tonumber(slow[2])) / tonumber(ARGV[11])
  if recovered < 1 then rate = rate * (1 - (1 - tonumber(slow[1])) * (1 - recovered)) end
end
local cost = tonumber(ARGV[9])
local burst = tonumber(ARGV[8])
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
local new_tat = tat + cost / rate
local wait = new_tat - burst - now
local share = tonumber(ARGV[12])
local booked = wait <= tonumber(ARGV[10]) or tat <= now
if not booked and share > 0 and wait <= tonumber(ARGV[13]) then
  local own = tonumber(redis.call('GET', KEYS[5]) or '0')
  if own < now then own = now end
  if own - now <= burst then
    own = own + cost / (share * rate)
    redis.call('SET', KEYS[5], tostring(own), 'PX', math.ceil((own - now) * 1000) + 1000)
    booked = true
  end
end
if not booked then
  unclaim()
  local waiters = 0
  if string.find(flags, 'l', 1, true) then
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
    redis.call('ZADD', KEYS[6], now + 5, ARGV[4])
    redis.call('PEXPIRE', KEYS[6], 5000)
    waiters = redis.call('ZCARD', KEYS[6])
  end
  return {'refused', tostring(wait), tostring(rate), tostring(waiters)}
end
redis.call('SET', KEYS[2], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
if string.find(flags, 'l', 1, true) then redis.call('ZREM', KEYS[6], ARGV[4]) end
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[14]) then unclaim() end
return {'admitted', tostring(wait), tostring(rate)}
"""


@dataclass(frozen=True)
class Begin:
    """What ``begin`` found. ``outcome``:

    - ``go``: send now (no rate to book); ``admitted``: send after sleeping ``wait`` seconds
      (if ``wait`` is over ``SEACUCUMBER_RATE_MAX_WAIT`` the slot is booked but the claim
      was given back: re-queue for the slot);
    - ``sent``: SES has the message already (``sent_id``); ``busy``: another attempt is in
      the SES call for ``wait`` more seconds;
    - ``lane_held``: the lane is held (``hold``: the guard's reason);
    - ``quota_held``: the daily quota is spent, for ``wait`` more seconds;
    - ``refused``: the rate is booked further ahead than the lane may book (``wait``: the
      slot this send would have had, seconds from now; ``waiters``: lower-lane attempts
      refused in the last seconds).
    """

    outcome: str
    wait: float = 0.0
    rate: float = 0.0
    waiters: int = 0
    sent_id: str | None = None
    hold: str | None = None
    claimed: bool = False


def lane_hold_key(lane: str) -> str:
    """The key whose presence holds ``lane``: the reputation guard's (``reputation``), or,
    when nothing can hold the lane, one nothing sets."""
    return reputation.hold_key(lane) or store.key("reputation", "never-held")


@dataclass(frozen=True)
class _Fixed:
    """What ``_BEGIN`` takes for a lane that depends on settings alone: its keys after the
    send log's (2-11) and its fixed arguments, made once while the settings are held."""

    lane: Lane
    keys: list[str]
    claim_ms: int
    published_prefix: str
    running_for: float
    burst: str
    horizon: str
    recovery: str
    min_share: str
    top_horizon: str
    max_wait: str

    @classmethod
    def of(cls, lane: Lane) -> _Fixed:
        names = outbox.key_names()
        top_horizon = float(conf.SEACUCUMBER_RATE_HORIZON)
        return cls(
            lane=lane,
            keys=[*ratelimit.Limiter.keys(), store.key("lane", lane.name, "share"),
                  store.key("lane", lane.name, "waiters"), lane_hold_key(lane.name),
                  names["task"], names["queue"], names["queued"], names["running"]],
            claim_ms=int(sendlog.claim_seconds() * 1000),
            published_prefix=outbox.published_prefix(),
            running_for=outbox.attempt_seconds() + outbox.grace(),
            burst=repr(float(conf.SEACUCUMBER_RATE_BURST)),
            horizon=repr(top_horizon if lane.lookahead is None else lane.lookahead),
            recovery=repr(ratelimit.RECOVERY_SECONDS),
            min_share=repr(lane.min_share),
            top_horizon=repr(top_horizon),
            max_wait=repr(float(conf.SEACUCUMBER_RATE_MAX_WAIT)))


def _run(flags: str, message_id: str, attempt: str, lane: Lane, cost: int, rate: float,
         horizon: float | None = None, burst: float | None = None,
         task_id: str | None = None) -> Begin:
    fixed = conf.derived(f"attempt:{lane.name}", lambda: _Fixed.of(lane))
    if fixed.lane != lane:  # a lane made by hand (tests, benchmarks) under a declared name
        fixed = _Fixed.of(lane)
    if "r" in flags and lane.rank > 0:
        flags += "l"
    args = [flags, f"claim:{attempt}", fixed.claim_ms, task_id or attempt,
            fixed.published_prefix, time.time() + fixed.running_for, repr(float(rate)),
            fixed.burst if burst is None else repr(float(burst)), int(cost),
            fixed.horizon if horizon is None else repr(float(horizon)), fixed.recovery,
            fixed.min_share, fixed.top_horizon, fixed.max_wait]
    answer = store.run_script(_BEGIN, [sendlog.key(message_id), *fixed.keys], args,
                              client=store.task_client())
    outcome = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
    values = [v.decode() if isinstance(v, bytes) else str(v) for v in answer[1:]]
    if outcome == "sent":
        return Begin("sent", sent_id=values[0])
    if outcome == "lane_held":
        return Begin("lane_held", hold=values[0])
    claimed = "c" in flags and outcome in ("go", "admitted")
    numbers = [float(v) for v in values]
    wait, rate_in_force = (numbers + [0.0, 0.0])[:2]
    if outcome == "admitted" and wait > float(fixed.max_wait):
        claimed = False  # the script gave the claim back: the re-run claims again
    waiters = int(numbers[2]) if len(numbers) > 2 else 0
    return Begin(outcome, wait=max(0.0, wait), rate=rate_in_force, waiters=waiters,
                 claimed=claimed)


def begin(message_id: str, attempt: str, lane: Lane, cost: int, reserve: bool,
          task_id: str | None = None) -> Begin:
    """Start one attempt at sending ``message_id`` (``attempt``: unique per execution):
    outbox record running (``task_id``), send-log claim, lane hold, and, when ``reserve``,
    ``cost`` recipients of the shared rate for ``lane``: one round trip. Without a
    shared-state Redis: ``go`` (nothing to share). ``redis.RedisError`` propagates."""
    if store.redis_url() is None:
        if reserve:
            ratelimit.limiter()  # says, once, that the rate is not shared
        return Begin("go", claimed=False)
    reserve = reserve and ratelimit.limiter() is not None
    flags = "c" + ("o" if task_id and outbox.enabled() else "") + ("r" if reserve else "")
    rate = quota.base_rate() if reserve else 1.0
    return _run(flags, message_id, attempt, lane, cost, rate, task_id=task_id)


def claim(message_id: str, attempt: str) -> sendlog.Claim:
    """The send-log claim alone (``begin`` without the rate; tests stand in for another
    attempt with it): ours, sent before, or busy."""
    token = f"claim:{attempt}"
    if store.redis_url() is None:
        return sendlog.Claim(message_id, token=token)
    try:
        found = _run("c", message_id, attempt, conf_lane(), 1, 1.0)
    except redis.RedisError as exc:
        raise SendLogUnavailable(str(exc)) from exc
    if found.outcome == "sent":
        return sendlog.Claim(message_id, sent_id=found.sent_id)
    if found.outcome == "busy":
        return sendlog.Claim(message_id, busy_for=max(0.1, found.wait))
    return sendlog.Claim(message_id, token=token)


def started(task_id: str) -> None:
    """Mark the outbox record of ``task_id`` running (``begin``'s outbox step alone)."""
    if outbox.enabled():
        _run("o", "-", task_id, conf_lane(), 1, 1.0, task_id=task_id)


def reserve(cost: int, rate: float, lane: Lane | None = None, horizon: float | None = None,
            burst: float | None = None, attempt: str = "reserve") -> ratelimit.Decision:
    """Book ``cost`` tokens at ``rate`` for ``lane`` (None: the first) without a claim:
    ``begin``'s rate step alone (tests, benchmarks)."""
    found = _run("r", "-", attempt, lane or conf_lane(), cost, rate, horizon, burst)
    return ratelimit.Decision(admitted=found.outcome == "admitted",
                              held=found.outcome == "quota_held", wait=found.wait,
                              rate=found.rate, waiters=found.waiters)


#: KEYS: 1 send-log key, 2 metrics counters, 3-6 outbox task, queue, queued, running, then
#: the reputation guard's pairs (``reputation.COUNT_LUA``). ARGV: 1 "o" to drop the outbox
#: record (else "-"), 2 the sent mark, 3 seconds it is kept, 4 the sends counter's field,
#: 5 outbox published prefix, 6 task id, 7 the recipients counter's field, 8 recipients,
#: 9 the latency bucket's field, 10 the latency sum's field, 11 the latency, then from 12
#: the guard's (field, amount, keep, names).
_SETTLE = outbox.DROP_RECORD_LUA + reputation.COUNT_LUA + """
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('HINCRBY', KEYS[2], ARGV[7], ARGV[8])
redis.call('HINCRBY', KEYS[2], ARGV[9], 1)
redis.call('HINCRBYFLOAT', KEYS[2], ARGV[10], ARGV[11])
if ARGV[1] == 'o' then drop_record(3, ARGV[5], ARGV[6]) end
count_reputation(7, 12)
return 1
"""


def _settle_fixed(lane: str) -> tuple[bool, list[str], int, str, str, str]:
    """What ``_SETTLE`` takes for a lane that depends on settings alone: whether the outbox
    is on, the counters' and outbox keys, the sent mark's seconds, the sends and recipients
    counters' fields, the outbox published prefix (made once while the settings are held)."""
    from . import metrics  # metrics reads usage, which reads this package's modules

    return (outbox.enabled(), [metrics.counters_key(), *outbox.record_keys()],
            sendlog.keep_seconds(), metrics.counter_field("sends", "sent", lane),
            metrics.counter_field("recipients", "sent", lane), outbox.published_prefix())


def settle(outbound: OutboundSend, ses_message_id: str, lane: str,
           task_id: str | None) -> None:
    """The send went through: mark it sent in the send log, count it (the metrics, the
    reputation guard's sent recipients), drop its outbox record; one script, one round
    trip. A Redis error is logged: the message is sent all the same (only a redelivery
    could send it again, and the sweeper finds no record)."""
    if store.redis_url() is None:
        return
    from . import metrics

    message_id = outbound.message_id
    drop, fixed_keys, keep, counter, recipients, prefix = conf.derived(
        f"settle:{lane}", lambda: _settle_fixed(lane))
    now = time.time()
    latency = max(0.0, now - outbound.created)
    bucket, latency_sum = metrics.latency_fields(lane, latency)
    guard_keys, guard_args = reputation.counted(
        "sent", lane, outbound.options.get("configuration_set"), len(outbound.recipients), now)
    keys = [sendlog.key(message_id), *fixed_keys, *guard_keys]
    args = ["o" if drop and task_id else "-", sendlog.sent_mark(ses_message_id),
            keep, counter, prefix, task_id or "", recipients, len(outbound.recipients),
            bucket, latency_sum, repr(latency), *guard_args]
    try:
        store.run_script(_SETTLE, keys, args, client=store.task_client())
    except redis.RedisError as exc:
        logger.warning("message %s sent as SES %s, but its shared records were not updated: %s",
                       message_id, ses_message_id, exc)
