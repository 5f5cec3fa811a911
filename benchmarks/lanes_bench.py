"""Lanes under one account rate (issue 14): does a password reset still reach SES within a
second while a newsletter drains, and does the newsletter get what it leaves?

Full run (the issue's targets; about 4 x 4 minutes; run it on a quiet machine):

    .venv/bin/python benchmarks/lanes_bench.py --recipients 10000 --rate 50 --mode both

Small check: ``--recipients 300 --rate 50``. Everything runs on this machine: the project's
SES emulator in its own process (``--rate`` recipients/s, answering in 50 ms, ``Throttling``
past its rate; the workers learn the rate from its GetSendQuota and hold it times
``SEACUCUMBER_RATE_SAFETY_FACTOR``, as rate_bench.py's shared run does), two private
redis-servers (the broker, and the shared-state Redis apart from it so broker traffic is not
counted), and two real ``celery worker`` processes (``benchmarks/rate_app.py``).

Per scenario: a newsletter of ``--recipients`` one-recipient messages is queued
(``get_connection(lane="bulk")``), then the workers start; while it drains the benchmark
sends one transactional message a second (``get_connection()``). Scenarios, side by side:

- ``lanes off``: ``SEACUCUMBER_LANES = {"transactional": {}}``, the newsletter on the same
  lane and queue: one line, as before lanes.
- ``one-pool``: the default lanes; both processes consume both queues (``-Q q,q-bulk``).
- ``per-lane``: the default lanes; one process per lane (``-Q q`` and ``-Q q-bulk``).

Reported per scenario: each transactional message's latency, from ``send_messages``
returning to the emulator accepting it (``Accepted.time``, wall clock; matched by the
``seacucumber-id`` tag to ``message.seacucumber_ids[0]``): p50, p99, max; the bulk lane's
steady rate (recipients/s between its first and last accepted send, less a second at each
end) as a share of what transactional mail leaves (held rate = rate x safety factor, minus
the transactional recipients/s measured over the same window); throttles (emulator stats);
and the workers' round trips to the shared-state Redis per send (see ``StateTraffic``).
Results: benchmarks/lanes_results.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.rate_bench import Emulator, point_app, stamp, start_group  # noqa: E402
from seacucumber.testing.processes import RedisServer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "lanes_results.json"
CALIBRATION_SENDS = 5


class StateTraffic:
    """What the shared-state Redis served, from its own counters (``INFO``): read events
    (``total_reads_processed``: one per request a client writes, a pipeline or a Lua script
    being one; our measure of round trips) and calls per command (``commandstats``; the
    commands a Lua script runs count there too, under their own names; a worker's
    ``attempt.begin`` is an ``evalsha``, its ``attempt.settle`` pipeline carries one ``eval``).

    The window runs from just before the workers start to the drain's end, so the workers'
    start-up (connections, the quota read) and periodic work (outbox sweeps) are in it. The
    benchmark process's own traffic is taken out: its ``INFO`` calls (counted exactly), and
    for each transactional ``send_messages`` (its outbox record) the average of
    ``CALIBRATION_SENDS`` such calls made before the workers started."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def snapshot(self) -> dict[str, int]:
        info = self.client.info("all")  # one request, one read event
        counts = {"round_trips": info["total_reads_processed"],
                  "commands": info["total_commands_processed"]}
        for name, value in info.items():
            if name.startswith("cmdstat_") and name != "cmdstat_info":
                counts[name.removeprefix("cmdstat_")] = value["calls"]
        return counts

    @staticmethod
    def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
        delta = {k: v - before.get(k, 0) for k, v in after.items()}
        delta["round_trips"] -= 1  # the INFO that read ``after``
        delta["commands"] -= 1
        return {k: v for k, v in delta.items() if v}


def lanes_setting(queue: str, lanes: bool) -> dict:
    """``SEACUCUMBER_LANES``: the default lanes, the bulk queue named after ``queue``; or
    one lane (lanes off)."""
    if not lanes:
        return {"transactional": {}}
    return {"transactional": {}, "bulk": {"queue": f"{queue}-bulk", "min_share": 0.1}}


