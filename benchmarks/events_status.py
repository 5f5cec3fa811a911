"""What status tracking costs ``send_messages``: the ``queued`` INSERT, side by side.

Enqueues to a private redis-server (no worker: only the send path is timed) with
SEACUCUMBER_TRACK_STATUS off and on, against a sqlite file and (when reachable) PostgreSQL at
127.0.0.1:5432 (user postgres, a throwaway database). Two shapes, interleaved off/on so drift
hits both alike:

- single: 1,000 calls of ``send_messages([message])``, median time per call (each call
  commits its own INSERT: autocommit);
- in_txn: the same 1,000 calls inside one ``transaction.atomic()`` (a request or job that
  sends inside a transaction: no commit per call);
- batch: ``send_messages`` of 1,000 messages at once, time per message (median of 5 runs).

Run: ``.venv/bin/python benchmarks/events_status.py [--messages 1000] [--no-postgres]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def configure(database: dict, broker: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "seacucumber"],
        DATABASES={"default": database},
        EMAIL_BACKEND="seacucumber.backend.SESBackend",
        DEFAULT_FROM_EMAIL="sender@example.com",
        USE_TZ=True,
        SEACUCUMBER_QUEUE="bench-events",
        LOGGING_CONFIG=None,
    )
    django.setup()
    from celery import Celery

    app = Celery("bench", broker=broker, set_as_current=True)
    app.conf.update(task_serializer="json", accept_content=["json"])
    app.set_default()


def measure(count: int) -> dict[str, float]:
    from django.conf import settings
    from django.core import mail
    from django.core.mail import EmailMessage
    from django.core.signals import setting_changed
    from django.db import transaction

    from seacucumber.models import MessageStatus

    connection = mail.get_connection()

    def track(on: bool) -> None:
        """``SEACUCUMBER_TRACK_STATUS`` from the next call on: with Django's
        ``setting_changed``, which ``send_messages``' kept settings wait for
        (``seacucumber/conf.py``); each call after it reads its settings again, as every
        call did before settings were kept."""
        settings.SEACUCUMBER_TRACK_STATUS = on
        setting_changed.send(sender=None, setting="SEACUCUMBER_TRACK_STATUS", value=on,
                             enter=True)

    def message(n: int) -> EmailMessage:
        return EmailMessage(f"Subject {n}", "Body " * 40, "sender@example.com",
                            [f"to{n}@example.com"], cc=[f"cc{n}@example.com"])

    for tracking in (False, True):  # warm up: connections, statements
        track(tracking)
        connection.send_messages([message(0) for _ in range(20)])

    def one_per_call() -> dict[bool, list[float]]:
        times: dict[bool, list[float]] = {False: [], True: []}
        for n in range(count):
            for tracking in ((False, True) if n % 2 else (True, False)):
                track(tracking)
                batch = [message(n)]
                started = time.perf_counter()
                connection.send_messages(batch)
                times[tracking].append(time.perf_counter() - started)
        return times

    single = one_per_call()
    with transaction.atomic():  # the same, all in one transaction: no commit per call
        in_txn = one_per_call()
    bulk: dict[bool, list[float]] = {False: [], True: []}
    for run in range(5):
        for tracking in ((False, True) if run % 2 else (True, False)):
            track(tracking)
            batch = [message(n) for n in range(count)]
            started = time.perf_counter()
            connection.send_messages(batch)
            bulk[tracking].append((time.perf_counter() - started) / count)
    rows = MessageStatus.objects.count()
    expected = 20 + 2 * count + 5 * count
    assert rows == expected, f"{rows} status records, expected {expected}"
    return {
        "single_off": statistics.median(single[False]) * 1e6,
        "single_on": statistics.median(single[True]) * 1e6,
        "in_txn_off": statistics.median(in_txn[False]) * 1e6,
        "in_txn_on": statistics.median(in_txn[True]) * 1e6,
        "batch_off": statistics.median(bulk[False]) * 1e6,
        "batch_on": statistics.median(bulk[True]) * 1e6,
    }


def child(kind: str, broker: str, count: int) -> None:
    """One database per process (Django settings are configured once per process)."""
    if kind == "sqlite":
        path = os.path.join(tempfile.mkdtemp(prefix="sc-bench-"), "db.sqlite3")
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": path,
                    "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL"}}
    else:
        database = {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1",
                    "PORT": 5432, "USER": "postgres", "NAME": os.environ["SC_BENCH_PG_DB"]}
    configure(database, broker)
    from django.core.management import call_command

    try:
        call_command("migrate", verbosity=0)
        result = measure(count)
    finally:
        if kind == "sqlite":
            shutil.rmtree(os.path.dirname(database["NAME"]), ignore_errors=True)
    print(kind, " ".join(f"{k}={v:.1f}" for k, v in result.items()))


def postgres_database() -> str | None:
    try:
        import psycopg

        name = f"sc_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                             autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name
    except Exception as exc:
        print(f"PostgreSQL not used: {exc}", file=sys.stderr)
        return None


def drop_postgres(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main() -> None:
    import subprocess

    from seacucumber.testing.processes import RedisServer

    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--broker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.broker, args.messages)
        return
    redis = RedisServer().start()
    pg = None if args.no_postgres else postgres_database()
    try:
        print(f"send_messages, {args.messages} messages (2 recipients each), Redis broker "
              f"{redis.url}; microseconds per message, median")
        print(f"{'database':10} {'shape':7} {'tracking off':>13} {'tracking on':>12} "
              f"{'cost':>8}")
        for kind in ["sqlite"] + (["postgres"] if pg else []):
            env = {**os.environ, "SC_BENCH_PG_DB": pg or ""}
            out = subprocess.run(  # one process per database: Django configures once
                [sys.executable, __file__, "--child", kind, "--broker", f"{redis.url}/3",
                 "--messages", str(args.messages)],
                env=env, check=True, capture_output=True, text=True,
            ).stdout.split()
            values = dict(item.split("=") for item in out[1:])
            for shape in ("single", "in_txn", "batch"):
                off, on = float(values[f"{shape}_off"]), float(values[f"{shape}_on"])
                print(f"{kind:10} {shape:7} {off:13.1f} {on:12.1f} {on - off:+8.1f}")
    finally:
        if pg:
            drop_postgres(pg)
        redis.stop()


if __name__ == "__main__":
    main()
