"""A shared rate and quota per SES account and region (``shared.buckets``): each bucket learns
its own quota from its own SES, books its own rate, slows down and is held on its own; the
default bucket keeps the key names of before (a rolling deploy's old workers share it); with
real workers, two SES endpoints of their own rates drain at once, each at its rate, with no
throttling, and ``ses_usage`` shows a row per bucket."""

from __future__ import annotations

import json
import uuid
from io import StringIO

import pytest
from django.core import mail
from django.core.mail import EmailMessage
from django.core.management import call_command

from seacucumber.send import attempt
from seacucumber.shared import buckets, quota, ratelimit, store
from seacucumber.shared.buckets import Bucket
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import SENDER, point_app_at, point_at_emulator

DEFAULT_RATE, OTHER_RATE = 12.0, 6.0


@pytest.fixture
def two_accounts(redis_url, settings):
    """Settings on a private shared state; the default SES at one emulator (DEFAULT_RATE),
    another account's at a second (OTHER_RATE), trusted in eu-west-1. Each emulator's bucket
    holds 2 s of its rate: the workers' own burst is 0.5 s, so a send a loaded machine runs
    up to 1.5 s late is not throttled for it (what is measured is the rate of each account)."""
    first, second = (SESEmulator(rate=rate, burst_seconds=2.0).start()
                     for rate in (DEFAULT_RATE, OTHER_RATE))
    settings.SEACUCUMBER_ENDPOINT_URL = first.url
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/4"
    settings.SEACUCUMBER_REDIS_PREFIX = f"t-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_RATE_LIMIT = None
    settings.SEACUCUMBER_TRUSTED_ENDPOINT_URLS = [second.url]
    settings.SEACUCUMBER_TRUSTED_REGIONS = ["eu-west-1"]
    quota.forget()
    try:
        yield first, second
    finally:
        quota.forget()
        first.stop()
        second.stop()


def test_a_bucket_per_account_and_region(two_accounts, settings):
    _, second = two_accounts
    assert Bucket.of({}).is_default
    assert Bucket.of({"region": settings.AWS_SES_REGION_NAME}).is_default  # the settings' own
    assert Bucket.of({"region": "eu-west-1"}).id == "eu-west-1"
    other = Bucket.of({"region": "eu-west-1", "endpoint_url": second.url})
    assert other.id.startswith("eu-west-1.") and other.id != "eu-west-1"
    assert Bucket.of({"endpoint_url": second.url + "/", "region": "eu-west-1"}).id == other.id


def test_each_bucket_learns_its_own_quota_and_books_its_own_rate(two_accounts):
    _, second = two_accounts
    other = Bucket.of({"region": "eu-west-1", "endpoint_url": second.url})
    factor = quota.safety_factor()
    assert quota.base_rate() == DEFAULT_RATE * factor
    assert quota.base_rate(other) == OTHER_RATE * factor  # its own GetSendQuota and record
    assert quota.shared(other)["max_send_rate"] == repr(OTHER_RATE)
    # a full second booked in the default bucket leaves the other's rate untouched
    booked = [attempt.reserve(1, DEFAULT_RATE, burst=0, attempt=f"d{n}") for n in range(12)]
    assert booked[-1].wait == pytest.approx(1.0, abs=0.05)
    first_slot = attempt.reserve(1, OTHER_RATE, burst=0, attempt="o", bucket=other.id).wait
    assert first_slot == pytest.approx(1 / OTHER_RATE, abs=0.05)  # its first slot: empty
    # the default bucket keeps the key names of before buckets: old workers share it
    client = store.redis_client()
    assert client.exists(store.key("rate", "tat")) and client.exists(store.key("quota"))
    assert client.exists(store.key("bucket", other.id, "rate", "tat"))


def test_throttling_and_a_spent_quota_stay_in_their_bucket(two_accounts, settings):
    _, second = two_accounts
    settings.SEACUCUMBER_QUOTA_HOLD = 60
    other = Bucket.of({"region": "eu-west-1", "endpoint_url": second.url})
    ratelimit.throttled(other)
    factor = quota.safety_factor()
    assert ratelimit.rate_in_force(other) == pytest.approx(0.8 * OTHER_RATE * factor, rel=0.01)
    assert ratelimit.rate_in_force() == DEFAULT_RATE * factor
    ratelimit.quota_exhausted(other)
    assert ratelimit.quota_hold_remaining(other) > 50
    assert ratelimit.quota_hold_remaining() is None
    assert attempt.reserve(1, OTHER_RATE, attempt="held", bucket=other.id).held
    assert attempt.reserve(1, DEFAULT_RATE, attempt="free").admitted


def messages(count: int, tag: str) -> list[EmailMessage]:
    return [EmailMessage(f"{tag} {i}", "Body", SENDER, [f"{tag}{i}@example.com"])
            for i in range(count)]


def steady_rate(emulator: SESEmulator) -> float:
    """Recipients per second after the first second (the burst): those sent after the
    window's first send, over the time since it."""
    accepted = emulator.messages()
    window = [m for m in accepted if m.time >= accepted[0].time + 1.0]
    return (sum(len(m.destinations) for m in window[1:])
            / (window[-1].time - window[0].time))


def test_two_accounts_drain_at_once_each_at_its_rate(two_accounts, redis_url, settings,
                                                     start_worker):
    first, second = two_accounts
    queue = f"sc-buckets-{uuid.uuid4().hex[:8]}"
    env = point_at_emulator(settings, f"{redis_url}/1", first.url, settings.SEACUCUMBER_REDIS_URL,
                            settings.SEACUCUMBER_REDIS_PREFIX, queue, SEACUCUMBER_RATE_LIMIT="",
                            SEACUCUMBER_TEST_TRUSTED_ENDPOINT_URLS=json.dumps([second.url]),
                            SEACUCUMBER_TEST_TRUSTED_REGIONS=json.dumps(["eu-west-1"]))
    try:
        start_worker(env, queues=queue, pool="threads", concurrency=16)
        other = mail.get_connection(region="eu-west-1", endpoint_url=second.url)
        # 5 s of each account's rate, queued at once: one shared rate would take 7.5 s for
        # both and throttle the slower account; a bucket each drains both in 5 s
        assert other.send_messages(messages(int(5 * OTHER_RATE), "other")) == 30
        assert mail.get_connection().send_messages(messages(int(5 * DEFAULT_RATE), "own")) == 60
        first.wait_for(60, timeout=60)
        second.wait_for(30, timeout=60)
        # never over an account's rate (SES would throttle), each close to its own rate (one
        # rate for both would leave them 18 recipients/s of demand for 11.76/s); over a few
        # seconds, one send a loaded machine ran late counts as a fraction more
        assert first.stats()["throttled"] == second.stats()["throttled"] == 0
        assert 0.85 * DEFAULT_RATE <= steady_rate(first) <= 1.1 * DEFAULT_RATE
        assert 0.85 * OTHER_RATE <= steady_rate(second) <= 1.1 * OTHER_RATE
        out = StringIO()
        call_command("ses_usage", "--json", stdout=out)
        rows = {row["bucket"]: row for row in json.loads(out.getvalue())["buckets"]}
        assert rows.keys() == {"default", buckets.Bucket.of(
            {"region": "eu-west-1", "endpoint_url": second.url}).id}
        assert sorted(row["max_send_rate"] for row in rows.values()) == [OTHER_RATE,
                                                                         DEFAULT_RATE]
    finally:
        point_app_at("memory://", None)
