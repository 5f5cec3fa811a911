"""The SES emulator's account: its limits, its faults, what it accepted, and its counters.

One ``Account`` per emulator, shared by the HTTP threads under one lock. ``decide_send`` is
the whole fault layer: it answers each send with an ``Answer`` (accept, throttle, quota
exceeded, 5xx, drop, drop after accepting, reject) in the order SES would.
"""

from __future__ import annotations

import enum
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

DAY = 24 * 3600.0
SIMULATOR_DOMAIN = "simulator.amazonses.com"


@dataclass
class Config:
    """What the emulated account allows and which faults it injects (all changeable live)."""

    rate: float = 14.0            #: recipients per second; 0 = unlimited
    burst_seconds: float = 1.0    #: the rate bucket holds this many seconds' worth
    daily_quota: float = 50000.0  #: recipients per rolling 24 h; -1 = unlimited
    latency: float = 0.0          #: seconds added before every answer
    fail_5xx: float = 0.0         #: share of sends answered 503 ServiceUnavailable
    drop: float = 0.0             #: share of sends whose connection is closed, not processed
    drop_after_accept: float = 0.0  #: share accepted, then the connection closed unanswered
    forbid_quota: bool = False    #: GetSendQuota / GetAccount answer AccessDenied
    sandbox: bool = False         #: GetAccount: ProductionAccessEnabled false (sandbox)
    sending_enabled: bool = True  #: GetAccount: SendingEnabled
    enforcement_status: str = "HEALTHY"  #: GetAccount: HEALTHY, PROBATION or SHUTDOWN
    forbid_suppression: bool = False  #: the suppression list calls answer AccessDenied
    suppression_page_size: int = 1000  #: most entries per ListSuppressedDestinations page
    sending_paused: bool = False  #: sends answer AccountSendingPausedException
    verified: tuple[str, ...] | None = None  #: senders allowed (addresses/domains); None: any
    keep_raw: bool = True         #: keep each accepted message's raw MIME
    seed: int | None = None       #: seed for the fault dice

    def update(self, **changes: Any) -> None:
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown emulator setting(s): {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            if name == "verified" and value is not None:
                value = tuple(v.lower() for v in value)
            setattr(self, name, value)


class Verdict(enum.Enum):
    ACCEPT = "accept"
    THROTTLE = "throttle"
    QUOTA = "quota"
    FAIL_5XX = "fail_5xx"
    DROP = "drop"
    DROP_AFTER_ACCEPT = "drop_after_accept"
    REJECT = "reject"
    PAUSED = "paused"


@dataclass
class Answer:
    verdict: Verdict
    ses_id: str | None = None
    detail: str = ""
    message: Accepted | None = None


@dataclass
class Accepted:
    """One message the emulator accepted."""

    index: int
    ses_id: str
    source: str
    destinations: list[str]
    raw: bytes
    time: float   #: wall clock
    app: str      #: the client's ``app/...`` User-Agent token (AWS_SDK_UA_APP_ID), or ""
    tags: dict[str, str] = field(default_factory=dict)     #: the send's message tags
    options: dict[str, Any] = field(default_factory=dict)  #: configuration set, tenant, ...

    def as_json(self) -> dict[str, Any]:
        import base64

        data = asdict(self)
        data["raw"] = base64.b64encode(self.raw).decode("ascii")
        return data


@dataclass
class Counters:
    requests: int = 0
    accepted: int = 0
    recipients_accepted: int = 0
    throttled: int = 0
    quota_exceeded: int = 0
    failed_5xx: int = 0
    dropped: int = 0
    dropped_after_accept: int = 0
    rejected: int = 0
    paused: int = 0
    quota_calls: int = 0
    quota_denied: int = 0
    events_posted: int = 0
    events_failed: int = 0


def is_simulator(address: str) -> bool:
    return address.rpartition("@")[2].lower() == SIMULATOR_DOMAIN


@dataclass
class Account:
    config: Config = field(default_factory=Config)
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.dice = random.Random(self.config.seed)
        self.messages: list[Accepted] = []
        self.day_window: deque[tuple[float, int]] = deque()  # (monotonic, recipients)
        self.day_total = 0
        self.tokens = self._capacity()
        self.refilled = time.monotonic()

    # --- configuration -------------------------------------------------------------------
    def configure(self, **changes: Any) -> None:
        with self.lock:
            self.config.update(**changes)
            if "seed" in changes:
                self.dice.seed(self.config.seed)
            if "rate" in changes or "burst_seconds" in changes:
                self.tokens = self._capacity()
                self.refilled = time.monotonic()

    def reset(self) -> None:
        """Forget messages, counters and spent quota (the configuration stays)."""
        with self.lock:
            self.counters = Counters()
            self.messages = []
            self.day_window.clear()
            self.day_total = 0
            self.tokens = self._capacity()
            self.refilled = time.monotonic()

    # --- sends ---------------------------------------------------------------------------
    def decide_send(self, source: str, destinations: list[str], raw: bytes,
                    app: str = "", tags: dict[str, str] | None = None,
                    options: dict[str, Any] | None = None) -> Answer:
        """Decide one send's fate and record it; the HTTP layer renders the answer."""
        cfg = self.config
        with self.lock:
            self.counters.requests += 1
            roll = self.dice.random()
            if roll < cfg.drop:
                self.counters.dropped += 1
                return Answer(Verdict.DROP)
            if roll < cfg.drop + cfg.fail_5xx:
                self.counters.failed_5xx += 1
                return Answer(Verdict.FAIL_5XX)
            if cfg.sending_paused:
                self.counters.paused += 1
                return Answer(Verdict.PAUSED)
            if cfg.verified is not None and not _is_verified(source, cfg.verified):
                self.counters.rejected += 1
                return Answer(Verdict.REJECT, detail=source)
            now = time.monotonic()
            quota_cost = sum(1 for d in destinations if not is_simulator(d))
            if cfg.daily_quota >= 0 and self._spent_today(now) + quota_cost > cfg.daily_quota:
                self.counters.quota_exceeded += 1
                return Answer(Verdict.QUOTA)
            if not self._take_tokens(len(destinations), now):
                self.counters.throttled += 1
                return Answer(Verdict.THROTTLE)
            ses_id = _ses_message_id()
            self.day_window.append((now, quota_cost))
            self.day_total += quota_cost
            self.counters.accepted += 1
            self.counters.recipients_accepted += len(destinations)
            message = Accepted(
                index=len(self.messages), ses_id=ses_id, source=source,
                destinations=list(destinations), raw=raw if cfg.keep_raw else b"",
                time=time.time(), app=app, tags=dict(tags or {}), options=dict(options or {}),
            )
            self.messages.append(message)
            if self.dice.random() < cfg.drop_after_accept:
                self.counters.dropped_after_accept += 1
                return Answer(Verdict.DROP_AFTER_ACCEPT, ses_id, message=message)
            return Answer(Verdict.ACCEPT, ses_id, message=message)

    def quota(self) -> dict[str, float]:
        """GetSendQuota's numbers (and counts the call)."""
        with self.lock:
            self.counters.quota_calls += 1
            return {
                "Max24HourSend": float(self.config.daily_quota),
                "MaxSendRate": float(self.config.rate) if self.config.rate > 0 else -1.0,
                "SentLast24Hours": float(self._spent_today(time.monotonic())),
            }

    # --- reading -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self.lock:
            data = asdict(self.counters)
            data["sent_last_24h"] = self._spent_today(time.monotonic())
            data["config"] = asdict(self.config)
            return data

    def statistics(self) -> list[dict[str, object]]:
        """GetSendStatistics' data points: accepted recipients per 15 minutes (two weeks)."""
        points: dict[int, dict[str, Any]] = {}
        with self.lock:
            for message in self.messages:
                slot = int(message.time // 900 * 900)
                point = points.setdefault(slot, {
                    "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(slot)),
                    "DeliveryAttempts": 0, "Bounces": 0, "Complaints": 0, "Rejects": 0,
                })
                for address in message.destinations:
                    point["DeliveryAttempts"] += 1
                    local = address.partition("@")[0].partition("+")[0].lower()
                    if is_simulator(address) and local in ("bounce", "suppressionlist"):
                        point["Bounces"] += 1
                    elif is_simulator(address) and local == "complaint":
                        point["Complaints"] += 1
        return [points[slot] for slot in sorted(points)]

    def accepted_since(self, since: int = 0) -> list[Accepted]:
        with self.lock:
            return self.messages[since:]

    def count_denied_quota_call(self) -> None:
        with self.lock:
            self.counters.quota_denied += 1

    def count_event(self, ok: bool) -> None:
        with self.lock:
            if ok:
                self.counters.events_posted += 1
            else:
                self.counters.events_failed += 1

    # --- internals (lock held) -------------------------------------------------------------
    def _capacity(self) -> float:
        return max(1.0, self.config.rate * self.config.burst_seconds)

    def _take_tokens(self, cost: int, now: float) -> bool:
        """Token bucket, refilled at ``rate``; a send may overdraw a full-enough bucket so a
        message with more recipients than one second's worth still goes (SES allows it)."""
        if self.config.rate <= 0:
            return True
        capacity = self._capacity()
        self.tokens = min(capacity, self.tokens + (now - self.refilled) * self.config.rate)
        self.refilled = now
        if self.tokens < min(cost, capacity):
            return False
        self.tokens -= cost
        return True

    def _spent_today(self, now: float) -> int:
        while self.day_window and now - self.day_window[0][0] >= DAY:
            self.day_total -= self.day_window.popleft()[1]
        return self.day_total


def _is_verified(source: str, verified: tuple[str, ...]) -> bool:
    address = source.rpartition("<")[2].rstrip(">").strip().lower()
    return address in verified or address.rpartition("@")[2] in verified


def _ses_message_id() -> str:
    """An id shaped like SES's (0100 + hex + suffix)."""
    return f"0100{uuid.uuid4().hex}-{uuid.uuid4().hex[:8]}-000000"
