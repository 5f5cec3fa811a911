"""The shared send rate on a real (private) Redis: the GCRA limiter, the quota learned from
SES, the slow-down on throttling and the daily-quota hold."""

from __future__ import annotations

import logging
import multiprocessing
import socket
import threading
import time
import uuid

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from seacucumber.checks import check_rate_settings
from seacucumber.operations import usage
from seacucumber.send import attempt
from seacucumber.shared import quota, ratelimit, store
from seacucumber.testing.emulator import SESEmulator
from tests.fixtures_ops import Answer, v1_error


@pytest.fixture
def shared_redis(redis_url, settings):
    """Settings pointing the shared state at a private Redis, under a prefix of the test's
    own; process caches dropped."""
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/4"
    settings.SEACUCUMBER_REDIS_PREFIX = f"t-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_RATE_LIMIT = None
    quota.forget()
    yield settings.SEACUCUMBER_REDIS_URL
    quota.forget()


@pytest.fixture
def emulator(settings):
    with SESEmulator(rate=20) as running:
        settings.SEACUCUMBER_ENDPOINT_URL = running.url
        yield running


# --- the limiter -------------------------------------------------------------------------

def assert_wait(decision: ratelimit.Decision, expected: float, since: float) -> None:
    """A booking made ``expected`` seconds ahead of a slot, read ``time.monotonic() - since``
    later: the wait is ``expected`` less the time that passed since ``since`` (a busy
    machine may stall between two calls), never more (1 ms for the script's rounding)."""
    passed = time.monotonic() - since
    assert expected - passed - 0.001 <= decision.wait <= expected + 0.001, (decision, passed)


def test_burst_then_spacing_counted_per_recipient(shared_redis):
    # rate 10/s, burst 0.5 s: 5 tokens at once
    started = time.monotonic()
    first = [attempt.reserve(1, 10, horizon=5, burst=0.5) for _ in range(5)]
    assert all(d.admitted and d.wait == 0 for d in first)
    three = attempt.reserve(3, 10, horizon=5, burst=0.5)  # 3 recipients: 0.3 s of rate
    assert three.admitted
    assert_wait(three, 0.3, started)
    assert_wait(attempt.reserve(1, 10, horizon=5, burst=0.5), 0.4, started)


def test_slots_beyond_the_horizon_are_not_booked(shared_redis):
    started = time.monotonic()
    assert attempt.reserve(10, 10, horizon=0.2, burst=0).admitted  # idle: always books
    refused = attempt.reserve(10, 10, horizon=0.2, burst=0)
    assert not refused.admitted
    assert_wait(refused, 2.0, started)
    # refused requests book nothing: the next slot is still one second of tokens ahead
    assert_wait(attempt.reserve(1, 10, horizon=5, burst=0), 1.1, started)


def _hammer(url: str, prefix: str, seconds: float, counts) -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        django.setup()
    settings.SEACUCUMBER_REDIS_URL = url
    settings.SEACUCUMBER_REDIS_PREFIX = prefix
    granted = 0
    started = time.time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        decision = attempt.reserve(2, 100, horizon=0.05, burst=0.2)
        if decision.admitted:
            time.sleep(decision.wait)
            granted += 2
        else:
            time.sleep(0.01)
    counts.put((granted, started, time.time()))


