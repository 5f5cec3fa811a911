"""What a large queued message costs in Redis, without and with the claim check (README,
"Large messages: the claim check").

    .venv/bin/python benchmarks/claim_check.py [--mib 10]

Starts a private ``redis-server`` as the Celery broker and the shared state (the outbox on,
as it is by default with a Redis broker), builds one message of ``--mib`` MiB (a text body
and a base64 attachment of random bytes), and queues it with ``send_messages`` with no
worker running, twice: with the claim check off, then on (the Redis store). After each it
reads ``MEMORY USAGE`` of the broker's queue, the outbox's record (the field of its hash)
and, with the claim check, the stored message, and ``used_memory``'s growth; each as MiB
and as a multiple of the raw message's size.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=float, default=10.0)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.mail import EmailMessage, get_connection
    from django.core.signals import setting_changed

    from seacucumber import clients
    from seacucumber.payload import build_sends
    from seacucumber.shared import outbox, store
    from seacucumber.testing.processes import RedisServer
    from tests.conftest import point_app_at

    message = EmailMessage("Large", "The file is attached.\n", "sender@example.com",
                           ["reader@example.com"])
    # base64 grows bytes by 4/3, plus a line break every 76 characters
    message.attach("data.bin", os.urandom(int(args.mib * MIB * 3 / 4 * 76 / 77)),
                   "application/octet-stream")
    settings.USE_SES_V2 = True  # 40 MB: a 10 MiB message is over v1's limit
    settings.DEFAULT_FROM_EMAIL = "sender@example.com"
    size = len(build_sends(message)[0].raw)
    print(f"message: {size / MIB:.2f} MiB raw; {platform.node()}, Python "
          f"{platform.python_version()}; KiB and multiples of the raw message")
    print(f"{'claim check':<12} {'queue':>15} {'outbox':>15} {'queue+outbox':>15} "
          f"{'stored':>15} {'all keys':>15} {'used_memory':>15}")
    for mode in ("off", "redis"):
        server = RedisServer().start()  # a fresh one: used_memory starts clean
        try:
            settings.SEACUCUMBER_REDIS_URL = None  # the shared state is the broker's Redis
            settings.SEACUCUMBER_QUEUE = "mail"
            settings.SEACUCUMBER_OUTBOX = True
            settings.SEACUCUMBER_CLAIM_CHECK_STORE = mode
            # send_messages keeps the settings it read till told (seacucumber/conf.py)
            setting_changed.send(sender=None, setting="SEACUCUMBER_CLAIM_CHECK_STORE",
                                 value=mode, enter=True)
            point_app_at(f"{server.url}/0", None)
            clients.clear()
            client = store.redis_client()
            before = client.info("memory")["used_memory"]
            assert get_connection().send_messages([message]) == 1
            grown = client.info("memory")["used_memory"] - before
            queue = client.memory_usage("mail") or 0
            [task_id] = client.hkeys(outbox.key_names()["task"])
            record = len(client.hget(outbox.key_names()["task"], task_id) or b"")
            stored = client.memory_usage(store.key("claim", task_id.decode())) or 0
            total = sum(client.memory_usage(k) or 0 for k in client.scan_iter("*"))
        finally:
            point_app_at("memory://", None)
            server.stop()

        def cell(value: int) -> str:
            return f"{value / 1024:>9.1f} {value / size:>4.2f}x"

        print(f"{mode:<12} {cell(queue)} {cell(record)} {cell(queue + record)} "
              f"{cell(stored)} {cell(total)} {cell(grown)}")


if __name__ == "__main__":
    main()
