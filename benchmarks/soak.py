"""Memory soak (issue 14): many messages through two worker processes; does a worker's memory
or the shared-state Redis grow with the number of messages sent?

Full run (about 5 minutes of two busy cores; run it on a quiet machine):

    .venv/bin/python benchmarks/soak.py --messages 50000

Small check: ``--messages 2000``. On this machine: the project's SES emulator in its own
process at ``--rate`` (2,000 recipients/s, answering in 20 ms) with
``SEACUCUMBER_RATE_LIMIT`` at 0.98 of it, so the workers, not the rate, are the limit; two
private redis-servers (the broker, and the shared-state Redis apart from it so only Sea
Cucumber's records are in it); two real ``celery worker`` processes (``benchmarks/rate_app.py``,
prefork, each consuming both lanes' queues). The benchmark queues one-recipient messages
(every fifth on the bulk lane) in chunks, keeping at most 5,000 waiting on the broker.

Reported:

- each worker's RSS, the parent and its pool children together (psutil), sampled every
  second: after the first ``--reference`` messages (5,000) were accepted, and at the end;
  growth in % (target at most 10%).
- the shared-state Redis (``INFO memory`` ``used_memory``, ``DBSIZE``, keys by kind) before
  the run and after the drain (target within 5%). "Before" is after a warm-up of 200
  messages (half on each lane) whose send-log keys are then deleted, so the workers'
  connections (client buffers) and cached scripts are in it; and with Redis's per-command
  latency histograms (``latency-tracking``, on by default since 7.0, ~30 KB each, allocated
  at a command's first use) and its slow log turned off on that server: fixed costs of
  Redis's own diagnostics, not Sea Cucumber's records, which would otherwise count as
  growth on a Redis this small. The send log keeps a
  ``<prefix>:sent:<id>`` key per message for the message's lifetime plus 24 hours by design
  (a redelivery must find it); a short ``SEACUCUMBER_MESSAGE_LIFETIME`` does not shorten
  that below 24 hours, so it would not help here. Instead the script reports the memory
  three ways: as left after the drain; after deleting the ``sent`` keys (each checked to
  carry an expiry); and after deleting every key that carries an expiry, i.e. what stays
  once everything set to expire has expired. A key with no expiry that was not there before
  is a leak, and is listed.

Results: benchmarks/soak_results.json and a summary on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.lanes_bench import lanes_setting  # noqa: E402
from benchmarks.rate_bench import Emulator, point_app, stamp, start_group  # noqa: E402
from seacucumber.testing.processes import RedisServer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "soak_results.json"
AHEAD = 5000  # most messages waiting on the broker at once
CHUNK = 500
WARM_UP = 200  # messages sent before the "before" figures (not counted in --messages)


def rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (a prefork worker's pool).
    psutil rather than walking /proc by hand: it finds the children and reads their memory
    portably."""
    import psutil

    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class Sampler(threading.Thread):
    """Every second: messages accepted so far and each worker's RSS."""

    def __init__(self, emulator: Emulator, pids: list[int], warm_up: int) -> None:
        super().__init__(daemon=True)
        self.emulator, self.pids, self.warm_up = emulator, pids, warm_up
        self.samples: list[dict] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            self.sample()

    def sample(self) -> dict:
        found = {"t": time.time(),
                 "accepted": self.emulator.client.stats()["accepted"] - self.warm_up,
                 "rss": [rss(pid) for pid in self.pids]}
        self.samples.append(found)
        return found


def redis_state(client, prefix: str, url: str) -> dict:
    """The shared-state Redis's memory (``settled_memory``), its key count, and its keys by
    kind (the part after the prefix, ids dropped) with how many carry no expiry."""
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: {"keys": 0, "no_expiry": 0})
    for key in client.scan_iter(count=1000):
        name = key.decode()
        parts = name.removeprefix(f"{prefix}:").split(":")
        kind = ":".join(part for part in parts[:2] if not looks_like_id(part)) or "?"
        kinds[kind]["keys"] += 1
        kinds[kind]["no_expiry"] += client.ttl(key) == -1
    dbsize = client.dbsize()
    client.connection_pool.disconnect()  # its buffers (the scan's replies) are this script's
    memory = settled_memory(url)
    return {**memory, "dbsize": dbsize, "kinds": dict(sorted(kinds.items()))}


