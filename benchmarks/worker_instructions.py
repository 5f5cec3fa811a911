"""The worker's own work per send, counted in instructions: the send task's body run in
this process (``rate_bench.py cpu``'s loop: the payload, the attempt's two Redis round
trips, boto3, the bookkeeping), or a bare boto3 ``send_raw_email`` of the same message,
under callgrind, which counts the same on a loaded machine (Redis's and the emulator's work,
in processes of their own, are not counted). Only the measured loop is counted: it runs
inside ``operator.call``, the C function callgrind is told to collect in, so the setup
(imports, the emulator's start, which polls a varying number of times) is left out. Per
send: the count divided by N (BENCHMARKS.md, issue 27's third round)::

    redis-server --port 16399 --save '' --daemonize yes
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \
        .venv/bin/python benchmarks/worker_instructions.py task 300 redis://127.0.0.1:16399
    # and: bare 300
"""

from __future__ import annotations

import base64
import operator
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WARM_UP = 20


def main() -> None:
    from benchmarks.caller_instructions import pointed

    mode, count, queue = pointed()
    from django.conf import settings
    from django.core.mail import EmailMessage

    from benchmarks import rate_bench
    from benchmarks.rate_app import bare_ses_client
    from seacucumber.conf import conf
    from seacucumber.payload import build_sends
    from seacucumber.shared import outbox
    from seacucumber.tasks import send_email

    emulator = rate_bench.Emulator(rate=0, daily_quota=-1)
    try:
        settings.SEACUCUMBER_ENDPOINT_URL = emulator.url
        settings.SEACUCUMBER_OUTBOX = True
        settings.SEACUCUMBER_RATE_LIMIT = 1000000
        client = bare_ses_client(emulator.url)
        payloads = []
        for n in range(WARM_UP + count):
            [send] = build_sends(EmailMessage("Bench", "Body", "bench@example.com",
                                              [f"to{n}@example.com"]))
            payloads.append(send.to_json())
            outbox.record([payloads[-1]], queue, queue, 5.0)
        conf.freeze()  # as a worker does at start (worker_init)

        def bare(payload: dict) -> None:
            client.send_raw_email(Source="bench@example.com", Destinations=payload["to"],
                                  RawMessage={"Data": base64.b64decode(payload["raw"])})

        for payload in payloads[:WARM_UP]:  # clients, scripts, imports, caches
            send_email(payload)
            bare(payload)
        measured = send_email if mode == "task" else bare

        def loop() -> None:
            for payload in payloads[WARM_UP:WARM_UP + count]:
                measured(payload)

        operator.call(loop)  # the only part counted (--toggle-collect=_operator_call)
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
