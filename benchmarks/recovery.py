"""How fast mail resumes after a worker is SIGKILLed (issue 28): two workers drain
``--messages`` at the account's ``--rate``; one is SIGKILLed (the worker and its pool) with
most of the mail left. The tail (kill -> last message at SES) is set beside what the rate
needs for the mail left at the kill; the target: at most 15 s more. Nothing may be lost;
duplicates at most the victim's concurrency (only sends inside the SES call when it died).

    .venv/bin/python benchmarks/recovery.py                              # every broker, pool
    .venv/bin/python benchmarks/recovery.py --brokers redis --pools threads --baseline

Each case runs on fresh parts: a private redis-server (the shared state; the broker too for
``redis``), the SES emulator in its own process, RabbitMQ at 127.0.0.1:5672 (a queue of the
run's own) and moto's SQS server in this process. Settings are the package's defaults
(visibility timeouts as celeryconfig.py: 2 h) but for the account rate. ``--baseline`` runs
each case a second time, side by side, with ``SEACUCUMBER_HOLDER_TTL`` so long no holder ever
lapses and the outbox's grace and sweep interval of before (30 s, 10 s): the fixed deadlines
alone, as before heartbeats.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import re
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from email import message_from_bytes
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.rate_bench import Emulator, point_app, start_group  # noqa: E402
from seacucumber.testing.processes import RedisServer, free_port  # noqa: E402

AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
SQS_OPTIONS = {"region": "us-east-1", "is_secure": False, "wait_time_seconds": 0,
               "polling_interval": 0.1}
TARGET_EXCESS = 15.0
#: Before heartbeats: no holder lapses within the run, and the outbox's defaults of then.
BASELINE = {"SEACUCUMBER_HOLDER_TTL": "1000000", "SEACUCUMBER_OUTBOX_GRACE": "30",
            "SEACUCUMBER_OUTBOX_SWEEP_INTERVAL": "10"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="the account's rate")
    parser.add_argument("--kill-at", type=float, default=0.2,
                        help="kill when this share of the mail has reached SES")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--brokers", default="redis,amqp,sqs")
    parser.add_argument("--pools", default="threads,prefork")
    parser.add_argument("--baseline", action="store_true",
                        help="also run each case with no holder ever lapsing")
    parser.add_argument("--timeout", type=float, default=400.0, help="per case")
    args = parser.parse_args()
    import benchmarks.rate_app  # noqa: F401 - configures Django and the Celery app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server: each request

    cases = []
    for broker in args.brokers.split(","):
        for pool in args.pools.split(","):
            for mode in ("heartbeats", "baseline") if args.baseline else ("heartbeats",):
                cases.append(run_case(args, broker, pool, mode))
                print(json.dumps(cases[-1]), flush=True)
    result = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}: {platform.platform()}, {os.cpu_count()} CPUs",
        "command": " ".join([".venv/bin/python benchmarks/recovery.py", *sys.argv[1:]]),
        "target": f"tail - needed <= {TARGET_EXCESS:g} s, 0 lost, duplicates <= concurrency",
        "cases": [{k: v for k, v in case.items() if k != "logs"} for case in cases],
    }
    path = ROOT / "benchmarks" / "recovery_results.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    for case in cases:
        print(f"{case['broker']:6} {case['pool']:8} {case['mode']:10} tail {case['tail']:6.1f} s"
              f"  needed {case['needed']:5.1f} s  excess {case['excess']:6.1f} s"
              f"  lost {case['lost']}  duplicates {case['duplicates']}"
              f"  {'ok' if case['met'] else 'MISSED'}")


def run_case(args: argparse.Namespace, broker_kind: str, pool: str, mode: str) -> dict:
    """One kill on fresh parts: the tail beside what the rate needs."""
    from django.core.mail import EmailMessage, get_connection

    with ExitStack() as stack:
        redis = RedisServer().start()
        stack.callback(redis.stop)
        emulator = Emulator(keep_raw=True, rate=args.rate * 1.25, daily_quota=-1)
        stack.callback(emulator.stop)
        queue = f"recovery-{uuid.uuid4().hex[:8]}"
        broker = broker_url(broker_kind, redis, stack, queue)
        point_app(broker, queue, state=f"{redis.url}/1")
        from django.conf import settings

        settings.SEACUCUMBER_OUTBOX_GRACE = float(  # the backend records with the same grace
            BASELINE["SEACUCUMBER_OUTBOX_GRACE"] if mode == "baseline" else 10.0)
        if broker_kind == "sqs":
            from benchmarks.rate_app import app

            app.conf.broker_transport_options = {**app.conf.broker_transport_options,
                                                 **SQS_OPTIONS}
        env = {"CELERY_BROKER_URL": broker, "SEACUCUMBER_ENDPOINT_URL": emulator.url,
               "SEACUCUMBER_REDIS_URL": f"{redis.url}/1", "SEACUCUMBER_REDIS_PREFIX": queue,
               "SEACUCUMBER_QUEUE": queue, "SEACUCUMBER_RATE_LIMIT": f"{args.rate:g}",
               **(BASELINE if mode == "baseline" else {})}
        messages = [EmailMessage(f"Recovery {i}", "Body", "bench@example.com",
                                 [f"to{i}@example.com"], headers={"X-Recovery-Id": str(i)})
                    for i in range(args.messages)]
        queued = get_connection().send_messages(messages)  # before the workers: all queued
        victim = start_group("victim", env, queue, pool, args.concurrency)
        stack.callback(victim.stop)
        steady = start_group("steady", env, queue, pool, args.concurrency)
        stack.callback(steady.stop)
        while len(arrived(emulator)) < args.messages * args.kill_at:
            time.sleep(0.05)
        victim.kill()
        killed_at, left = time.time(), args.messages - len(arrived(emulator))
        deadline = time.monotonic() + args.timeout
        while len(seen := arrived(emulator)) < args.messages and time.monotonic() < deadline:
            time.sleep(0.25)
        last = max(m.time for m in emulator.client.messages())
        by_app = Counter(m.app for m in emulator.client.messages())
        taken_over = set(re.findall(r"message (\w+): its worker process died holding it",
                                    steady.log()))
        if broker_kind == "amqp":
            delete_amqp_queue(broker, queue)
    tail, needed = last - killed_at, left / args.rate
    lost, duplicates = queued - len(seen), sum(n - 1 for n in seen.values())
    return {"broker": broker_kind, "pool": pool, "mode": mode, "messages": queued,
            "left_at_kill": left, "tail": round(tail, 1), "needed": round(needed, 1),
            "excess": round(tail - needed, 1), "lost": lost, "duplicates": duplicates,
            "victim_sent": by_app.get("victim", 0), "republished": len(taken_over),
            "logs": [str(steady.log_path), str(victim.log_path)],
            "met": lost == 0 and duplicates <= args.concurrency
            and tail - needed <= TARGET_EXCESS}


def broker_url(kind: str, redis: RedisServer, stack: ExitStack, queue: str) -> str:
    if kind == "redis":
        return f"{redis.url}/0"
    if kind == "amqp":
        return AMQP_URL
    if kind == "sqs":
        from moto.server import ThreadedMotoServer

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        stack.callback(server.stop)
        return f"sqs://testing:testing@127.0.0.1:{port}"
    raise SystemExit(f"unknown broker {kind!r}: redis, amqp or sqs")


def delete_amqp_queue(broker: str, queue: str) -> None:
    """Leave RabbitMQ as it was (other helpers' runs share it)."""
    from kombu import Connection

    with Connection(broker) as connection:
        connection.default_channel.queue_delete(queue)


def arrived(emulator: Emulator) -> Counter:
    return Counter(message_from_bytes(m.raw)["X-Recovery-Id"]
                   for m in emulator.client.messages())


if __name__ == "__main__":
    main()
