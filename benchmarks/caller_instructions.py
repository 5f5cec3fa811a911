"""The caller's own work, counted in instructions: one-message ``send_messages`` calls or
Celery's ``apply_async`` of an empty task, under callgrind, which counts the same on a loaded
machine (Redis's work and the round trip's wait are not counted). Per call: a run with N
calls less a run with none, divided by N (BENCHMARKS.md, issue 27's second round)::

    redis-server --port 16399 --save '' --daemonize yes
    valgrind --tool=callgrind .venv/bin/python benchmarks/caller_instructions.py send 200 redis://127.0.0.1:16399
    # and: send 0, apply 200

Runs of the same code at 200 calls differ by up to 35,000 instructions a call (hash
seeds, the collector's timing); ``PYTHONHASHSEED=0`` and 1,000 calls bring that to a few
thousand (issue 27's fourth round).

It is ``rate_bench.py caller``'s loop alone: the same app, messages and Redis layout.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WARM_UP = 40


def pointed() -> tuple[str, int, str]:
    """The command line's mode and count, with this process pointed at its Redis (db 0 the
    broker, db 1 the shared state) and a queue of its own, as ``rate_bench`` points its
    own: (mode, count, queue). ``worker_instructions.py`` starts so too."""
    mode, count, redis_url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sys.argv = sys.argv[:1]
    from benchmarks import rate_bench

    queue = f"instructions-{uuid.uuid4().hex[:8]}"
    rate_bench.point_app(f"{redis_url}/0", queue)
    return mode, count, queue


def main() -> None:
    mode, count, queue = pointed()
    from django.core.mail import get_connection

    from benchmarks import rate_bench
    from seacucumber.tasks import send_email

    connection = get_connection()
    messages = rate_bench.mixed_messages(20 + WARM_UP + count, recipients_at_odd=1)
    connection.send_messages(messages[:20])
    for message in messages[20:20 + WARM_UP]:  # clients, scripts, imports, caches
        connection.send_messages([message])
        send_email.apply_async(args=[{}], queue=queue + "-floor", serializer="json")
    for message in messages[20 + WARM_UP:]:
        if mode == "send":
            connection.send_messages([message])
        else:
            send_email.apply_async(args=[{}], queue=queue + "-floor", serializer="json")


if __name__ == "__main__":
    main()
