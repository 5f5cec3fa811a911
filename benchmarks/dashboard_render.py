"""How long the admin dashboard takes to render over 1,000,000 status records (PostgreSQL).

Creates a database of its own (``seacucumber_dashboard_bench``, dropped afterwards) on
the PostgreSQL at ``--dsn`` (trust auth), migrates it, fills it with ``generate_series``
(1,000,000 ``MessageStatus`` rows spread over 30 days, about 67,000 of them in the last 48
hours, outcomes in a realistic mix; 90 stored days of statistics; 20,000 suppressed
addresses), VACUUM ANALYZEs it, then renders ``/admin/seacucumber/dashboard/`` as a logged-in
staff user through Django's test client: warm-up runs, then timed runs. SES is the project's
emulator in this process, the shared state a private ``redis-server`` (also the broker whose
queue depth the page shows), as in production. Also times the timeline page's lookup by
address (each address has 5 sends), through the recipients table's index.

    .venv/bin/python benchmarks/dashboard_render.py --runs 20
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "seacucumber_dashboard_bench"


def create_database(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
        connection.execute(f"CREATE DATABASE {DB_NAME}")


def drop_database(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")


FILL = """
INSERT INTO seacucumber_messagestatus
  (message_id, ses_message_id, sender, recipients, subject, lane, status, queued_at, sent_at,
   updated_at, last_error, suppressed_recipients)
SELECT
  md5(n::text),
  CASE WHEN r.x < 0.95 THEN '0100' || md5('ses' || n::text) END,
  'noreply@example.com',
  'user' || mod(n, 200000) || '@example.org',
  'Your order ' || n,
  CASE WHEN mod(n, 4) = 0 THEN 'bulk' ELSE 'transactional' END,
  CASE WHEN r.x < 0.88 THEN 'delivered' WHEN r.x < 0.92 THEN 'sent'
       WHEN r.x < 0.94 THEN 'bounced' WHEN r.x < 0.941 THEN 'complained'
       WHEN r.x < 0.97 THEN 'failed' WHEN r.x < 0.98 THEN 'suppressed' ELSE 'queued' END,
  now() - (n::float / %(rows)s) * interval '30 days',
  now() - (n::float / %(rows)s) * interval '30 days' + interval '2 seconds',
  now() - (n::float / %(rows)s) * interval '30 days' + interval '5 seconds',
  CASE WHEN r.x >= 0.941 AND r.x < 0.97 THEN 'MessageRejected: Email address is not verified.'
       ELSE '' END,
  ''
FROM generate_series(1, %(rows)s) AS n, LATERAL (SELECT random() + n * 0 AS x) AS r
"""


#: one recipient row per record, as ``status.record_queued`` writes them (lower-cased)
RECIPIENTS = """
INSERT INTO seacucumber_sendrecipient (message_id, address)
SELECT message_id, lower(recipients) FROM seacucumber_messagestatus
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    from seacucumber.testing.emulator import SESEmulator
    from seacucumber.testing.processes import RedisServer

    redis_server = RedisServer().start()
    emulator = SESEmulator(rate=14, daily_quota=50_000).start()
    create_database(args.dsn)
    os.environ.update(DJANGO_SETTINGS_MODULE="tests.settings",
                      CELERY_BROKER_URL=f"{redis_server.url}/0",
                      SEACUCUMBER_ENDPOINT_URL=emulator.url,
                      AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")  # noqa: S105
    import django
    from django.conf import settings

    host = args.dsn.split("@", 1)[1].split("/", 1)[0]
    settings.DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql", "NAME": DB_NAME, "USER": "postgres",
        "HOST": host.split(":")[0], "PORT": host.split(":")[1] if ":" in host else "5432"}}
    settings.SEACUCUMBER_TRACK_STATUS = True
    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    from tests.proj.celery import app

    app.conf.broker_url = f"{redis_server.url}/0"
    app.set_current()
    setup_test_environment()
    settings.ALLOWED_HOSTS = ["testserver"]
    try:
        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(FILL, {"rows": args.rows})
            cursor.execute(RECIPIENTS)
            cursor.execute("""
                INSERT INTO seacucumber_dailystatistics
                  (date, delivery_attempts, bounces, complaints, rejects, updated_at)
                SELECT current_date - d, 30000 + d * 100, 300 + mod(d, 7) * 90, 3 + mod(d, 5), 0,
                       now()
                FROM generate_series(0, 89) AS d""")
            cursor.execute("""
                INSERT INTO seacucumber_suppressedaddress (address, reason, detail, created_at)
                SELECT 'gone' || n || '@example.org', 'bounce', '', now()
                FROM generate_series(1, 20000) AS n""")
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        filled = time.perf_counter() - started
        # the view permissions the pages need (dashboard.admin.VIEW_PERMISSIONS): a superuser
        User.objects.create_superuser("bench", password="bench")  # noqa: S106
        client = Client()
        client.force_login(User.objects.get(username="bench"))
        for _ in range(3):  # warm-up: templates compiled, SES quota cached, connections open
            response = client.get("/admin/seacucumber/dashboard/")
            assert response.status_code == 200, response.status_code
        assert b'class="sc-bar ' in response.content
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            response = client.get("/admin/seacucumber/dashboard/")
            times.append(1000 * (time.perf_counter() - started))
            assert response.status_code == 200
        lookups = []
        for n in range(args.runs):  # a different address each time: no cached page
            started = time.perf_counter()
            page = client.get("/admin/seacucumber/dashboard/timeline/",
                              {"q": f"user{4242 + 97 * n}@example.org"})
            lookups.append(1000 * (time.perf_counter() - started))
            assert page.status_code == 200 and page.content.count(b"sc-step-queued") == 5
        lookups.sort()
        times.sort()
        print(f"rows: {args.rows:,} (filled and analysed in {filled:.1f} s)")
        print(f"dashboard render over {args.runs} runs: median {statistics.median(times):.0f} ms,"
              f" p95 {times[int(0.95 * (len(times) - 1))]:.0f} ms, max {times[-1]:.0f} ms")
        print(f"timeline lookup by address (recipients table's index), {args.runs} runs: "
              f"median {statistics.median(lookups):.0f} ms, "
              f"p95 {lookups[int(0.95 * (len(lookups) - 1))]:.0f} ms, max {lookups[-1]:.0f} ms")
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
              f"{platform.python_version()}, PostgreSQL {connection.pg_version}")
    finally:
        connection.close()
        emulator.stop()
        redis_server.stop()
        drop_database(args.dsn)


if __name__ == "__main__":
    main()