def test_one_rate_across_processes(shared_redis, settings):
    """Four OS processes on one key: together they get the rate (plus the burst), not four
    times it, and not much less."""
    counts = multiprocessing.get_context("fork").Queue()
    seconds = 2.0
    workers = [multiprocessing.get_context("fork").Process(
        target=_hammer, args=(shared_redis, settings.SEACUCUMBER_REDIS_PREFIX, seconds, counts))
        for _ in range(4)]
    for worker in workers:
        worker.start()
    results = [counts.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    total = sum(granted for granted, _, _ in results)
    # the processes start one after another (on a busy machine, tenths of a second apart):
    # the window is from the first start to the last end
    window = max(end for _, _, end in results) - min(start for _, start, _ in results)
    assert total <= 100 * window + 20 + 2 * 4  # rate x time + burst + one in-flight each
    assert total >= 0.8 * 100 * seconds


def test_throttling_slows_the_shared_rate_and_it_recovers(shared_redis, monkeypatch):
    limiter = ratelimit.limiter()
    assert limiter.factor() == 1.0
    before = time.monotonic()
    assert limiter.slow_down() == pytest.approx(0.8)
    after = time.monotonic()
    assert limiter.slow_down() == pytest.approx(0.8)  # a burst of throttles counts once a second
    assert attempt.reserve(1, 10).rate == pytest.approx(8.0, abs=0.05)
    monkeypatch.setattr(ratelimit, "RECOVERY_SECONDS", 1.0)
    time.sleep(0.5)
    # linear recovery over a second, from 8/s: 2/s more per second since the slow-down (its
    # time known between `before` and `after`; a busy machine may sleep longer than asked)
    read_from = time.monotonic()
    rate = attempt.reserve(1, 10).rate
    read_to = time.monotonic()
    assert 8 + 2 * (read_from - after) - 0.01 <= rate <= min(10, 8 + 2 * (read_to - before)) + 0.01
    assert rate > 8.9  # at least half a second of recovery
    time.sleep(0.6)
    assert attempt.reserve(1, 10).rate == pytest.approx(10.0)
    assert limiter.factor() == 1.0


def test_daily_quota_hold(shared_redis, settings, caplog):
    settings.SEACUCUMBER_QUOTA_HOLD = 0.5
    with caplog.at_level(logging.WARNING, logger="seacucumber.shared.ratelimit"):
        assert ratelimit.quota_exhausted() == 0.5
    assert "daily sending quota used up" in caplog.text
    held = attempt.reserve(1, 10)
    assert held.held and not held.admitted and 0 < held.wait <= 0.5
    time.sleep(0.6)
    assert attempt.reserve(1, 10).admitted


# --- the learned rate -----------------------------------------------------------------------

def test_rate_is_learned_from_ses_once_and_shared(shared_redis, emulator, settings):
    settings.SEACUCUMBER_RATE_SAFETY_FACTOR = 0.9
    rates = []
    threads = [threading.Thread(target=lambda: rates.append(quota.base_rate()))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert rates == [pytest.approx(18.0)] * 8
    quota.forget()  # another process: reads the shared record, asks SES nothing
    assert quota.base_rate() == pytest.approx(18.0)
    assert emulator.stats()["quota_calls"] == 1
    assert usage.rate_in_force() == pytest.approx(18.0)


def test_a_raised_quota_is_picked_up_at_the_next_refresh(shared_redis, emulator, settings):
    settings.SEACUCUMBER_QUOTA_REFRESH = 0.3
    settings.SEACUCUMBER_RATE_SAFETY_FACTOR = 1.0
    assert quota.base_rate() == 20.0
    emulator.configure(rate=40)
    time.sleep(0.4)
    quota.forget()
    assert quota.base_rate() == 40.0
    assert emulator.stats()["quota_calls"] == 2


def test_v2_get_account(shared_redis, emulator, settings):
    settings.USE_SES_V2 = True
    settings.SEACUCUMBER_RATE_SAFETY_FACTOR = 1.0
    assert quota.base_rate() == 20.0
    assert quota.shared()["source"] == "GetAccount"


def test_v2_falls_back_to_v1_where_get_account_is_unavailable(shared_redis, moto_ses,
                                                               settings):
    settings.USE_SES_V2 = True
    settings.SEACUCUMBER_RATE_SAFETY_FACTOR = 1.0
    assert quota.base_rate() == 1.0  # moto: a sandbox account, v1 only
    assert quota.shared()["source"] == "GetSendQuota"


def test_missing_permission_warns_once_and_uses_the_fallback(shared_redis, emulator,
                                                             settings, caplog):
    emulator.configure(forbid_quota=True)
    settings.SEACUCUMBER_RATE_FALLBACK = 2.5
    with caplog.at_level(logging.WARNING, logger="seacucumber.shared.quota"):
        rates = [quota.base_rate()]
        for _ in range(5):
            quota.forget()  # as other processes would, within the refresh interval
            rates.append(quota.base_rate())
    assert rates == [2.5] * 6
    warnings = [r for r in caplog.records if "ses:GetSendQuota" in r.getMessage()]
    assert len(warnings) == 1
    assert emulator.stats()["quota_denied"] == 1  # asked once, not once per process
    assert quota.shared()["source"].startswith("fallback (AccessDenied")


@pytest.mark.parametrize("value, expected", [(7, 7.0), ("3/s", 3.0)])
def test_manual_rate_asks_ses_nothing(shared_redis, emulator, settings, value, expected):
    del settings.SEACUCUMBER_RATE_LIMIT
    settings.CUCUMBER_RATE_LIMIT = value  # the Sea Cucumber 1.x name (a Celery rate string)
    assert quota.base_rate() == expected
    assert emulator.stats()["requests"] == 0 and emulator.stats()["quota_calls"] == 0


# --- a quota read that fails --------------------------------------------------------------------

def quota_xml(rate: float, day: float = 50000.0) -> Answer:
    """A GetSendQuota answer as SES v1 sends it."""
    body = (
        '<GetSendQuotaResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">'
        f"<GetSendQuotaResult><Max24HourSend>{day}</Max24HourSend>"
        f"<MaxSendRate>{rate}</MaxSendRate><SentLast24Hours>0.0</SentLast24Hours>"
        "</GetSendQuotaResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata>"
        "</GetSendQuotaResponse>"
    ).encode()
    return Answer(200, body, {"Content-Type": "text/xml"})


def closed_port_url() -> str:
    """An http URL on which nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def age_shared_record(seconds: float) -> None:
    """Make the shared quota record look read ``seconds`` ago."""
    store.redis_client().hset(quota._key(), "at", repr(time.time() - seconds))


FAILURES = {
    "throttled": v1_error("Throttling", "Rate exceeded", status=400),
    "5xx": v1_error("ServiceUnavailable", "Service is unavailable", status=503),
}


@pytest.mark.parametrize("failure", ["throttled", "5xx", "unreachable"])
def test_a_failed_read_keeps_the_learned_rate_and_is_retried_soon(
        shared_redis, fake_endpoint, settings, caplog, failure):
    settings.SEACUCUMBER_RATE_SAFETY_FACTOR = 1.0
    settings.SEACUCUMBER_RATE_FALLBACK = 1.0
    fake_endpoint.routes["GetSendQuota"] = quota_xml(20.0)
    assert quota.base_rate() == 20.0
    age_shared_record(400)  # the 300 s refresh is due
    if failure == "unreachable":
        settings.SEACUCUMBER_ENDPOINT_URL = closed_port_url()
    else:
        fake_endpoint.routes["GetSendQuota"] = FAILURES[failure]
    quota.forget()
    with caplog.at_level(logging.WARNING, logger="seacucumber.shared.quota"):
        assert quota.base_rate() == 20.0  # not the 1/s fallback
    assert "keeping the rate learned before" in caplog.text
    record = quota.shared()
    assert record["max_send_rate"] == "20.0"
    # tried again in about 30 s, not after the whole 300 s refresh interval
    assert time.time() + 25 < float(record["retry_at"]) <= time.time() + quota.RETRY_SECONDS
    reads = len(fake_endpoint.requests)
    for _ in range(3):  # other processes before the retry time: SES is not asked again
        quota.forget()
        assert quota.base_rate() == 20.0
    assert len(fake_endpoint.requests) == reads
    # the retry time comes and SES answers again: the new rate, and a normal record
    settings.SEACUCUMBER_ENDPOINT_URL = fake_endpoint.url
    fake_endpoint.routes["GetSendQuota"] = quota_xml(40.0)
    store.redis_client().hset(quota._key(), "retry_at", repr(time.time() - 1))
    quota.forget()
    assert quota.base_rate() == 40.0
    assert "retry_at" not in quota.shared()


def test_a_failed_first_read_uses_the_fallback_and_is_retried_soon(shared_redis, fake_endpoint,
                                                                   settings):
    settings.SEACUCUMBER_RATE_FALLBACK = 2.5
    fake_endpoint.routes["GetSendQuota"] = FAILURES["throttled"]
    assert quota.base_rate() == 2.5
    record = quota.shared()
    assert record["source"] == "fallback (Throttling)"
    assert float(record["retry_at"]) <= time.time() + quota.RETRY_SECONDS
    fake_endpoint.routes["GetSendQuota"] = quota_xml(20.0)
    store.redis_client().hset(quota._key(), "retry_at", repr(time.time() - 1))
    quota.forget()
    assert quota.base_rate() == pytest.approx(20.0 * 0.98)


def test_access_denied_after_a_learned_rate_stores_the_fallback_until_the_next_refresh(
        shared_redis, fake_endpoint, settings):
    settings.SEACUCUMBER_RATE_FALLBACK = 2.5
    fake_endpoint.routes["GetSendQuota"] = quota_xml(20.0)
    assert quota.base_rate() == pytest.approx(19.6)
    age_shared_record(400)
    fake_endpoint.routes["GetSendQuota"] = v1_error("AccessDenied", "not authorized")
    quota.forget()
    assert quota.base_rate() == 2.5  # the permission was taken away: SES will not say
    record = quota.shared()
    assert record["source"] == "fallback (AccessDenied)" and "retry_at" not in record


# --- the refresh lock ---------------------------------------------------------------------------

def test_the_refresh_lock_outlives_the_slowest_quota_read(shared_redis, settings, monkeypatch):
    settings.SEACUCUMBER_CONNECT_TIMEOUT = 5.0
    settings.SEACUCUMBER_READ_TIMEOUT = 30.0
    client = store.redis_client()
    lock = store.key("quota", "lock")
    seen = []

    def read(bucket=None) -> tuple[float, float, str]:
        seen.append((client.get(lock), client.pttl(lock) / 1000))
        return 20.0, 50000.0, "GetSendQuota"

    monkeypatch.setattr(quota, "read_from_ses", read)
    quota.base_rate()
    [(token, ttl)] = seen
    assert ttl > 2 * (5.0 + 30.0)  # v2 GetAccount, then v1 GetSendQuota, each at its timeouts
    assert token not in (None, b"1")  # an owner token, unique to the refresher
    assert client.get(lock) is None  # released after the read


def test_a_refresher_deletes_only_its_own_lock(shared_redis, monkeypatch):
    client = store.redis_client()
    lock = store.key("quota", "lock")

    def read_outliving_the_lock(bucket=None) -> tuple[float, float, str]:
        client.set(lock, "another-process", ex=60)  # ours expired; another took the lock
        return 20.0, 50000.0, "GetSendQuota"

    monkeypatch.setattr(quota, "read_from_ses", read_outliving_the_lock)
    quota.base_rate()
    assert client.get(lock) == b"another-process"


# --- the rate settings -------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (7, 7.0), (2.5, 2.5), ("3/s", 3.0), ("3", 3.0), ("120/m", 2.0), ("7200/h", 2.0),
    (" 14 / s ", 14.0), ("0.5/S", 0.5),
])
def test_rate_limit_takes_numbers_and_celery_rate_strings(settings, value, expected):
    del settings.SEACUCUMBER_RATE_LIMIT
    settings.CUCUMBER_RATE_LIMIT = value
    assert quota.base_rate() == pytest.approx(expected)
    assert check_rate_settings() == []


@pytest.mark.parametrize("value", [None, "", 0, "0/s"])
def test_an_unset_or_zero_rate_limit_learns_the_rate(settings, value):
    settings.SEACUCUMBER_RATE_LIMIT = value
    assert quota.configured_rate() is None


@pytest.mark.parametrize("name", ["SEACUCUMBER_RATE_LIMIT", "CUCUMBER_RATE_LIMIT"])
@pytest.mark.parametrize("value", ["3/x", "fast", "-2", "3/s/s", "nan", float("inf"), True,
                                   [3]])
def test_a_bad_rate_limit_is_refused_naming_the_setting(settings, name, value):
    del settings.SEACUCUMBER_RATE_LIMIT
    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=f"^{name} = "):
        quota.base_rate()
    [error] = check_rate_settings()
    assert error.id == "seacucumber.E010" and error.msg.startswith(f"{name} = ")
    assert "seacucumber.E010" in {found.id for found in checks.run_checks()}


@pytest.mark.parametrize("name, value, expected", [
    ("AWS_SES_AUTO_THROTTLE", 0.5, 10.0),
    ("AWS_SES_AUTO_THROTTLE", None, 20.0),  # django-ses: throttling off, the full rate
    ("AWS_SES_AUTO_THROTTLE", 0, 20.0),  # ditto
    ("SEACUCUMBER_RATE_SAFETY_FACTOR", None, 20.0),
    ("SEACUCUMBER_RATE_SAFETY_FACTOR", "0.9", 18.0),
])
def test_safety_factor_and_its_django_ses_name(shared_redis, emulator, settings, name, value,
                                               expected):
    setattr(settings, name, value)
    assert quota.base_rate() == pytest.approx(expected)
    assert check_rate_settings() == []


def test_the_new_safety_factor_name_wins_over_the_django_ses_one(shared_redis, emulator,
                                                                  settings):
    settings.AWS_SES_AUTO_THROTTLE = 0.5
    settings.SEACUCUMBER_RATE_SAFETY_FACTOR = 0.75
    assert quota.base_rate() == pytest.approx(15.0)


@pytest.mark.parametrize("name, value", [
    ("SEACUCUMBER_RATE_SAFETY_FACTOR", 0), ("SEACUCUMBER_RATE_SAFETY_FACTOR", 1.5),
    ("SEACUCUMBER_RATE_SAFETY_FACTOR", -0.1), ("AWS_SES_AUTO_THROTTLE", "half"),
    ("AWS_SES_AUTO_THROTTLE", True), ("AWS_SES_AUTO_THROTTLE", 2),
])
def test_a_bad_safety_factor_is_refused_naming_the_setting(settings, name, value):
    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=f"^{name} = "):
        quota.rate_from({"max_send_rate": "20.0", "source": "GetSendQuota", "at": "0"})
    [error] = check_rate_settings()
    assert error.id == "seacucumber.E011" and error.msg.startswith(f"{name} = ")
