"""`python -m demo`: send real mail through the whole pipeline, on embedded defaults.

Django's ``send_mass_mail`` -> Sea Cucumber's backend -> a broker -> a real ``celery worker``
process -> an SES endpoint on loopback. The broker is Redis when ``REDIS_URL`` is set or a
``redis-server`` binary is found (a private one on a free port), else kombu's filesystem
transport, which needs no server at all (``SEACUCUMBER_DEMO_BROKER=filesystem`` forces it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

MESSAGES = int(os.environ.get("SEACUCUMBER_DEMO_MESSAGES", "12"))
SENDER = "demo@example.com"


def choose_broker(stack: ExitStack, state: Path) -> tuple[str, dict, str]:
    """(broker URL, transport options, description) for the demo's broker."""
    from seacucumber.testing.processes import RedisServer

    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], {}, f"Redis at {os.environ['REDIS_URL']}"
    if RedisServer.available() and os.environ.get("SEACUCUMBER_DEMO_BROKER") != "filesystem":
        server = RedisServer().start()
        stack.callback(server.stop)
        return f"{server.url}/0", {}, f"a private redis-server on port {server.port}"
    folder = state / "broker"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "processed").mkdir(parents=True)
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
    }
    return "filesystem://", options, f"kombu's filesystem transport in {folder}"


def start_ses(stack: ExitStack):
    """moto's SES server in this process, with the demo sender verified."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from seacucumber.testing.processes import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stack.callback(server.stop)
    url = f"http://127.0.0.1:{port}"
    boto3.client("ses", endpoint_url=url, region_name="us-east-1").verify_email_identity(
        EmailAddress=SENDER
    )
    return url


def sent_messages() -> list:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def main() -> int:
    state = Path(os.environ.get("SEACUCUMBER_DEMO_DIR", ".demo")).resolve()
    state.mkdir(exist_ok=True)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with ExitStack() as stack:
        broker_url, transport_options, broker_text = choose_broker(stack, state)
        ses_url = start_ses(stack)
        env = {
            "DJANGO_SETTINGS_MODULE": "demo.settings",
            "SEACUCUMBER_DEMO_DIR": str(state),
            "CELERY_BROKER_URL": broker_url,
            "SEACUCUMBER_DEMO_TRANSPORT_OPTIONS": json.dumps(transport_options),
            "SEACUCUMBER_ENDPOINT_URL": ses_url,
        }
        os.environ.update(env)
        print(f"broker:  {broker_text}")
        print(f"SES:     moto's SES server at {ses_url}")

        import django

        django.setup()
        from django.core.mail import send_mass_mail

        from demo.celery_app import app  # noqa: F401 - the app the backend enqueues with
        from seacucumber.testing.processes import Worker

        worker = Worker(app="demo.celery_app", env=env, queues="mail", concurrency=4)
        worker.log_path = state / "worker.log"
        worker.log_path.write_bytes(b"")
        worker.start()
        stack.callback(worker.stop)
        print(f"worker:  celery worker, 4 threads, queue 'mail' (log: {worker.log_path})")

        started = time.monotonic()
        datatuple = [
            (f"Demo message {i} ✉", f"Hello number {i}, from Sea Cucumber.", SENDER,
             [f"reader{i}@example.com"])
            for i in range(1, MESSAGES + 1)
        ]
        queued = send_mass_mail(datatuple)
        print(f"queued:  {queued} messages in {(time.monotonic() - started) * 1000:.1f} ms\n")

        deadline = time.monotonic() + 60
        while len(sent_messages()) < queued:
            if time.monotonic() > deadline:
                print(f"only {len(sent_messages())} of {queued} reached SES; see the worker log")
                return 1
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        print(f"{'recipient':<26} SES Message ID")
        for message in sorted(sent_messages(), key=lambda m: m.destinations[0]):
            print(f"{message.destinations[0]:<26} {message.id}")
        print(f"\n{queued} messages sent through SES in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