def settled_memory(url: str) -> dict:
    """``INFO memory`` once Redis has shrunk its key tables after deletions (its cron resizes
    and rehashes them a step every 100 ms): read over a fresh connection every half second
    until ``used_memory`` is the same twice running, for at most 30 s. The clients'
    buffers are reported apart (``mem_clients_normal``): they belong to the connections
    open at the time, not to stored records."""
    import redis

    last, memory = None, {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reader = redis.Redis.from_url(url)
        memory = reader.info("memory")
        clients = reader.info("clients")["connected_clients"] - 1  # not this reader
        reader.close()
        if memory["used_memory"] == last:
            break
        last = memory["used_memory"]
        time.sleep(0.5)
    return {"used_memory": memory["used_memory"],
            "used_memory_dataset": memory["used_memory_dataset"],
            "mem_clients_normal": memory["mem_clients_normal"],
            "used_memory_without_clients": memory["used_memory"]
            - memory["mem_clients_normal"],
            "used_memory_scripts": memory["used_memory_scripts"],
            "used_memory_overhead": memory["used_memory_overhead"],
            "connected_clients": clients}


def looks_like_id(part: str) -> bool:
    return len(part) >= 16 and any(c.isdigit() for c in part)


def delete_keys(client, match: str | None = None, expiring_only: bool = False) -> int:
    deleted = 0
    for key in client.scan_iter(match=match, count=1000):
        if expiring_only and client.ttl(key) < 0:
            continue
        deleted += client.unlink(key)
    return deleted


def run(args: argparse.Namespace) -> dict:
    import redis
    from django.core.mail import EmailMessage, get_connection

    broker, state = RedisServer().start(), RedisServer().start()
    emulator = Emulator(rate=args.rate, latency=0.02, daily_quota=-1)
    workers, sampler = [], None
    try:
        queue = f"soak-{uuid.uuid4().hex[:8]}"
        point_app(f"{broker.url}/0", queue, state=f"{state.url}/0")
        from django.conf import settings

        settings.SEACUCUMBER_LANES = lanes_setting(queue, lanes=True)
        env = {"CELERY_BROKER_URL": f"{broker.url}/0", "SEACUCUMBER_ENDPOINT_URL": emulator.url,
               "SEACUCUMBER_REDIS_URL": f"{state.url}/0", "SEACUCUMBER_REDIS_PREFIX": queue,
               "SEACUCUMBER_QUEUE": queue, "SEACUCUMBER_RATE_LIMIT": str(args.rate * 0.98),
               "SEACUCUMBER_LANES": json.dumps(settings.SEACUCUMBER_LANES)}
        client = redis.Redis.from_url(f"{state.url}/0")
        # Redis's own diagnostics, allocated at a command's first use or kept per slow call,
        # are not Sea Cucumber's records: off, so they do not count as growth
        client.config_set("latency-tracking", "no")
        client.config_set("slowlog-log-slower-than", -1)
        for n in range(2):
            workers.append(start_group(f"worker-{n}", env, f"{queue},{queue}-bulk",
                                       args.pool, args.concurrency))
        connections = {"transactional": get_connection(), "bulk": get_connection(lane="bulk")}
        for lane in connections:  # warm-up: connections, scripts, per-command stats in place
            connections[lane].send_messages([
                EmailMessage("Warm-up", "Body", "soak@example.com", [f"warm-{lane}{i}@example.com"])
                for i in range(WARM_UP // 2)])
        emulator.client.wait_for(WARM_UP, timeout=120)
        time.sleep(3)
        delete_keys(client, match=f"{queue}:sent:*")
        before = redis_state(client, queue, f"{state.url}/0")
        sampler = Sampler(emulator, [w.process.pid for w in workers], WARM_UP)
        sampler.start()
        queued, started = 0, time.monotonic()
        deadline = started + args.timeout
        while queued < args.messages and time.monotonic() < deadline:
            if queued + WARM_UP - emulator.client.stats()["accepted"] > AHEAD - CHUNK:
                time.sleep(0.2)
                continue
            chunk = [EmailMessage(f"Soak {i}", "Body", "soak@example.com", [f"to{i}@example.com"])
                     for i in range(queued, min(queued + CHUNK, args.messages))]
            lane = "bulk" if (queued // CHUNK) % 5 == 4 else "transactional"
            queued += connections[lane].send_messages(chunk)
        while emulator.client.stats()["accepted"] < queued + WARM_UP and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        drained_s = time.monotonic() - started
        time.sleep(3)  # the last settles land after SES answered
        sampler.done.set()
        sampler.join()
        end = sampler.sample()
        after = redis_state(client, queue, f"{state.url}/0")
        sent_keys = after["kinds"].get("sent", {})
        delete_keys(client, match=f"{queue}:sent:*")
        without_sent = redis_state(client, queue, f"{state.url}/0")
        delete_keys(client, expiring_only=True)
        without_expiring = redis_state(client, queue, f"{state.url}/0")
        stats = emulator.client.stats()
    finally:
        if sampler is not None:
            sampler.done.set()
        for worker in workers:
            worker.stop()
        emulator.stop()
        broker.stop()
        state.stop()
    return summarise(args, queued, stats, sampler.samples, end, drained_s, before, after,
                     sent_keys, without_sent, without_expiring)


def summarise(args, queued, stats, samples, end, drained_s, before, after, sent_keys,
              without_sent, without_expiring) -> dict:
    reference = min(args.reference, queued // 4)
    at_reference = next((s for s in samples if s["accepted"] >= reference), samples[0])

    def growth(new: float, old: float) -> float:
        return round(100 * (new - old) / old, 2)

    leaked = {kind: found for kind, found in without_expiring["kinds"].items()
              if found["no_expiry"] > before["kinds"].get(kind, {}).get("no_expiry", 0)}
    return {
        "messages": queued, "warm_up_messages": WARM_UP,
        "accepted": stats["accepted"] - WARM_UP, "throttles": stats["throttled"],
        "all_sent": stats["accepted"] >= queued + WARM_UP, "drain_s": round(drained_s, 1),
        "messages_per_s": round(queued / drained_s, 1), "pool": args.pool,
        "concurrency": args.concurrency,
        "rss_reference_after_messages": at_reference["accepted"],
        "rss_at_reference_mb": [round(b / 2**20, 1) for b in at_reference["rss"]],
        "rss_end_mb": [round(b / 2**20, 1) for b in end["rss"]],
        "rss_growth_pct": [growth(e, r) for e, r in zip(end["rss"], at_reference["rss"],
                                                         strict=True)],
        "rss_growth_pct_both": growth(sum(end["rss"]), sum(at_reference["rss"])),
        "rss_samples_mb": [[round(s["t"] - samples[0]["t"], 1), s["accepted"],
                            *(round(b / 2**20, 1) for b in s["rss"])] for s in samples],
        "redis_before": before, "redis_after_drain": after,
        "redis_after_deleting_sent_keys": without_sent,
        "redis_after_deleting_every_expiring_key": without_expiring,
        "sent_keys": sent_keys,
        "used_memory_growth_pct_after_drain": growth(after["used_memory"], before["used_memory"]),
        "used_memory_growth_pct_without_sent_keys": growth(without_sent["used_memory"],
                                                           before["used_memory"]),
        "used_memory_growth_pct_without_expiring_keys": growth(without_expiring["used_memory"],
                                                               before["used_memory"]),
        "used_memory_without_clients_growth_pct_without_sent_keys": growth(
            without_sent["used_memory_without_clients"], before["used_memory_without_clients"]),
        "keys_without_expiry_not_there_before": leaked,
    }


def report(result: dict) -> str:
    lines = [
        f"{result['messages']} messages in {result['drain_s']} s "
        f"({result['messages_per_s']}/s), all sent: {result['all_sent']}, "
        f"throttles: {result['throttles']}",
        f"worker RSS after {result['rss_reference_after_messages']} messages: "
        f"{result['rss_at_reference_mb']} MB; at the end: {result['rss_end_mb']} MB; growth "
        f"{result['rss_growth_pct']} % (both: {result['rss_growth_pct_both']} %; target <= 10)",
    ]
    for label, key, growth in (
            ("before", "redis_before", None),
            ("after the drain", "redis_after_drain", "used_memory_growth_pct_after_drain"),
            ("without sent keys", "redis_after_deleting_sent_keys",
             "used_memory_growth_pct_without_sent_keys"),
            ("without expiring keys", "redis_after_deleting_every_expiring_key",
             "used_memory_growth_pct_without_expiring_keys")):
        found = result[key]
        lines.append(f"shared-state Redis {label}: used_memory {found['used_memory']} B"
                     + (f" ({result[growth]:+} %; target within 5)" if growth else "")
                     + f", of which clients' buffers {found['mem_clients_normal']} B "
                     f"({found['connected_clients']} clients), {found['dbsize']} keys "
                     f"{found['kinds']}")
    sent = result["sent_keys"]
    lines.append(f"send-log keys after the drain: {sent.get('keys', 0)}, "
                 f"{sent.get('no_expiry', 0)} without expiry")
    lines.append("keys without expiry not there before: "
                 f"{result['keys_without_expiry_not_there_before'] or 'none'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--reference", type=int, default=5000,
                        help="RSS growth is measured from this many messages sent (at most "
                             "a quarter of --messages)")
    parser.add_argument("--rate", type=float, default=2000.0, help="emulator account rate")
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=8, help="per worker process")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    import benchmarks.rate_app  # noqa: F401 - configures Django and the Celery app

    result = run(args)
    print(report(result))
    RESULTS.write_text(json.dumps({
        **stamp(args),
        **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
