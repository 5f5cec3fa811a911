"""A longer chaos run than the tests: messages through real workers that are SIGKILLed again
and again, while the SES emulator (its own process) answers 503s, drops connections, drops
some after accepting (SES sent, the client cannot know) and throttles. Counts what was lost
and what arrived twice.

    .venv/bin/python benchmarks/chaos.py --messages 2000 --kill-every 8
    .venv/bin/python benchmarks/chaos.py --messages 600 --kill-every 2 --runs 5 --outbox off

Broker and shared state: a private redis-server with AOF. Two worker groups: a steady one
(threads) and a victim (prefork) killed with SIGKILL every ``--kill-every`` seconds and
started again. A Redis broker hands a dead worker's tasks back after the visibility timeout,
shortened here to 10 s (celeryconfig.py: 2 h); a task a worker was taking off the queue as
it died, which kombu's Redis transport loses, is queued again by the outbox (grace 5 s, a
sweep every 2 s here; 30 s and 10 s by default). ``requeued_by_outbox`` counts those.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
import uuid
from collections import Counter
from email import message_from_bytes
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.rate_bench import Emulator, point_app, start_group  # noqa: E402
from seacucumber.testing.processes import RedisServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--kill-every", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=60.0, help="emulator account rate")
    parser.add_argument("--timeout", type=float, default=600.0, help="per run")
    parser.add_argument("--outbox", choices=["on", "off"], default="on",
                        help="off: what kombu's Redis transport alone loses")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    import benchmarks.rate_app  # noqa: F401 - configures Django and the Celery app

    runs = []
    for _ in range(args.runs):
        runs.append(run_once(args))
        print(json.dumps(runs[-1]), flush=True)
    totals = {key: sum(run[key] for run in runs)
              for key in ("messages", "kills", "sends_attempted", "faults_5xx", "faults_dropped",
                          "faults_dropped_after_accept", "throttled", "arrived", "lost",
                          "duplicates", "duplicate_bound", "requeued_by_outbox")}
    totals["runs_losing_messages"] = sum(1 for run in runs if run["lost"])
    result = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()}: {platform.platform()}, {os.cpu_count()} CPUs",
        "command": f".venv/bin/python benchmarks/chaos.py --messages {args.messages} "
                   f"--kill-every {args.kill_every:g} --rate {args.rate:g} "
                   f"--outbox {args.outbox} --runs {args.runs}",
        "runs": runs, "totals": totals,
    }
    print(json.dumps(totals, indent=1))
    path = ROOT / "benchmarks" / "chaos_results.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved = {k: v for k, v in saved.items() if k.startswith("outbox ")}  # not an older file
    saved[f"outbox {args.outbox}, kill every {args.kill_every:g} s"] = result
    path.write_text(json.dumps(saved, indent=1) + "\n")


def run_once(args: argparse.Namespace) -> dict:
    """One run on a fresh Redis and emulator: what arrived, what was lost or sent twice."""
    from django.conf import settings
    from django.core.mail import EmailMessage, get_connection

    redis = RedisServer(appendonly=True).start()
    emulator = Emulator(keep_raw=True, rate=args.rate, fail_5xx=0.1, drop=0.03,
                        drop_after_accept=0.01, daily_quota=-1, seed=7)
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    env = {"CELERY_BROKER_URL": f"{redis.url}/0", "SEACUCUMBER_ENDPOINT_URL": emulator.url,
           "SEACUCUMBER_REDIS_URL": f"{redis.url}/1", "SEACUCUMBER_REDIS_PREFIX": queue,
           "SEACUCUMBER_QUEUE": queue, "SEACUCUMBER_RATE_LIMIT": str(args.rate * 1.2),
           "BENCH_VISIBILITY": "10", "SEACUCUMBER_READ_TIMEOUT": "5",
           "SEACUCUMBER_OUTBOX_GRACE": "5", "SEACUCUMBER_OUTBOX_SWEEP_INTERVAL": "2",
           "SEACUCUMBER_OUTBOX": "1" if args.outbox == "on" else "0"}
    kills = 0
    started = time.monotonic()
    try:
        point_app(f"{redis.url}/0", queue)
        settings.SEACUCUMBER_OUTBOX = args.outbox == "on"
        messages = [EmailMessage(f"Chaos {i}", "Body", "bench@example.com",
                                 [f"to{i}@example.com"], headers={"X-Chaos-Id": str(i)})
                    for i in range(args.messages)]
        queued = get_connection().send_messages(messages)
        steady = start_group("steady", env, queue, "threads", 8)
        victim = start_group("victim", env, queue, "prefork", 4)
        workers = [steady, victim]
        last_kill = time.monotonic()
        while emulator.client.stats()["accepted"] < args.messages * 0.98 or \
                len(arrived(emulator)) < args.messages:
            if time.monotonic() - started > args.timeout:
                break
            if time.monotonic() - last_kill > args.kill_every and \
                    emulator.client.stats()["accepted"] < args.messages * 0.9:
                victim.kill()
                kills += 1
                victim = start_group("victim", env, queue, "prefork", 4)
                workers.append(victim)
                last_kill = time.monotonic()
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        seen = arrived(emulator)
        stats = emulator.client.stats()
        steady.stop()
        victim.stop()
        requeued = set()
        for worker in workers:
            requeued.update(re.findall(r"message (\w+): its task was lost by the broker",
                                       worker.log()))
    finally:
        emulator.stop()
        redis.stop()
    return {
        "messages": queued, "kills": kills, "seconds": round(elapsed, 1),
        "sends_attempted": stats["requests"], "faults_5xx": stats["failed_5xx"],
        "faults_dropped": stats["dropped"],
        "faults_dropped_after_accept": stats["dropped_after_accept"],
        "throttled": stats["throttled"],
        "arrived": len(seen), "lost": queued - len(seen),
        "duplicates": sum(n - 1 for n in seen.values()),
        "duplicate_bound": kills + stats["dropped_after_accept"],
        "requeued_by_outbox": len(requeued),
    }


def arrived(emulator) -> Counter:
    return Counter(message_from_bytes(m.raw)["X-Chaos-Id"] for m in emulator.client.messages())


if __name__ == "__main__":
    main()
