"""An SES endpoint of the project's own, for tests, benchmarks, the demo and docker-compose.

moto's server speaks all of SES but tops out near 250 requests/s on two cores and knows no
rates or faults. This emulator speaks the SES wire protocol for the calls a sender makes
(v1 ``SendRawEmail``, ``GetSendQuota``, ``GetSendStatistics``; v2 ``SendEmail``,
``GetAccount``, with a sandbox or paused account on request, and the account-level
suppression list) and adds what a real account does: a per-recipient send rate enforced with
real ``Throttling`` errors, a rolling 24-hour quota, latency, 5xx answers, dropped
connections, and the mailbox simulator's bounce/complaint/delivery events posted, signed, to
a webhook. It also receives mail as a receipt rule does (``receive``: a signed ``Received``
notification, the mail inline or put into S3 first; ``inbound.py``), and keeps identities
(``identities``: what ``manage.py ses_address`` calls, v1 and v2), verified at once; the
senders allowed (``verified``) are among them.

In a process::

    emulator = SESEmulator(rate=14, latency=0.05).start()
    ... boto3.client("ses", endpoint_url=emulator.url) ...
    emulator.stats(); emulator.messages(); emulator.stop()

As a server (docker-compose, benchmarks): ``python -m seacucumber.testing.emulator --port 8025
--rate 14``, driven over HTTP with ``EmulatorClient`` (``/_emulator/...``).
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

from ..sns_signing import DEFAULT_CERT_URL, Signer
from .client import EmulatorBase
from .events import DEFAULT_TOPIC_ARN, EventPoster
from .http import Handler, Server
from .identities import Identities
from .inbound import Received, Receiver
from .state import Accepted, Account, Config
from .suppression import SuppressionList

__all__ = ["SESEmulator", "EmulatorClient", "main"]

from .client import EmulatorClient  # noqa: E402 - re-exported


class SESEmulator(EmulatorBase):
    """The emulator in this process, serving HTTP from a background thread."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", region: str = "us-east-1",
                 webhook_url: str | None = None, topic_arn: str = DEFAULT_TOPIC_ARN,
                 signing_cert_url: str = DEFAULT_CERT_URL, notification_delay: float = 0.2,
                 s3_endpoint_url: str | None = None, **config: Any) -> None:
        self.host = host
        self.port = port
        self.region = region
        self.account = Account(Config())
        self.account.configure(**config)
        self.identities = Identities()  #: kept across ``reset``, like the configuration
        self._add_verified()
        self.suppression = SuppressionList()  #: the account-level list, kept across ``reset``
        self.webhook_url = webhook_url
        self.topic_arn = topic_arn
        self.signing_cert_url = signing_cert_url
        self.notification_delay = notification_delay
        self.s3_endpoint_url = s3_endpoint_url
        self.signer: Signer | None = None
        self.poster: EventPoster | None = None
        self.server: Server | None = None
        self.thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> SESEmulator:
        self.server = Server((self.host, self.port), Handler)
        self.server.emulator = self
        self.port = self.server.server_address[1]
        if self.webhook_url:
            self.poster = EventPoster(
                self.webhook_url, self.signing_signer(), self.account.count_event,
                topic_arn=self.topic_arn, cert_url=self.signing_cert_url,
                delay=self.notification_delay)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       name="ses-emulator", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.poster is not None:
            self.poster.close()
            self.poster = None

    def __enter__(self) -> SESEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    # --- what the handler calls ----------------------------------------------------------------
    def accepted(self, message: Accepted | None) -> None:
        """A message was accepted: queue its events, if a webhook is set."""
        if self.poster is not None and message is not None:
            self.poster.submit(message)

    def signing_signer(self) -> Signer:
        if self.signer is None:
            self.signer = Signer()
        return self.signer

    def cert_pem(self) -> bytes:
        """The PEM certificate the event notifications are signed with (pin it in
        ``SEACUCUMBER_SNS_CERTIFICATES`` under ``signing_cert_url``)."""
        return self.signing_signer().pem

    def receive(self, raw: bytes, **options: Any) -> Received:
        """Receive ``raw`` as a receipt rule would and post the signed ``Received``
        notification to the webhook (``action="SNS"`` or ``"S3"``, ``encoding``, ``sender``,
        ``recipients``, ``bucket``, ``verdicts={"spam": "FAIL"}``, ``webhook_url``,
        ``post=False`` to only build it). Returns the webhook's status and the ids."""
        receiver = Receiver(self.signing_signer(), self.topic_arn, self.signing_cert_url,
                            webhook_url=self.webhook_url, s3_endpoint_url=self.s3_endpoint_url,
                            region=self.region)
        return receiver.receive(raw, **options)

    # --- the EmulatorBase interface ----------------------------------------------------------
    def configure(self, **changes: Any) -> None:
        self.account.configure(**changes)
        self._add_verified()

    def _add_verified(self) -> None:
        """The senders allowed (``verified``) are identities too, so ``ses_address list``
        and ``ses_doctor`` see what the sends are checked against."""
        for name in self.account.config.verified or ():
            self.identities.add(name)

    def reset(self) -> None:
        self.account.reset()

    def stats(self) -> dict[str, Any]:
        data = self.account.stats()
        data["events_pending"] = 0 if self.poster is None or self.poster.idle() else 1
        return data

    def messages(self, since: int = 0) -> list[Accepted]:
        return self.account.accepted_since(since)

    def wait_for_events(self, timeout: float = 30.0) -> None:
        """Wait until every queued event notification was posted (or gave up)."""
        deadline = time.monotonic() + timeout
        while self.poster is not None and not self.poster.idle():
            if time.monotonic() > deadline:
                raise AssertionError("emulator events still pending")
            time.sleep(0.05)


