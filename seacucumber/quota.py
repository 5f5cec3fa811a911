"""The account's send rate, learned from SES and shared through Redis.

``base_rate()`` is the rate the shared limiter holds (before any throttling slow-down), in
recipients per second:

- ``SEACUCUMBER_RATE_LIMIT`` when set (no SES call at all);
- else SES's ``MaxSendRate`` times ``SEACUCUMBER_RATE_SAFETY_FACTOR``, read with
  ``GetAccount`` (v2, with ``USE_SES_V2``; v1 ``GetSendQuota`` where v2 fails) every
  ``SEACUCUMBER_QUOTA_REFRESH`` seconds by ONE process at a time (a Redis lock), and shared
  in a Redis hash, so a raised quota reaches every worker without a restart;
- ``SEACUCUMBER_RATE_FALLBACK`` when SES will not say (no IAM permission for the call: one
  warning; the fallback is stored like a learned rate, so SES is not asked again before the
  next refresh).

Each process re-reads the shared hash at most every ``LOCAL_SECONDS``: no quota call and no
extra Redis round trip per send.
"""

from __future__ import annotations

import logging
import threading
import time

from botocore.exceptions import BotoCoreError, ClientError

from . import ses, shared_state
from .conf import conf
from .sescalls import ACCESS_DENIED_CODES

logger = logging.getLogger(__name__)

LOCAL_SECONDS = 5.0   #: how long a process trusts its copy of the shared rate
LOCK_SECONDS = 30     #: the refresh lock's lifetime (a refresher that dies frees it)
WAIT_FIRST = 3.0      #: how long a process waits for another's first quota read

_cache: dict[str, tuple[float, float]] = {}  # Redis URL -> (rate, monotonic time read)
_cache_lock = threading.Lock()
_last_logged: dict[str, float] = {}
_warned_denied = False


def _key() -> str:
    return shared_state.key("quota")


def read_from_ses() -> tuple[float, float, str]:
    """(MaxSendRate, Max24HourSend, source) from SES; raises botocore errors."""
    if conf.USE_SES_V2:
        try:
            found = ses.client("sesv2").get_account()["SendQuota"]
            return float(found["MaxSendRate"]), float(found["Max24HourSend"]), "GetAccount"
        except (ClientError, KeyError) as exc:
            logger.info("SES v2 GetAccount unavailable (%s); asking v1 GetSendQuota", exc)
    found = ses.client("ses").get_send_quota()
    return float(found["MaxSendRate"]), float(found["Max24HourSend"]), "GetSendQuota"


def refresh() -> dict[str, str]:
    """Read the quota from SES now and share it; returns what was stored."""
    global _warned_denied
    now = time.time()
    try:
        max_rate, max_day, source = read_from_ses()
        stored = {"max_send_rate": repr(max_rate), "max_24_hour_send": repr(max_day),
                  "source": source, "at": repr(now)}
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ACCESS_DENIED_CODES:
            if not _warned_denied:
                _warned_denied = True
                logger.warning(
                    "SES denied %s (%s): cannot learn the account's send rate; using %s "
                    "recipients/s. Allow ses:%s or set SEACUCUMBER_RATE_LIMIT.",
                    exc.operation_name, code, conf.SEACUCUMBER_RATE_FALLBACK, exc.operation_name)
        else:
            logger.warning("could not read the SES quota (%s); using %s recipients/s until the "
                           "next try", exc, conf.SEACUCUMBER_RATE_FALLBACK)
        stored = {"fallback": "1", "source": f"fallback ({code or 'error'})", "at": repr(now)}
    except BotoCoreError as exc:
        logger.warning("could not reach SES for the quota (%s); using %s recipients/s until "
                       "the next try", exc, conf.SEACUCUMBER_RATE_FALLBACK)
        stored = {"fallback": "1", "source": "fallback (unreachable)", "at": repr(now)}
    client = shared_state.redis_client()
    pipe = client.pipeline()
    pipe.delete(_key())
    pipe.hset(_key(), mapping=stored)
    pipe.execute()
    return stored


def shared() -> dict[str, str]:
    """The shared quota record, refreshed (by this process, if it wins the lock) when it is
    missing or older than ``SEACUCUMBER_QUOTA_REFRESH``."""
    client = shared_state.redis_client()
    record = {k.decode(): v.decode() for k, v in client.hgetall(_key()).items()}
    fresh = record and time.time() - float(record["at"]) < float(conf.SEACUCUMBER_QUOTA_REFRESH)
    if fresh:
        return record
    if client.set(shared_state.key("quota", "lock"), "1", nx=True, ex=LOCK_SECONDS):
        try:
            return refresh()
        finally:
            client.delete(shared_state.key("quota", "lock"))
    if record:
        return record  # someone else is refreshing: the old value serves meanwhile
    deadline = time.monotonic() + WAIT_FIRST
    while time.monotonic() < deadline:  # another process is reading it for the first time
        time.sleep(0.05)
        record = {k.decode(): v.decode() for k, v in client.hgetall(_key()).items()}
        if record:
            return record
    return {"fallback": "1", "source": "fallback (quota not read yet)", "at": "0"}


def rate_from(record: dict[str, str]) -> float:
    """Recipients per second to hold, from a shared quota record."""
    if "max_send_rate" not in record:
        return float(conf.SEACUCUMBER_RATE_FALLBACK)
    return float(record["max_send_rate"]) * float(conf.SEACUCUMBER_RATE_SAFETY_FACTOR)


def base_rate() -> float:
    """The account's rate to hold, recipients per second (see the module docstring)."""
    if conf.SEACUCUMBER_RATE_LIMIT:
        return float(conf.SEACUCUMBER_RATE_LIMIT)
    url = shared_state.redis_url() or ""
    cached = _cache.get(url)
    now = time.monotonic()
    if cached is not None and now - cached[1] < LOCAL_SECONDS:
        return cached[0]
    with _cache_lock:
        cached = _cache.get(url)
        if cached is not None and now - cached[1] < LOCAL_SECONDS:
            return cached[0]
        record = shared()
        rate = rate_from(record)
        if rate <= 0:  # SES says unlimited (-1) or nothing: do not stop sending
            rate = float(conf.SEACUCUMBER_RATE_FALLBACK)
        _cache[url] = (rate, now)
    if _last_logged.get(url) != rate:
        _last_logged[url] = rate
        logger.info("send rate in force: %.2f recipients/s (%s)", rate,
                    record.get("source", "?"))
    return rate


def forget() -> None:
    """Drop this process's copies (tests, and after changing settings)."""
    global _warned_denied
    _cache.clear()
    _last_logged.clear()
    _warned_denied = False
