"""The shared send rate on a real (private) Redis: the GCRA limiter, the quota learned from
SES, the slow-down on throttling and the daily-quota hold."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import uuid

import pytest

from seacucumber import quota, ratelimit, usage
from seacucumber.testing.emulator import SESEmulator


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

def test_burst_then_spacing_counted_per_recipient(shared_redis):
    limiter = ratelimit.limiter()
    # rate 10/s, burst 0.5 s: 5 tokens at once
    first = [limiter.reserve(1, 10, horizon=5, burst=0.5) for _ in range(5)]
    assert all(d.admitted and d.wait == 0 for d in first)
    three = limiter.reserve(3, 10, horizon=5, burst=0.5)  # 3 recipients: 0.3 s of rate
    assert three.admitted and three.wait == pytest.approx(0.3, abs=0.05)
    after = limiter.reserve(1, 10, horizon=5, burst=0.5)
    assert after.wait == pytest.approx(0.4, abs=0.05)


def test_slots_beyond_the_horizon_are_not_booked(shared_redis):
    limiter = ratelimit.limiter()
    assert limiter.reserve(10, 10, horizon=0.2, burst=0).admitted  # idle: always books
    refused = limiter.reserve(10, 10, horizon=0.2, burst=0)
    assert not refused.admitted and refused.wait == pytest.approx(2.0, abs=0.1)
    # refused requests book nothing: the next slot is still one second of tokens ahead
    assert limiter.reserve(1, 10, horizon=5, burst=0).wait == pytest.approx(1.1, abs=0.1)


def _hammer(url: str, prefix: str, seconds: float, counts) -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        django.setup()
    settings.SEACUCUMBER_REDIS_URL = url
    settings.SEACUCUMBER_REDIS_PREFIX = prefix
    limiter = ratelimit.Limiter(__import__("redis").Redis.from_url(url))
    granted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        decision = limiter.reserve(2, 100, horizon=0.05, burst=0.2)
        if decision.admitted:
            time.sleep(decision.wait)
            granted += 2
        else:
            time.sleep(0.01)
    counts.put(granted)


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
    total = sum(counts.get(timeout=30) for _ in workers)
    for worker in workers:
        worker.join(timeout=10)
    assert total <= 100 * seconds + 20 + 2 * 4  # rate x time + burst + one in-flight each
    assert total >= 0.8 * 100 * seconds


def test_throttling_slows_the_shared_rate_and_it_recovers(shared_redis, monkeypatch):
    limiter = ratelimit.limiter()
    assert limiter.factor() == 1.0
    assert limiter.slow_down() == pytest.approx(0.8)
    assert limiter.slow_down() == pytest.approx(0.8)  # a burst of throttles counts once a second
    assert limiter.reserve(1, 10).rate == pytest.approx(8.0, abs=0.05)
    monkeypatch.setattr(ratelimit, "RECOVERY_SECONDS", 1.0)
    time.sleep(0.5)
    assert 8.5 < limiter.reserve(1, 10).rate < 9.6  # linear recovery, about halfway
    time.sleep(0.6)
    assert limiter.reserve(1, 10).rate == pytest.approx(10.0)
    assert limiter.factor() == 1.0


def test_daily_quota_hold(shared_redis, settings, caplog):
    settings.SEACUCUMBER_QUOTA_HOLD = 0.5
    with caplog.at_level(logging.WARNING, logger="seacucumber.ratelimit"):
        assert ratelimit.quota_exhausted() == 0.5
    assert "daily sending quota used up" in caplog.text
    held = ratelimit.limiter().reserve(1, 10)
    assert held.held and not held.admitted and 0 < held.wait <= 0.5
    time.sleep(0.6)
    assert ratelimit.limiter().reserve(1, 10).admitted


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
    with caplog.at_level(logging.WARNING, logger="seacucumber.quota"):
        rates = [quota.base_rate()]
        for _ in range(5):
            quota.forget()  # as other processes would, within the refresh interval
            rates.append(quota.base_rate())
    assert rates == [2.5] * 6
    warnings = [r for r in caplog.records if "ses:GetSendQuota" in r.getMessage()]
    assert len(warnings) == 1
    assert emulator.stats()["quota_denied"] == 1  # asked once, not once per process
    assert quota.shared()["source"].startswith("fallback (AccessDenied")


def test_manual_rate_asks_ses_nothing(shared_redis, emulator, settings):
    del settings.SEACUCUMBER_RATE_LIMIT
    settings.CUCUMBER_RATE_LIMIT = 7  # the Sea Cucumber 1.x name
    assert quota.base_rate() == 7.0
    assert emulator.stats()["requests"] == 0 and emulator.stats()["quota_calls"] == 0
