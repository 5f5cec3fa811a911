"""Unit tests: retry delays (exponential backoff, full jitter, cap, floor) and the message
lifetime."""

from __future__ import annotations

import statistics
import time

import pytest

from seacucumber import retry


@pytest.fixture
def delays(settings):
    settings.SEACUCUMBER_RETRY_BASE_DELAY = 2.0
    settings.SEACUCUMBER_RETRY_MAX_DELAY = 300.0
    return settings


def samples(attempt: int, n: int = 2000) -> list[float]:
    return [retry.backoff_delay(attempt) for _ in range(n)]


@pytest.mark.parametrize(("attempt", "ceiling"), [(0, 2.0), (1, 4.0), (3, 16.0), (6, 128.0)])
def test_full_jitter_spreads_over_zero_to_base_times_two_to_the_attempt(delays, attempt,
                                                                        ceiling):
    got = samples(attempt)
    assert min(got) >= 0.1
    assert max(got) <= ceiling
    assert max(got) > 0.9 * ceiling  # the whole range, not a fixed delay
    assert statistics.mean(got) == pytest.approx(ceiling / 2, rel=0.1)  # uniform
    assert len(set(got)) > len(got) // 2  # jittered: workers do not retry in step


@pytest.mark.parametrize("attempt", [8, 9, 40, 10_000])
def test_delay_is_capped(delays, attempt):
    got = samples(attempt)
    assert max(got) <= 300.0
    assert max(got) > 270.0
    assert statistics.mean(got) == pytest.approx(150.0, rel=0.1)


def test_cap_below_base(delays):
    delays.SEACUCUMBER_RETRY_MAX_DELAY = 1.0
    assert max(samples(0)) <= 1.0


def test_never_below_a_tenth_of_a_second(delays):
    got = samples(0)
    assert min(got) == 0.1  # draws below 0.1 s (1 in 20 for a 2 s ceiling) are raised to it
    delays.SEACUCUMBER_RETRY_BASE_DELAY = 0.01
    assert set(samples(0, 200)) == {0.1}
    delays.SEACUCUMBER_RETRY_BASE_DELAY = 0.0
    assert set(samples(5, 200)) == {0.1}


def test_outlives_compares_the_retry_time_with_the_lifetime(settings):
    settings.SEACUCUMBER_MESSAGE_LIFETIME = 100.0
    now = time.time()
    assert not retry.outlives(now, 50)
    assert retry.outlives(now, 150)
    assert not retry.outlives(now - 90, 5)  # retry at 95 s of 100
    assert retry.outlives(now - 90, 20)  # retry at 110 s of 100
    assert retry.outlives(now - 200, 0)  # already past it


def test_outlives_with_extra_time(settings):
    settings.SEACUCUMBER_MESSAGE_LIFETIME = 100.0
    now = time.time()
    assert not retry.outlives(now - 90, 20, extra=30)  # 110 s of 130
    assert retry.outlives(now - 90, 50, extra=30)  # 140 s of 130
    assert retry.QUOTA_WINDOW == 24 * 3600
    assert not retry.outlives(now - 20 * 3600, 600, extra=retry.QUOTA_WINDOW)
    assert retry.outlives(now - 24 * 3600, 600, extra=retry.QUOTA_WINDOW)


def test_lifetime_is_read_from_settings(settings):
    created = time.time() - 3600
    settings.SEACUCUMBER_MESSAGE_LIFETIME = 24 * 3600.0
    assert not retry.outlives(created, 300)
    settings.SEACUCUMBER_MESSAGE_LIFETIME = 3000.0
    assert retry.outlives(created, 300)
