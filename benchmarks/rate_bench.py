"""Benchmarks of the shared send rate (issue 3). Reproducible, not timed tests.

    .venv/bin/python benchmarks/rate_bench.py all          # or: shared caller capacity startup

Everything runs on this machine: the project's SES emulator as a separate process (its
own CPU, real HTTP, ``Throttling`` past its rate), a private redis-server as broker and
shared state, real ``celery worker`` processes (``benchmarks/rate_app.py``).

1. shared   steady aggregate rate / account rate, and throttles, with 1, 3 and 6 worker
            processes split over two worker groups (stand-in hosts), mixed 1- and
            3-recipient messages; Sea Cucumber's shared rate beside Celery's per-worker
            ``rate_limit`` (what Sea Cucumber 1.x used). Plot: benchmarks/rate_groups.png.
2. caller   how long ``send_messages`` blocks per message (1,000 calls of one message)
            beside a synchronous boto3 send to an endpoint answering in 50 ms; with, in
            the same run, the same call with the outbox off, its parts: building the
            sends alone, and Celery's own
            ``apply_async`` of an empty payload (the floor any Celery backend pays), and
            the per-message cost of 100-message calls.
3. capacity messages/s of one worker host (limiter on but never binding; threads and
            prefork pools, concurrency 8 and 16) / a bare boto3 thread pool of the same
            concurrency, same endpoint, 50 ms latency, in rounds run one after the other
            (the median round's ratio); beside it in each round, the same worker running
            a task that makes only the bare call (Celery's own floor), and once the worker
            with the outbox off; the worker's and the floor's CPU per message, in the
            worker's main process and in its pool.
4. startup  time from worker start to the full rate, the quota learned from SES.
5. cpu      CPU time per send of the send task run in this process, beside a bare boto3
            call of the same message, interleaved (the emulator in its own process);
            ``--body-kb 20``: of a message with a 20 KB body instead of a 4-byte one.

``caller`` also times one ``send_messages`` call of 1,000 messages per message, in rounds
interleaved with 1,000 of Celery's ``apply_async``.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106
                  AWS_DEFAULT_REGION="us-east-1")

from seacucumber.testing.emulator import EmulatorClient  # noqa: E402
from seacucumber.testing.processes import RedisServer, Worker, free_port  # noqa: E402

RAW = b"From: bench@example.com\r\nTo: to@example.com\r\nSubject: bench\r\n\r\nbody\r\n"
RESULTS = ROOT / "benchmarks" / "rate_results.json"


# --- plumbing --------------------------------------------------------------------------------

class Emulator:
    """The emulator CLI in a process of its own."""

    def __init__(self, keep_raw: bool = False, **flags: float) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "seacucumber.testing.emulator", "--port",
                   str(self.port), *([] if keep_raw else ["--no-raw"])]
        for name, value in flags.items():
            command += [f"--{name.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = EmulatorClient(self.url).ready()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def point_app(broker: str, queue: str, state: str | None = None) -> None:
    """This process sends to ``broker`` (db 0 of the private Redis) and ``queue``, with the
    shared state where the benchmarks' workers keep it (``state``, else db 1 of the broker's
    Redis; the queue as key prefix), so the outbox records what the workers settle."""
    from kombu import pools

    from benchmarks.rate_app import app

    app._after_fork()  # drop the app's producer pool (as tests/conftest.py point_app_at does)
    pools.reset()
    app._local = threading.local()
    app.conf.broker_url = broker
    app.conf.task_routes = {"seacucumber.send_email": {"queue": queue}}
    assign(SEACUCUMBER_QUEUE=queue,
           SEACUCUMBER_REDIS_URL=state or broker.rsplit("/", 1)[0] + "/1",
           SEACUCUMBER_REDIS_PREFIX=queue)


def assign(**values: object) -> None:
    """Set Django settings in this process as ``override_settings`` tells a change, with
    Django's ``setting_changed`` for each: ``send_messages`` keeps the settings it read
    until that signal (``seacucumber/conf.py``). ``UNSET`` deletes one."""
    from django.conf import settings
    from django.core.signals import setting_changed

    for name, value in values.items():
        if value is UNSET:
            delattr(settings, name)
        else:
            setattr(settings, name, value)
        setting_changed.send(sender=type(settings._wrapped), setting=name,
                             value=None if value is UNSET else value, enter=value is not UNSET)


#: ``assign``'s value for a setting to delete.
UNSET = object()


def mixed_messages(count: int, recipients_at_odd: int = 3) -> list:
    from django.core.mail import EmailMessage

    messages = []
    for i in range(count):
        extra = [f"cc{i}-{n}@example.com" for n in range(recipients_at_odd - 1)] if i % 2 else []
        messages.append(EmailMessage(f"Bench {i}", "Body", "bench@example.com",
                                     [f"to{i}@example.com"], cc=extra))
    return messages


def start_group(name: str, env: dict, queue: str, pool: str, concurrency: int) -> Worker:
    worker = Worker(app="benchmarks.rate_app", env={**env, "AWS_SDK_UA_APP_ID": name},
                    queues=queue, pool=pool, concurrency=concurrency, cwd=ROOT)
    return worker.start()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def window_cpu(pid: int, client: EmulatorClient, count: int) -> dict:
    """CPU milliseconds per message of worker ``pid`` ("main") and of its pool children
    ("pool": prefork's; 0 for a threads pool) while SES accepts the middle three quarters
    of ``count`` messages: start-up and the last sends left out."""
    children = Path(f"/proc/{pid}/task/{pid}/children")

    def reading() -> tuple[int, float, float]:
        accepted = client.stats()["accepted"]
        pool = sum(process_cpu(int(child)) for child in children.read_text().split())
        return accepted, process_cpu(pid), pool

    def at(share: float) -> tuple[int, float, float]:
        if not wait_accepted(client, int(share * count), timeout=600):
            raise TimeoutError(f"SES accepted under {share:.0%} of {count} in 600 s")
        return reading()

    (first, main_0, pool_0), (last, main_1, pool_1) = at(1 / 8), at(7 / 8)
    sent = last - first
    return {"main": 1000 * (main_1 - main_0) / sent, "pool": 1000 * (pool_1 - pool_0) / sent}


def wait_accepted(client: EmulatorClient, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while client.stats()["accepted"] < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def machine() -> str:
    return (f"{platform.node()}: {platform.platform()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}")


def stamp(args: argparse.Namespace) -> dict:
    """When, where and how a result was measured, for its JSON file."""
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(), "command": " ".join([".venv/bin/python", *sys.argv]),
            "options": vars(args)}


# --- 1. shared rate ----------------------------------------------------------------------------

def run_shared(redis: RedisServer, account_rate: float, seconds: float) -> list[dict]:
    emulator = Emulator(rate=account_rate, latency=0.05, daily_quota=-1)
    splits = {1: [1], 3: [2, 1], 6: [3, 3]}
    runs = []
    try:
        for approach in ("seacucumber", "celery rate_limit"):
            for processes, groups in splits.items():
                emulator.client.reset()
                queue = f"bench-{uuid.uuid4().hex[:8]}"
                env = {"CELERY_BROKER_URL": f"{redis.url}/0",
                       "SEACUCUMBER_ENDPOINT_URL": emulator.url,
                       "SEACUCUMBER_REDIS_URL": f"{redis.url}/1",
                       "SEACUCUMBER_REDIS_PREFIX": queue,
                       "SEACUCUMBER_QUEUE": queue}
                if approach == "celery rate_limit":  # 1.x: rate_limit = the account rate
                    env.update(SEACUCUMBER_SHARED_RATE="0",
                               BENCH_CELERY_RATE_LIMIT=f"{account_rate:g}/s")
                point_app(f"{redis.url}/0", queue)
                count = int(account_rate * seconds / 2)  # 2 recipients a message on average
                from django.core.mail import get_connection

                get_connection().send_messages(mixed_messages(count))  # queued before start
                workers = [start_group(f"group-{'ab'[i]}", env, queue, "prefork", size)
                           for i, size in enumerate(groups)]
                try:
                    done = wait_accepted(emulator.client, count, timeout=seconds * 3 + 30)
                finally:
                    for worker in workers:
                        worker.stop()
                stats = emulator.client.stats()
                accepted = [(m.time, len(m.destinations), m.app)
                            for m in emulator.client.messages()]
                runs.append(summarise_shared(approach, processes, groups, account_rate,
                                             accepted, stats, done, count))
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "series"}),
                      flush=True)
    finally:
        emulator.stop()
    return runs


def summarise_shared(approach, processes, groups, account_rate, accepted, stats, done,
                     count) -> dict:
    accepted.sort()
    total = sum(n for _, n, _ in accepted)
    t0 = accepted[0][0]
    # steady window: after the first second (the burst a full bucket allows), until 95% of
    # the recipients went out (the tail, with retries trickling in, is not steady)
    cumulative, end = 0, accepted[-1][0]
    for t, n, _ in accepted:
        cumulative += n
        if cumulative >= 0.95 * total:
            end = t
            break
    window = [(t, n) for t, n, _ in accepted if t0 + 1 <= t <= end]
    steady = sum(n for _, n in window) / max(end - t0 - 1, 1e-9)
    series: dict[str, list[int]] = {}
    for t, n, app in accepted:  # recipients per 0.5 s bin, per group
        slot = int((t - t0) / 0.5)
        row = series.setdefault(app or "?", [])
        row.extend([0] * (slot + 1 - len(row)))
        row[slot] += n
    return {"approach": approach, "processes": processes, "groups": groups,
            "steady_rate": round(steady, 2), "ratio": round(steady / account_rate, 3),
            "throttles": stats["throttled"], "messages": count,
            "accepted": stats["accepted"], "all_sent": done,
            "seconds": round(accepted[-1][0] - t0, 1), "series": series}


def plot_shared(runs: list[dict], account_rate: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    approaches = ["seacucumber", "celery rate_limit"]
    sizes = sorted({r["processes"] for r in runs})
    figure, axes = plt.subplots(len(sizes), 2, figsize=(11, 2.6 * len(sizes)), sharey=True,
                                squeeze=False)
    for row, size in enumerate(sizes):
        for col, approach in enumerate(approaches):
            ax = axes[row][col]
            run = next(r for r in runs if r["processes"] == size and r["approach"] == approach)
            length = max(len(s) for s in run["series"].values())
            total = [0.0] * length
            for group, counts in sorted(run["series"].items()):
                rates = [2 * c for c in counts]  # per 0.5 s bin -> per second
                ax.plot([i * 0.5 for i in range(len(rates))], rates, label=group, lw=1)
                for i, value in enumerate(rates):
                    total[i] += value
            ax.plot([i * 0.5 for i in range(length)], total, label="all", color="black", lw=1.5)
            ax.axhline(account_rate, color="red", ls="--", lw=1, label="account rate")
            ax.set_title(f"{approach}: {size} process(es), groups {run['groups']}, "
                         f"{run['throttles']} throttles", fontsize=9)
            ax.set_xlabel("seconds")
            ax.set_ylabel("recipients/s")
            ax.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


# --- 2. caller cost ----------------------------------------------------------------------------

def run_caller(redis: RedisServer, messages: int, sync_sends: int) -> dict:
    from django.core.mail import get_connection

    from benchmarks.rate_app import bare_send, bare_ses_client

    emulator = Emulator(rate=0, latency=0.05, daily_quota=-1)
    try:
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        point_app(f"{redis.url}/0", queue)
        from seacucumber.payload import build_sends
        from seacucumber.tasks import send_email

        connection = get_connection()
        batch = mixed_messages(messages)
        connection.send_messages(batch[:20])  # warm up: broker connection, imports
        ours, no_outbox, building, floor = [], [], [], []
        for message in batch:  # interleaved, so load on the machine hits all four alike
            started = time.perf_counter()
            connection.send_messages([message])
            ours.append(time.perf_counter() - started)
            assign(SEACUCUMBER_OUTBOX=False)  # what recording each send costs
            # a call first, untimed: settings are read again after a change, then kept
            connection.send_messages([message])
            started = time.perf_counter()
            connection.send_messages([message])
            no_outbox.append(time.perf_counter() - started)
            assign(SEACUCUMBER_OUTBOX=UNSET)
            connection.send_messages([message])  # read again, untimed, as above
            started = time.perf_counter()
            build_sends(message)
            building.append(time.perf_counter() - started)
            started = time.perf_counter()
            send_email.apply_async(args=[{}], queue=queue + "-floor", serializer="json")
            floor.append(time.perf_counter() - started)
        in_batches = []
        for start in range(0, messages, 100):
            chunk = batch[start:start + 100]
            started = time.perf_counter()
            connection.send_messages(chunk)
            in_batches.append((time.perf_counter() - started) / len(chunk))
        # one call of 1,000 messages beside 1,000 of Celery's apply_async, interleaved rounds
        thousand, floor_rounds = [], []
        for _ in range(5):
            chunk = mixed_messages(messages, recipients_at_odd=1)
            started = time.perf_counter()
            connection.send_messages(chunk)
            thousand.append((time.perf_counter() - started) / len(chunk))
            started = time.perf_counter()
            for _ in range(messages):
                send_email.apply_async(args=[{}], queue=queue + "-floor", serializer="json")
            floor_rounds.append((time.perf_counter() - started) / messages)
        client = bare_ses_client(emulator.url)
        bare_send(client, RAW)
        sync = []
        for _ in range(sync_sends):
            started = time.perf_counter()
            bare_send(client, RAW)
            sync.append(time.perf_counter() - started)
    finally:
        emulator.stop()

    def describe(samples: list[float]) -> dict:
        ordered = sorted(samples)
        return {"median_ms": round(1000 * statistics.median(ordered), 3),
                "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 3),
                "n": len(ordered)}

    return {"send_messages": describe(ours), "send_messages_outbox_off": describe(no_outbox),
            "build_sends_only": describe(building),
            "celery_apply_async_empty_payload": describe(floor),
            "send_messages_100_per_call_per_message": describe(in_batches),
            "send_messages_1000_per_call_per_message": describe(thousand),
            "celery_apply_async_1000_rounds_per_message": describe(floor_rounds),
            "ratio_1000_per_call_to_apply_async": round(
                statistics.median(thousand) / statistics.median(floor_rounds), 3),
            "boto3_sync_50ms": describe(sync)}


# --- 3. worker capacity ------------------------------------------------------------------------

def run_capacity(redis: RedisServer, messages: int, concurrency: int, pool: str,
                 rounds: int = 3) -> dict:
    """``rounds`` rounds, each a worker draining ``messages`` (outbox on), then the same
    worker draining as many tasks that make only the bare boto3 call (Celery's own floor:
    ``benchmarks.floor_send``), then the bare pool sending as many: each round's ratios are
    taken within a minute, the median round's are reported (a 2-core shared machine drifts
    by more than the differences measured). One worker run with the outbox off after."""
    from django.core.mail import get_connection

    from benchmarks.rate_app import app, bare_send, bare_ses_client, floor_send

    emulator = Emulator(rate=0, latency=0.05, daily_quota=-1)

    def drained_rate() -> float:
        times = sorted(m.time for m in emulator.client.messages())
        emulator.client.reset()
        return (len(times) - 1) / (times[-1] - times[0])

    try:
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        point_app(f"{redis.url}/0", queue)

        def drain(overrides: dict) -> tuple[float, dict]:
            """A worker on this host's settings (``overrides`` over them) drains the queue:
            the drain's rate, and the worker's CPU per message (``window_cpu``)."""
            env = {"CELERY_BROKER_URL": f"{redis.url}/0",
                   "SEACUCUMBER_ENDPOINT_URL": emulator.url,
                   "SEACUCUMBER_REDIS_URL": f"{redis.url}/1", "SEACUCUMBER_REDIS_PREFIX": queue,
                   "SEACUCUMBER_RATE_LIMIT": "1000000", "SEACUCUMBER_QUEUE": queue,
                   "CELERY_WORKER_PREFETCH_MULTIPLIER": "4", **overrides}
            worker = start_group("host", env, queue, pool, concurrency)
            try:
                cpu = window_cpu(worker.process.pid, emulator.client, messages)
                wait_accepted(emulator.client, messages, timeout=600)
            finally:
                worker.stop()
            return drained_rate(), cpu

        def worker_rate(outbox: bool) -> tuple[float, dict]:
            assign(SEACUCUMBER_OUTBOX=outbox)
            get_connection().send_messages(mixed_messages(messages, recipients_at_odd=1))
            return drain({"SEACUCUMBER_OUTBOX": "1" if outbox else "0"})

        def floor_rate() -> tuple[float, dict]:
            with app.producer_or_acquire() as producer:
                for _ in range(messages):
                    floor_send.apply_async(args=[RAW.decode()], queue=queue, producer=producer)
            return drain({"BENCH_FLOOR": "1"})

        def bare_rate() -> float:
            def bare(count: int) -> None:
                client = bare_ses_client(emulator.url)
                for _ in range(count):
                    bare_send(client, RAW)

            share = messages // concurrency
            with ThreadPoolExecutor(concurrency) as executor:
                list(executor.map(bare, [share] * concurrency))
            return drained_rate()

        rounds_run = [(worker_rate(outbox=True), floor_rate(), bare_rate())
                      for _ in range(rounds)]
        outbox_off, _ = worker_rate(outbox=False)  # the outbox's cost in the worker, beside
        assign(SEACUCUMBER_OUTBOX=UNSET)
    finally:
        emulator.stop()
    runs = [(worker, floor, bare) for (worker, _), (floor, _), bare in rounds_run]
    ratios = [worker / bare for worker, _, bare in runs]
    floor_ratios = [floor / bare for _, floor, bare in runs]
    bare_median = statistics.median(bare for *_, bare in runs)

    def cpu_median(which: int) -> dict:
        return {part: round(statistics.median(run[which][1][part] for run in rounds_run), 3)
                for part in ("main", "pool")}

    return {"pool": pool, "concurrency": concurrency, "messages": messages,
            "worker_msgs_per_s": round(statistics.median(w for w, *_ in runs), 1),
            "bare_pool_msgs_per_s": round(bare_median, 1),
            "ratio": round(statistics.median(ratios), 3),
            "ratios": [round(ratio, 3) for ratio in ratios],
            "celery_floor_msgs_per_s": round(statistics.median(f for _, f, _ in runs), 1),
            "celery_floor_ratio": round(statistics.median(floor_ratios), 3),
            "celery_floor_ratios": [round(ratio, 3) for ratio in floor_ratios],
            "worker_to_floor": round(statistics.median(
                worker / floor for worker, floor, _ in runs), 3),
            "worker_cpu_ms_per_msg": cpu_median(0),
            "celery_floor_cpu_ms_per_msg": cpu_median(1),
            "worker_outbox_off_msgs_per_s": round(outbox_off, 1),
            "ratio_outbox_off": round(outbox_off / bare_median, 3)}


# --- 5. worker CPU per send ----------------------------------------------------------------------

def body_text(kb: float) -> str:
    """A message body of ``kb`` kilobytes of text in lines of 76 characters (``Body`` for 0),
    so the cpu step can be run at the size of real mail as well as the smallest."""
    if not kb:
        return "Body"
    line = "Sea Cucumber sends mail through Amazon SES from Celery workers, at one rate.\n"
    return (line * (int(kb * 1024) // len(line) + 1))[:int(kb * 1024)]


def run_cpu(redis: RedisServer, sends: int, body_kb: float = 0.0) -> dict:
    """CPU time (``time.process_time``) of the send task run in this process, settings held
    as a worker holds them: the task itself (the payload, the attempt's two Redis round
    trips, boto3, the signals; its success handler then has nothing left to do), and
    every other send through Celery's eager ``apply`` (its tracer built for each call) beside
    a bare boto3 ``send_raw_email`` of the same message, interleaved; SES is the emulator in
    a process of its own, answering at once, so its CPU is not counted. ``body_kb``: the
    message's body (``body_text``)."""
    from django.core.mail import EmailMessage

    from benchmarks.rate_app import bare_ses_client
    from seacucumber.conf import conf
    from seacucumber.payload import build_sends
    from seacucumber.shared import outbox
    from seacucumber.tasks import send_email

    emulator = Emulator(rate=0, daily_quota=-1)
    try:
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        point_app(f"{redis.url}/0", queue)
        assign(SEACUCUMBER_ENDPOINT_URL=emulator.url, SEACUCUMBER_OUTBOX=True,
               SEACUCUMBER_RATE_LIMIT=1000000)
        client = bare_ses_client(emulator.url)
        payloads = []
        for n in range(sends + 20):
            [send] = build_sends(EmailMessage("Bench", body_text(body_kb), "bench@example.com",
                                              [f"to{n}@example.com"]))
            payloads.append(send.to_json())
            outbox.record([payloads[-1]], queue, queue, 5.0)
        conf.freeze()  # as a worker does at start (worker_init)
        task_cpu, traced_cpu, bare_cpu = [], [], []
        for n, payload in enumerate(payloads):
            started = time.process_time()
            if n % 2:  # Celery's eager tracer, built for each call (a worker builds it once)
                result = send_email.apply(args=[payload], task_id=payload["id"])
                assert result.successful(), result.traceback
            else:  # the task itself (its success handler has nothing left to do for a sent
                send_email(payload)  # send: attempt.settle did it, inside the task)
            spent = time.process_time() - started
            raw = base64.b64decode(payload["raw"])
            began = time.process_time()
            client.send_raw_email(Source="bench@example.com", Destinations=payload["to"],
                                  RawMessage={"Data": raw})
            bare = time.process_time() - began
            if n >= 20:  # the first ones warm up: clients, scripts, imports
                (traced_cpu if n % 2 else task_cpu).append(spent)
                bare_cpu.append(bare)
    finally:
        emulator.stop()
    task_ms, bare_ms = statistics.mean(task_cpu) * 1000, statistics.mean(bare_cpu) * 1000
    traced_ms = statistics.mean(traced_cpu) * 1000
    return {"sends": sends, "body_kb": body_kb, "task_cpu_ms_per_send": round(task_ms, 3),
            "task_with_eager_tracer_cpu_ms_per_send": round(traced_ms, 3),
            "bare_boto3_cpu_ms_per_send": round(bare_ms, 3),
            "ratio": round(task_ms / bare_ms, 3),
            "ratio_with_eager_tracer": round(traced_ms / bare_ms, 3)}


