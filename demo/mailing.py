"""The demo's mail: a few hundred messages, some to several recipients, some to SES's mailbox
simulator (which bounces or complains), and one from a sender SES has not verified."""

from __future__ import annotations

from django.core.mail import EmailMessage

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
