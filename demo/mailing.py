"""The demo's mail: a newsletter of a few hundred messages on the bulk lane, some to several
recipients, some to SES's mailbox simulator (which bounces or complains), one from a sender
SES has not verified; and password resets, on the transactional lane, while it drains."""

from __future__ import annotations

import threading
import time

from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

SIMULATOR = "simulator.amazonses.com"


def messages(count: int) -> list[EmailMessage]:
    batch = []
    for i in range(1, count + 1):
        to, cc, bcc = [f"reader{i}@example.com"], [], []
        if i % 4 == 0:  # one in four: three recipients, one of them hidden
            cc, bcc = [f"colleague{i}@example.com"], [f"archive{i}@example.com"]
        if i % 10 == 3:
            to = [f"bounce+{i}@{SIMULATOR}"]
        elif i % 10 == 7:
            to = [f"complaint+{i}@{SIMULATOR}"]
        elif i % 10 == 9:
            to = [f"success+{i}@{SIMULATOR}"]
        batch.append(EmailMessage(
            subject=f"Demo message {i} ✉", body=f"Hello number {i}, from Sea Cucumber.",
            to=to, cc=cc, bcc=bcc,
        ))
    batch.append(EmailMessage(  # SES refuses it: the sender's domain is not verified
        subject="From a stranger", body="SES will not send this.",
        from_email="someone@unverified.example", to=["reader@example.com"],
    ))
    return batch


def newsletter_connection() -> BaseEmailBackend:
    """The bulk lane's connection: Django 6.1's "bulk" mailer, or get_connection before it."""
    if hasattr(mail, "mailers"):
        return mail.mailers["bulk"]
    return mail.get_connection(lane="bulk")


class PasswordResets:
    """Sends a password reset every ``every`` seconds from a thread, as a web request would:
    ``message.send()`` on the default connection, so the transactional lane. Keeps each
    reset's send id and the wall-clock time ``send_messages`` returned, to be matched with
    the moment SES accepted it."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.sent: dict[str, float] = {}  #: send id -> time.time() send_messages returned
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="password-resets", daemon=True)

    def start(self) -> PasswordResets:
        self._thread.start()
        return self

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from django.db import connections

        try:
            number = 0
            while not self._stop.is_set():
                number += 1
                message = EmailMessage(
                    subject="Reset your password",
                    body=f"Someone asked to reset your password: https://example.com/reset/{number}",
                    to=[f"user{number}@example.com"])
                message.send()
                self.sent[message.seacucumber_ids[0]] = time.time()
                self._stop.wait(self.every)
        finally:
            connections.close_all()  # this thread's database connection