# --- 4. time to full rate ----------------------------------------------------------------------

def run_startup(redis: RedisServer, account_rate: float) -> dict:
    from django.core.mail import get_connection

    emulator = Emulator(rate=account_rate, latency=0.05, daily_quota=-1)
    try:
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        point_app(f"{redis.url}/0", queue)
        get_connection().send_messages(mixed_messages(int(account_rate * 6), 1))
        env = {"CELERY_BROKER_URL": f"{redis.url}/0", "SEACUCUMBER_ENDPOINT_URL": emulator.url,
               "SEACUCUMBER_REDIS_URL": f"{redis.url}/1", "SEACUCUMBER_REDIS_PREFIX": queue,
               "SEACUCUMBER_QUEUE": queue}  # no SEACUCUMBER_RATE_LIMIT: learned from SES
        launched = time.time()
        worker = start_group("host", env, queue, "threads", 8)
        ready = time.time()
        try:
            wait_accepted(emulator.client, int(account_rate * 4), timeout=60)
        finally:
            worker.stop()
        times = sorted(m.time for m in emulator.client.messages())
        target = 0.9 * account_rate * 0.98
        full = next(t for t in times if sum(1 for u in times if t - 1 < u <= t) >= target)
        quota_calls = emulator.client.stats()["quota_calls"]
    finally:
        emulator.stop()
    return {"account_rate": account_rate, "first_send_after_ready_s": round(times[0] - ready, 3),
            "full_rate_after_ready_s": round(full - ready, 3),
            "full_rate_after_launch_s": round(full - launched, 3),
            "worker_boot_s": round(ready - launched, 3), "quota_calls": quota_calls}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", nargs="*", default=["all"],
                        choices=["all", "shared", "caller", "capacity", "startup", "cpu"])
    parser.add_argument("--rate", type=float, default=30.0, help="account rate, recipients/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of a shared run")
    parser.add_argument("--rounds", type=int, default=3, help="capacity rounds per setting")
    parser.add_argument("--body-kb", type=float, default=0.0,
                        help="cpu: the message body's size in KB of text (0: 'Body')")
    args = parser.parse_args()
    which = ({"shared", "caller", "capacity", "startup", "cpu"} if "all" in args.which
             else set(args.which))
    import benchmarks.rate_app  # noqa: F401 - configures Django and the Celery app

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = machine()
    results["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    redis = RedisServer().start()
    try:
        if "caller" in which:
            results["caller"] = run_caller(redis, 1000, 200)
            print(json.dumps(results["caller"]), flush=True)
        if "capacity" in which:
            results["capacity"] = [run_capacity(redis, 3000, concurrency, pool, args.rounds)
                                   for concurrency in (8, 16)
                                   for pool in ("threads", "prefork")]
            print(json.dumps(results["capacity"]), flush=True)
        if "startup" in which:
            results["startup"] = run_startup(redis, args.rate)
            print(json.dumps(results["startup"]), flush=True)
        if "shared" in which:
            runs = run_shared(redis, args.rate, args.seconds)
            plot_shared(runs, args.rate, ROOT / "benchmarks" / "rate_groups.png")
            results["shared"] = [{k: v for k, v in r.items() if k != "series"} for r in runs]
        if "cpu" in which:  # last: it holds the settings for the rest of the process
            key = f"cpu_body_{args.body_kb:g}kb" if args.body_kb else "cpu"
            results[key] = run_cpu(redis, 1000, args.body_kb)
            print(json.dumps(results[key]), flush=True)
    finally:
        redis.stop()
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