def run_scenario(name: str, args: argparse.Namespace) -> dict:
    """One scenario on fresh Redis servers and a fresh emulator."""
    from django.conf import settings
    from django.core.mail import EmailMessage, get_connection

    broker, state = RedisServer().start(), RedisServer().start()
    emulator = Emulator(rate=args.rate, latency=0.05, daily_quota=-1)
    workers = []
    try:
        queue = f"lanes-{uuid.uuid4().hex[:8]}"
        lanes = name != "lanes off"
        point_app(f"{broker.url}/0", queue, state=f"{state.url}/0")
        settings.SEACUCUMBER_LANES = lanes_setting(queue, lanes)
        env = {"CELERY_BROKER_URL": f"{broker.url}/0", "SEACUCUMBER_ENDPOINT_URL": emulator.url,
               "SEACUCUMBER_REDIS_URL": f"{state.url}/0", "SEACUCUMBER_REDIS_PREFIX": queue,
               "SEACUCUMBER_QUEUE": queue,
               "SEACUCUMBER_LANES": json.dumps(lanes_setting(queue, lanes))}
        if args.prefetch:
            env["CELERY_WORKER_PREFETCH_MULTIPLIER"] = str(args.prefetch)
        bulk = get_connection(lane="bulk") if lanes else get_connection()
        transactional = get_connection()
        newsletter = [EmailMessage(f"Newsletter {i}", "Body", "news@example.com",
                                   [f"bulk{i}@example.com"]) for i in range(args.recipients)]
        started = time.monotonic()
        for start in range(0, len(newsletter), 1000):
            bulk.send_messages(newsletter[start:start + 1000])
        enqueue_s = time.monotonic() - started

        traffic = StateTraffic(f"{state.url}/0")
        before = traffic.snapshot()
        for i in range(CALIBRATION_SENDS):  # sent too, once workers run; not timed
            transactional.send_messages([EmailMessage(
                f"Warm-up {i}", "Body", "app@example.com", [f"warmup{i}@example.com"])])
        before, calibrated = traffic.snapshot(), before
        caller = StateTraffic.delta(before, calibrated)

        groups = ({"one-pool": [f"{queue},{queue}-bulk"] * 2,
                   "per-lane": [queue, f"{queue}-bulk"]}.get(name) or [queue, queue])
        for n, queues in enumerate(groups):
            workers.append(start_group(f"worker-{n}", env, queues, args.pool, args.concurrency))

        sent: dict[str, float] = {}  # seacucumber id -> wall clock when send_messages returned
        accepted: list = []
        bulk_done = 0
        deadline = time.monotonic() + args.recipients / args.rate * 3 + 120
        next_send = time.monotonic()
        while time.monotonic() < deadline:
            found = emulator.client.messages(since=len(accepted))
            accepted += found
            bulk_done += sum(1 for m in found if m.destinations[0].startswith("bulk"))
            if bulk_done >= args.recipients:
                if len(accepted) >= args.recipients + CALIBRATION_SENDS + len(sent):
                    break  # drained, and every transactional message is in
            elif time.monotonic() >= next_send:  # one a second while the newsletter drains
                message = EmailMessage(f"Password reset {len(sent)}", "Body", "app@example.com",
                                       [f"reset{len(sent)}@example.com"])
                transactional.send_messages([message])
                sent[message.seacucumber_ids[0]] = time.time()
                next_send += 1.0
            time.sleep(max(0.0, min(0.2, next_send - time.monotonic())))
        after = traffic.snapshot()
        stats = emulator.client.stats()
    finally:
        for worker in workers:
            worker.stop()
        emulator.stop()
        broker.stop()
        state.stop()
    return summarise(name, args, accepted, sent, stats, StateTraffic.delta(after, before),
                     caller, enqueue_s)


