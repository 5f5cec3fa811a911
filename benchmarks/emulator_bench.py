"""Requests per second the SES endpoints take: the project's emulator beside moto's server.

Each server runs in a process of its own; the same driver (boto3 clients, retries off, in
``--processes`` processes of ``--threads`` threads) sends small raw messages for ``--seconds``
to one, then the other. Run::

    .venv/bin/python benchmarks/emulator_bench.py --seconds 10 --processes 2 --threads 4
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request

import boto3
from botocore.config import Config

from seacucumber.testing.processes import free_port

RAW = b"From: sender@example.com\r\nTo: to@example.com\r\nSubject: bench\r\n\r\nbody\r\n"


def drive(url: str, seconds: float, threads: int, counts: multiprocessing.Queue) -> None:
    """One driver process: ``threads`` threads sending as fast as answers come."""
    done = [0] * threads

    def run(slot: int) -> None:
        client = boto3.client(
            "ses", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
            aws_secret_access_key="bench",  # noqa: S106 - not a credential
            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=threads))
        client.send_raw_email(Source="sender@example.com", Destinations=["to@example.com"],
                              RawMessage={"Data": RAW})  # warm up outside the clock
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            client.send_raw_email(Source="sender@example.com",
                                  Destinations=["to@example.com"], RawMessage={"Data": RAW})
            done[slot] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    counts.put(sum(done))


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - loopback http
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def measure(name: str, command: list[str], url: str, args: argparse.Namespace) -> float:
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(url)
        if name == "moto":
            boto3.client("ses", endpoint_url=url, region_name="us-east-1",
                         aws_access_key_id="bench", aws_secret_access_key="bench",  # noqa: S106
                         ).verify_email_identity(EmailAddress="sender@example.com")
        counts: multiprocessing.Queue = multiprocessing.Queue()
        drivers = [multiprocessing.Process(target=drive,
                                           args=(url, args.seconds, args.threads, counts))
                   for _ in range(args.processes)]
        for driver in drivers:
            driver.start()
        total = sum(counts.get(timeout=args.seconds + 60) for _ in drivers)
        for driver in drivers:
            driver.join()
        return total / args.seconds
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    results = {}
    port = free_port()
    results["emulator"] = measure("emulator", [
        sys.executable, "-m", "seacucumber.testing.emulator", "--port", str(port),
        "--rate", "0", "--daily-quota", "-1", "--no-raw"], f"http://127.0.0.1:{port}", args)
    port = free_port()
    results["moto"] = measure("moto", [
        sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
        f"http://127.0.0.1:{port}", args)
    print(f"# {datetime.date.today()} on {platform.node()} ({os.cpu_count()} CPUs, "
          f"{platform.platform()})")
    print(f"# .venv/bin/python benchmarks/emulator_bench.py --seconds {args.seconds:g} "
          f"--processes {args.processes} --threads {args.threads}")
    for name, rate in results.items():
        print(f"{name:>9}: {rate:8.0f} SendRawEmail/s")
    print(f"emulator ÷ moto: {results['emulator'] / results['moto']:.1f}×")


if __name__ == "__main__":
    main()
