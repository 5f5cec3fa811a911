"""What DKIM signing costs per message: ``seacucumber.dkim.sign`` over ~200 realistic
messages (plain, HTML + text, non-ASCII, attachments up to 1 MB), RSA-2048 key.

    .venv/bin/python benchmarks/dkim_sign.py [--messages 200] [--rounds 3]

Prints the median and p99 per message, the part of it that is dkimpy re-reading the PEM key
on each call, and 2 threads against 2 processes signing the same messages (pure-Python RSA
holds the GIL, so threads do not add signing throughput; processes do).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from django.conf import settings  # noqa: E402

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption()).decode()
settings.configure(INSTALLED_APPS=["seacucumber"], DKIM_DOMAIN="example.com",
                   DKIM_PRIVATE_KEY=KEY, DEFAULT_CHARSET="utf-8")
django.setup()

import dkim as dkimpy  # noqa: E402
from django.core.mail import EmailMultiAlternatives  # noqa: E402

from seacucumber import dkim  # noqa: E402


def messages(count: int, seed: int = 7) -> list[bytes]:
    """Mostly small transactional mail, some newsletters, a few with attachments."""
    rnd = random.Random(seed)
    made = []
    for i in range(count):
        kind = rnd.random()
        message = EmailMultiAlternatives(
            subject=f"Ihre Bestellung Nr. {i} ist unterwegs ✓" if i % 3 else f"Receipt {i}",
            body=("Hello Zoë,\n\nThanks for your order.\n" + "Line of text. " * rnd.randint(5, 80)
                  + "\n.\n-- \nThe shop\n"),
            from_email="Shop <shop@example.com>",
            to=[f"customer{i}@example.org"],
            cc=["copy@example.org"] if i % 5 == 0 else [],
        )
        if kind > 0.4:
            message.attach_alternative("<html><body>" + "<p>Newsletter ✓ paragraph</p>"
                                       * rnd.randint(10, 400) + "</body></html>", "text/html")
        if kind > 0.9:
            message.attach("invoice.pdf", os.urandom(rnd.choice([30_000, 200_000, 1_000_000])),
                           "application/pdf")
        made.append(message.message().as_bytes(linesep="\r\n"))
    return made


def timed(raws: list[bytes], rounds: int) -> list[tuple[float, int]]:
    """(seconds, message size) of each signing."""
    times = []
    for _ in range(rounds):
        for raw in raws:
            started = time.perf_counter()
            dkim.sign(raw)
            times.append((time.perf_counter() - started, len(raw)))
    return times


_RAWS: list[bytes] = []


def _load(count: int) -> None:
    _RAWS[:] = messages(count)  # each process builds the same messages (seeded)


def sign_some(indices: list[int]) -> int:
    return sum(len(dkim.sign(_RAWS[i])) for i in indices)


def parallel(count: int, executor_class: type, workers: int) -> float:
    """Messages per second signed by ``workers`` threads or processes (messages are made in
    each worker beforehand, so only signing is timed)."""
    chunks = [list(range(i, count, workers)) for i in range(workers)]
    with executor_class(max_workers=workers, initializer=_load, initargs=(count,)) as pool:
        list(pool.map(sign_some, chunks))  # warm up: key loaded, messages made
        started = time.perf_counter()
        list(pool.map(sign_some, chunks))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _load(args.messages)
    raws = _RAWS
    sizes = sorted(len(r) for r in raws)
    dkim.sign(raws[0])  # load the key once, as a worker does at start
    measured = timed(raws, args.rounds)
    times = sorted(t for t, _ in measured)
    small = [t for t, size in measured if size < 20_000]
    large = [(t, size) for t, size in measured if size > 500_000]
    pem = dkim.signers().default[0].key.material
    started = time.perf_counter()
    for _ in range(200):
        dkimpy.crypto.parse_pem_private_key(pem)
    parse_ms = (time.perf_counter() - started) / 200 * 1000
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    print(f"python {sys.version.split()[0]}, dkimpy {version('dkimpy')}, "
          f"RSA-2048, relaxed/relaxed, {len(raws)} messages x {args.rounds} rounds")
    print(f"message size: median {sizes[len(sizes) // 2]:,} B, max {sizes[-1]:,} B")
    print(f"sign per message: median {statistics.median(times) * 1000:.2f} ms, "
          f"p99 {p99 * 1000:.2f} ms, max {times[-1] * 1000:.2f} ms")
    print(f"messages under 20 kB: median {statistics.median(small) * 1000:.2f} ms; over 500 kB: "
          f"{statistics.median(t / size for t, size in large) * 1e9:.0f} ms per MB")
    print(f"of which dkimpy re-reading the PEM key: {parse_ms:.3f} ms per call")
    one = len(raws) / sum(t for t, _ in timed(raws, 1))
    threads = parallel(len(raws), ThreadPoolExecutor, 2)
    processes = parallel(len(raws), ProcessPoolExecutor, 2)
    print(f"1 thread: {one:.0f} msg/s; 2 threads: {threads:.0f} msg/s; "
          f"2 processes: {processes:.0f} msg/s "
          f"(cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