def summarise(name: str, args: argparse.Namespace, accepted: list, sent: dict[str, float],
              stats: dict, window: dict[str, int], caller: dict[str, int],
              enqueue_s: float) -> dict:
    import celeryconfig
    from seacucumber.conf import conf

    safety = float(conf.SEACUCUMBER_RATE_SAFETY_FACTOR or 1.0)  # the rate is learned
    held = args.rate * safety
    bulk_times = sorted(m.time for m in accepted if m.destinations[0].startswith("bulk"))
    latencies = sorted(m.time - sent[m.tags["seacucumber-id"]] for m in accepted
                       if m.tags.get("seacucumber-id") in sent)
    first, last = bulk_times[0] + 1, bulk_times[-1] - 1
    span = max(last - first, 1e-9)
    steady = sum(1 for t in bulk_times if first <= t <= last) / span
    transactional_rate = sum(len(m.destinations) for m in accepted
                             if not m.destinations[0].startswith("bulk")
                             and first <= m.time <= last) / span
    leaves = held - transactional_rate
    # the workers' share of the window: less the benchmark process's transactional sends
    workers = {k: v - caller.get(k, 0) * len(sent) / CALIBRATION_SENDS
               for k, v in window.items()}
    sends = len(accepted)

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 3)

    return {
        "scenario": name, "recipients": args.recipients, "account_rate": args.rate,
        "held_rate": round(held, 3), "pool": args.pool, "concurrency": args.concurrency,
        "prefetch_multiplier": args.prefetch or celeryconfig.worker_prefetch_multiplier,
        "enqueue_s": round(enqueue_s, 2),
        "transactional_sent": len(sent), "transactional_accepted": len(latencies),
        "latency_p50_s": pct(0.5), "latency_p99_s": pct(0.99),
        "latency_max_s": round(latencies[-1], 3) if latencies else None,
        "latency_mean_s": round(statistics.mean(latencies), 3) if latencies else None,
        "bulk_accepted": len(bulk_times), "bulk_drain_s": round(bulk_times[-1] - bulk_times[0], 1),
        "bulk_steady_rate": round(steady, 2),
        "transactional_rate_in_window": round(transactional_rate, 3),
        "bulk_share_of_what_transactional_leaves": round(steady / leaves, 3),
        "throttles": stats["throttled"], "emulator_requests": stats["requests"],
        "sends_accepted": sends,
        "all_sent": sends == args.recipients + CALIBRATION_SENDS + len(sent),
        "state_round_trips_per_send": round(workers.get("round_trips", 0) / sends, 2),
        "state_commands_per_send": {k: round(v / sends, 2) for k, v in sorted(workers.items())
                                    if k != "round_trips" and round(v / sends, 2)},
        "caller_round_trips_per_send_messages": round(caller.get("round_trips", 0)
                                                      / CALIBRATION_SENDS, 2),
    }


def report(runs: list[dict]) -> str:
    rows = [("", *(r["scenario"] for r in runs))]
    for key, label in (("latency_p50_s", "transactional p50 s"),
                       ("latency_p99_s", "transactional p99 s (target <= 1)"),
                       ("latency_max_s", "transactional max s"),
                       ("transactional_accepted", "transactional messages"),
                       ("bulk_steady_rate", "bulk steady recipients/s"),
                       ("bulk_share_of_what_transactional_leaves",
                        "bulk / what transactional leaves (>= 0.95)"),
                       ("throttles", "throttles (target 0)"),
                       ("state_round_trips_per_send", "shared-state round trips / send"),
                       ("all_sent", "every message sent")):
        rows.append((label, *(str(r[key]) for r in runs)))
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width[i]) for i, cell in enumerate(row))
                     for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=10000, help="newsletter size")
    parser.add_argument("--rate", type=float, default=50.0, help="account rate, recipients/s")
    parser.add_argument("--mode", choices=["one-pool", "per-lane", "both"], default="both",
                        help="lanes-on scenarios; the lanes-off baseline always runs")
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=8, help="per worker process")
    parser.add_argument("--prefetch", type=int, default=None,
                        help="worker_prefetch_multiplier (unset: celeryconfig.py's, 1)")
    args = parser.parse_args()
    import benchmarks.rate_app  # noqa: F401 - configures Django and the Celery app

    scenarios = ["lanes off", *(["one-pool", "per-lane"] if args.mode == "both"
                                else [args.mode])]
    runs = []
    for name in scenarios:
        runs.append(run_scenario(name, args))
        print(json.dumps(runs[-1]), flush=True)
    print(report(runs))
    RESULTS.write_text(json.dumps({
        **stamp(args),
        "counted": StateTraffic.__doc__.split("\n\n")[0].replace("\n    ", " "),
        "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
