"""The account's send rate, learned from SES and shared through Redis.

``base_rate()`` is the rate the shared limiter holds (before any throttling slow-down), in
recipients per second:

- ``SEACUCUMBER_RATE_LIMIT`` when set (no SES call at all): a number, or a Celery rate
  string ``"N/s"``, ``"N/m"``, ``"N/h"`` (what Sea Cucumber 1.5's ``CUCUMBER_RATE_LIMIT``
  took), converted to per second;
- else SES's ``MaxSendRate`` times ``SEACUCUMBER_RATE_SAFETY_FACTOR`` (``None``, or
  django-ses' ``AWS_SES_AUTO_THROTTLE = None`` or ``0``: the full rate), read with
  ``GetAccount`` (v2, with ``USE_SES_V2``; v1 ``GetSendQuota`` where v2 fails) every
  ``SEACUCUMBER_QUOTA_REFRESH`` seconds by ONE process at a time (a Redis lock), and shared
  in a Redis hash, so a raised quota reaches every worker without a restart. Each rate
  bucket (``buckets``: an SES account and region) has its own record, read with its own
  client;
- ``SEACUCUMBER_RATE_FALLBACK`` when SES will not say (no IAM permission for the call: one
  warning; the fallback is stored like a learned rate, so SES is not asked again before the
  next refresh).

A read that fails for any other reason (throttled, 5xx, SES unreachable) keeps the rate
learned before, or the fallback when none was, and is tried again after ``RETRY_SECONDS``
rather than a whole refresh interval later: one failed read neither slows every worker to
the fallback nor waits five minutes to recover.

The refresh lock outlives the longest quota read (two SES calls at the connect and read
timeouts: v2 then v1) and holds an owner token, so a refresher never deletes a lock that
expired and was taken by another.

Each process re-reads the shared hash at most every ``LOCAL_SECONDS``: no quota call and no
extra Redis round trip per send. Bad rate settings raise ``ImproperlyConfigured`` naming the
setting at the first send; the system check ``checks.check_rate_settings`` reports them
before.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import ImproperlyConfigured

from ..conf import conf
from ..ses.errors import error_info
from . import buckets, store
from .buckets import Bucket

logger = logging.getLogger(__name__)

LOCAL_SECONDS = 5.0   #: how long a process trusts its copy of the shared rate
WAIT_FIRST = 3.0      #: how long a process waits for another's first quota read
RETRY_SECONDS = 30.0  #: a quota read that failed (not AccessDenied) is tried again this soon
LOCK_MARGIN = 10.0    #: the refresh lock outlives the longest quota read by this much

_cache: dict[tuple[str, str], tuple[float, float]] = {}  # (Redis URL, bucket) -> (rate, read)
_cache_lock = threading.Lock()
_last_logged: dict[tuple[str, str], float] = {}
_warned_denied = False

_PER_SECOND = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE_STRING = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*([smhSMH]))?\s*")


# --- the rate settings -------------------------------------------------------------------------

def configured_rate() -> float | None:
    """``SEACUCUMBER_RATE_LIMIT`` (or ``CUCUMBER_RATE_LIMIT``) in recipients per second, or
    ``None`` when unset (``None``, ``""`` or 0: learn the rate from SES). Takes a number or
    a Celery rate string ``"N/s"``, ``"N/m"``, ``"N/h"`` (a bare ``"N"`` is per second, as
    in Celery); anything else raises ``ImproperlyConfigured`` naming the setting. Read once
    while the settings are held (``conf.derived``): each send asks."""
    return conf.derived("quota.configured_rate", _configured_rate)


def _configured_rate() -> float | None:
    name, value = conf.lookup("SEACUCUMBER_RATE_LIMIT")
    if value is None or value == "":
        return None
    per_second: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        per_second = float(value)
    elif isinstance(value, str):
        match = _RATE_STRING.fullmatch(value)
        if match:
            per_second = float(match.group(1)) / _PER_SECOND[(match.group(2) or "s").lower()]
    if per_second is None or not math.isfinite(per_second) or per_second < 0:
        raise ImproperlyConfigured(
            f"{name} = {value!r} is not a send rate: give recipients per second as a number "
            f"(14 or 0.5) or a rate string '14/s', '600/m' or '3600/h'; None learns the rate "
            f"from SES")
    return per_second or None  # 0: unset, as in Celery ("no limit" here: learned from SES)


def safety_factor() -> float:
    """``SEACUCUMBER_RATE_SAFETY_FACTOR`` (or django-ses' ``AWS_SES_AUTO_THROTTLE``): the
    share of ``MaxSendRate`` to hold. ``None`` (django-ses' way to turn its throttling off),
    and 0 under the django-ses name (ditto), mean the full rate (1.0). Anything but a number
    above 0 and at most 1 raises ``ImproperlyConfigured`` naming the setting."""
    name, value = conf.lookup("SEACUCUMBER_RATE_SAFETY_FACTOR")
    if value is None:
        return 1.0
    factor: float | None = None
    if not isinstance(value, bool):
        try:
            factor = float(value)
        except (TypeError, ValueError):
            factor = None
    if factor == 0 and name == "AWS_SES_AUTO_THROTTLE":
        return 1.0
    if factor is None or not 0 < factor <= 1:
        raise ImproperlyConfigured(
            f"{name} = {value!r} is not a share of the SES MaxSendRate: give a number above 0 "
            f"and at most 1 (0.98, say), or None for the full rate")
    return factor


# --- the shared quota record -----------------------------------------------------------------

def _key(bucket: Bucket | None = None) -> str:
    return store.bucket_key((bucket or buckets.default()).id, "quota")


def _lock_key(bucket: Bucket) -> str:
    return store.bucket_key(bucket.id, "quota", "lock")


def lock_seconds() -> int:
    """The refresh lock's lifetime: longer than the longest quota read (v2 ``GetAccount``
    then v1 ``GetSendQuota``, each up to the connect plus the read timeout), so a slow read
    never runs unlocked; a refresher that dies still frees it."""
    one_call = float(conf.SEACUCUMBER_CONNECT_TIMEOUT) + float(conf.SEACUCUMBER_READ_TIMEOUT)
    return math.ceil(2 * one_call + LOCK_MARGIN)


def retry_seconds() -> float:
    """How soon a failed quota read (not AccessDenied) is tried again."""
    return min(RETRY_SECONDS, float(conf.SEACUCUMBER_QUOTA_REFRESH))


def read_from_ses(bucket: Bucket | None = None) -> tuple[float, float, str]:
    """(MaxSendRate, Max24HourSend, source) of ``bucket`` (None: the default) from SES;
    raises botocore errors."""
    bucket = bucket or buckets.default()
    if conf.USE_SES_V2:
        try:
            found = bucket.client("sesv2").get_account()["SendQuota"]
            return float(found["MaxSendRate"]), float(found["Max24HourSend"]), "GetAccount"
        except (ClientError, KeyError) as exc:
            logger.info("SES v2 GetAccount unavailable (%s); asking v1 GetSendQuota", exc)
    found = bucket.client("ses").get_send_quota()
    return float(found["MaxSendRate"]), float(found["Max24HourSend"]), "GetSendQuota"


def _read_record(client: Any, bucket: Bucket) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(_key(bucket)).items()}


def _kept_or_fallback(previous: dict[str, str] | None, reason: str, error: str,
                      now: float) -> dict[str, str]:
    """The record to store after a read that failed for ``reason`` (not AccessDenied): the
    rate learned before, if any, else the fallback; tried again after ``retry_seconds()``."""
    retry_at = repr(now + retry_seconds())
    if previous and "max_send_rate" in previous:
        logger.warning("could not read the SES quota (%s); keeping the rate learned before "
                       "(MaxSendRate %s) and trying again in %.0fs", error,
                       previous["max_send_rate"], retry_seconds())
        return {**previous, "retry_at": retry_at, "last_error": reason}
    logger.warning("could not read the SES quota (%s); using %s recipients/s and trying again "
                   "in %.0fs", error, conf.SEACUCUMBER_RATE_FALLBACK, retry_seconds())
    return {"fallback": "1", "source": f"fallback ({reason})", "at": repr(now),
            "retry_at": retry_at, "last_error": reason}


def refresh(previous: dict[str, str] | None = None, bucket: Bucket | None = None
            ) -> dict[str, str]:
    """Read ``bucket``'s quota (None: the default's) from SES now and share it; returns
    what was stored. ``previous``: the shared record before (read from Redis when not
    given), kept when the read fails for another reason than a missing permission."""
    global _warned_denied
    bucket = bucket or buckets.default()
    client = store.redis_client()
    if previous is None:
        previous = _read_record(client, bucket)
    now = time.time()
    try:
        max_rate, max_day, source = read_from_ses(bucket)
        stored = {"max_send_rate": repr(max_rate), "max_24_hour_send": repr(max_day),
                  "source": source, "at": repr(now)}
    except ClientError as exc:
        info = error_info(exc)
        code = info.code
        if info.access_denied:  # only a missing permission means "SES will not say"
            if not _warned_denied:
                _warned_denied = True
                logger.warning(
                    "SES denied %s (%s): cannot learn the account's send rate; using %s "
                    "recipients/s. Allow ses:%s or set SEACUCUMBER_RATE_LIMIT.",
                    exc.operation_name, code, conf.SEACUCUMBER_RATE_FALLBACK, exc.operation_name)
            stored = {"fallback": "1", "source": f"fallback ({code})", "at": repr(now)}
        else:  # throttled, 5xx, ...: passing trouble
            stored = _kept_or_fallback(previous, code, str(exc), now)
    except (BotoCoreError, KeyError, ValueError, TypeError) as exc:  # unreachable, bad answer
        stored = _kept_or_fallback(previous, "unreachable", f"{type(exc).__name__}: {exc}", now)
    pipe = client.pipeline()
    pipe.delete(_key(bucket))
    pipe.hset(_key(bucket), mapping=stored)  # type: ignore[arg-type]  # redis-py: invariant key
    pipe.execute()
    return stored


def _fresh(record: dict[str, str], now: float) -> bool:
    if not record:
        return False
    if "retry_at" in record:  # the last read failed: try again soon
        return now < float(record["retry_at"])
    return now - float(record["at"]) < float(conf.SEACUCUMBER_QUOTA_REFRESH)


def shared(bucket: Bucket | None = None) -> dict[str, str]:
    """``bucket``'s (None: the default's) shared quota record, refreshed (by this process,
    if it wins the lock) when it is missing or older than ``SEACUCUMBER_QUOTA_REFRESH``
    (``retry_seconds()`` after a read that failed)."""
    bucket = bucket or buckets.default()
    client = store.redis_client()
    record = _read_record(client, bucket)
    if _fresh(record, time.time()):
        return record
    token = uuid.uuid4().hex
    if client.set(_lock_key(bucket), token, nx=True, ex=lock_seconds()):
        try:
            return refresh(record, bucket)
        finally:  # only our own lock: it may have expired and been taken by another
            store.delete_if_equal(_lock_key(bucket), token)
    if record:
        return record  # someone else is refreshing: the old value serves meanwhile
    deadline = time.monotonic() + WAIT_FIRST
    while time.monotonic() < deadline:  # another process is reading it for the first time
        time.sleep(0.05)
        record = _read_record(client, bucket)
        if record:
            return record
    return {"fallback": "1", "source": "fallback (quota not read yet)", "at": "0"}


def rate_from(record: dict[str, str]) -> float:
    """Recipients per second to hold, from a shared quota record."""
    if "max_send_rate" not in record:
        return float(conf.SEACUCUMBER_RATE_FALLBACK)
    return float(record["max_send_rate"]) * safety_factor()


def base_rate(bucket: Bucket | None = None) -> float:
    """The rate to hold in ``bucket`` (None: the default), recipients per second (see the
    module docstring). ``SEACUCUMBER_RATE_LIMIT`` is every bucket's rate."""
    manual = configured_rate()
    if manual is not None:
        return manual
    bucket = bucket or buckets.default()
    cache_key = (store.redis_url() or "", bucket.id)
    cached = _cache.get(cache_key)
    now = time.monotonic()
    if cached is not None and now - cached[1] < LOCAL_SECONDS:
        return cached[0]
    with _cache_lock:
        cached = _cache.get(cache_key)
        if cached is not None and now - cached[1] < LOCAL_SECONDS:
            return cached[0]
        record = shared(bucket)
        rate = rate_from(record)
        if rate <= 0:  # SES says unlimited (-1) or nothing: do not stop sending
            rate = float(conf.SEACUCUMBER_RATE_FALLBACK)
        _cache[cache_key] = (rate, now)
    if _last_logged.get(cache_key) != rate:
        _last_logged[cache_key] = rate
        logger.info("send rate in force in bucket %s: %.2f recipients/s (%s)", bucket.id, rate,
                    record.get("source", "?"))
    return rate


def forget() -> None:
    """Drop this process's copies (tests, and after changing settings)."""
    global _warned_denied
    _cache.clear()
    _last_logged.clear()
    _warned_denied = False
    buckets.forget()