def command_line() -> argparse.ArgumentParser:
    """The emulator's command line (docker-compose.yml's ``ses`` service uses it)."""
    parser = argparse.ArgumentParser(
        prog="python -m seacucumber.testing.emulator",
        description="An SES endpoint for tests and demos: rate, quota, latency and faults.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--rate", type=float, default=14.0,
                        help="recipients per second (0: unlimited)")
    parser.add_argument("--burst-seconds", type=float, default=1.0)
    parser.add_argument("--daily-quota", type=float, default=50000.0, help="-1: unlimited")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    parser.add_argument("--fail-5xx", type=float, default=0.0, help="share answered 503")
    parser.add_argument("--drop", type=float, default=0.0, help="share of connections dropped")
    parser.add_argument("--drop-after-accept", type=float, default=0.0)
    parser.add_argument("--verified", nargs="*", default=None,
                        help="senders allowed (addresses or domains); default: any")
    parser.add_argument("--sandbox", action="store_true",
                        help="GetAccount says the account is in the sandbox")
    parser.add_argument("--no-raw", action="store_true", help="do not keep message bodies")
    parser.add_argument("--webhook-url", default=None, help="where to post SNS events")
    parser.add_argument("--topic-arn", default=DEFAULT_TOPIC_ARN)
    parser.add_argument("--signing-cert-url", default=DEFAULT_CERT_URL)
    parser.add_argument("--cert-file", default=None,
                        help="write the events' signing certificate (PEM) to this file")
    parser.add_argument("--notification-delay", type=float, default=0.2)
    parser.add_argument("--s3-endpoint-url", default=None,
                        help="S3 endpoint the receipt rule's S3 action stores mail in")
    parser.add_argument("--seed", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = command_line().parse_args(argv)
    emulator = SESEmulator(
        port=args.port, host=args.host, region=args.region, webhook_url=args.webhook_url,
        topic_arn=args.topic_arn, signing_cert_url=args.signing_cert_url,
        notification_delay=args.notification_delay, s3_endpoint_url=args.s3_endpoint_url,
        rate=args.rate, burst_seconds=args.burst_seconds, daily_quota=args.daily_quota,
        latency=args.latency, fail_5xx=args.fail_5xx, drop=args.drop,
        drop_after_accept=args.drop_after_accept,
        verified=tuple(args.verified) if args.verified is not None else None,
        keep_raw=not args.no_raw, seed=args.seed, sandbox=args.sandbox,
    ).start()
    if args.cert_file:
        Path(args.cert_file).write_bytes(emulator.cert_pem())
    print(f"SES emulator on {emulator.url} (rate {args.rate}/s, daily quota "
          f"{args.daily_quota:g}); control API at {emulator.url}/_emulator/", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()

