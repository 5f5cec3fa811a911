"""Benchmark: a shared rate per SES account and region (issue 28). Reproducible, not a test.

    .venv/bin/python benchmarks/buckets_bench.py [--rate 10] [--seconds 12] [--rounds 2]

Two SES accounts (two emulator processes, each with its own rate of ``--rate``
recipients/s, 50 ms latency, ``Throttling`` past it): the default one, and a mailer's with
``region="eu-west-1"`` and that account's ``endpoint_url``. ``--seconds`` of each account's
rate (alternately 1- and 3-recipient messages) is queued for both before two real worker
groups (prefork 3 + threads 8, standing in for two hosts) start: both drain at once.
Measured per account, as in ``rate_bench.py shared``: the steady rate from 1 s after the
first send until 95% of its recipients went out, and throttles; the combined steady rate
over the combined account rate is the figure (target: >= 0.9 with 0 throttles). Beside it in
each round, the same workers draining the default account alone (the same count of
messages): the ratio one bucket reaches on this machine at the same time.

Results: ``benchmarks/buckets_results.json``; BENCHMARKS.md has the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.rate_bench import (  # noqa: E402 - after the path set-up
    Emulator,
    mixed_messages,
    point_app,
    stamp,
    start_group,
    summarise_shared,
    wait_accepted,
)
from seacucumber.testing.processes import RedisServer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "buckets_results.json"
GROUPS = (("group-a", "prefork", 3), ("group-b", "threads", 8))


def drain(redis: RedisServer, emulators: list[Emulator], rate: float, seconds: float) -> dict:
    """Queue ``seconds`` of ``rate`` for each account in ``emulators`` (the first the default
    one, the second reached by a mailer's region and endpoint), start the worker groups, and
    summarise each account's run."""
    from django.conf import settings
    from django.core.mail import get_connection

    queue = f"buckets-{uuid.uuid4().hex[:8]}"
    point_app(f"{redis.url}/0", queue)
    others = [emulator.url for emulator in emulators[1:]]
    settings.SEACUCUMBER_ENDPOINT_URL = emulators[0].url
    settings.SEACUCUMBER_TRUSTED_ENDPOINT_URLS = others
    env = {"CELERY_BROKER_URL": f"{redis.url}/0", "SEACUCUMBER_ENDPOINT_URL": emulators[0].url,
           "SEACUCUMBER_REDIS_URL": f"{redis.url}/1", "SEACUCUMBER_REDIS_PREFIX": queue,
           "SEACUCUMBER_QUEUE": queue, "SEACUCUMBER_RATE_LIMIT": "",
           "BENCH_TRUSTED_ENDPOINT_URLS": json.dumps(others),
           "BENCH_TRUSTED_REGIONS": json.dumps(["eu-west-1"])}
    count = int(rate * seconds / 2)  # 2 recipients a message on average
    for emulator in emulators:
        emulator.client.reset()
    get_connection().send_messages(mixed_messages(count))
    for url in others:
        get_connection(region="eu-west-1", endpoint_url=url).send_messages(
            mixed_messages(count))
    workers = [start_group(name, env, queue, pool, size) for name, pool, size in GROUPS]
    try:
        done = all(wait_accepted(e.client, count, timeout=seconds * 4 + 30) for e in emulators)
    finally:
        for worker in workers:
            worker.stop()
    accounts = []
    for n, emulator in enumerate(emulators):
        accepted = [(m.time, len(m.destinations), m.app) for m in emulator.client.messages()]
        found = summarise_shared("seacucumber", 11, [3, 8], rate, accepted,
                                 emulator.client.stats(), done, count)
        found.pop("series")
        accounts.append({"account": "default" if n == 0 else "eu-west-1 (its endpoint)",
                         **found})
    steady = sum(a["steady_rate"] for a in accounts)
    return {"accounts": accounts, "combined_rate": round(steady, 2),
            "ratio": round(steady / (rate * len(emulators)), 3),
            "throttles": sum(a["throttles"] for a in accounts), "all_sent": done}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=10.0, help="each account's rate")
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="seconds of each account's rate queued")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    redis = RedisServer().start()
    emulators = [Emulator(rate=args.rate, latency=0.05, daily_quota=-1) for _ in range(2)]
    rounds = []
    try:
        for n in range(args.rounds):
            both = drain(redis, emulators, args.rate, args.seconds)
            alone = drain(redis, emulators[:1], args.rate, args.seconds)
            rounds.append({"round": n + 1, "two_accounts": both, "one_account": alone})
            print(json.dumps(rounds[-1]), flush=True)
    finally:
        for emulator in emulators:
            emulator.stop()
        redis.stop()
    RESULTS.write_text(json.dumps({**stamp(args), "rounds": rounds}, indent=2) + "\n")


if __name__ == "__main__":
    main()
