"""The demo's live progress bar and closing summary, read from the status records and the
SES emulator's counters and accepted messages (their tags tell the lanes apart)."""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING

from seacucumber.testing.emulator import SESEmulator

if TYPE_CHECKING:
    from .mailing import PasswordResets

BAR = 32


def status_counts() -> Counter:
    from django.db.models import Count

    from seacucumber.models import MessageStatus

    rows = MessageStatus.objects.values_list("status").annotate(n=Count("id"))
    return Counter(dict(rows))


def settled(ids: list[str]) -> int:
    """How many of these sends are settled (sent, failed or further on)."""
    from seacucumber.models import MessageStatus

    return MessageStatus.objects.filter(message_id__in=ids).exclude(status="queued").count()


def progress(newsletter: list[str], resets: PasswordResets, started: float,
             emulator: SESEmulator, timeout: float) -> bool:
    """Draw the bar while the newsletter's sends settle, password resets going out meanwhile;
    then stop the resets and wait for theirs and for SES's events. False on timeout."""
    deadline = time.monotonic() + timeout
    tty = sys.stdout.isatty()
    last_line = 0.0
    while True:
        done_newsletter = settled(newsletter)
        if done_newsletter >= len(newsletter) and not resets.stopped:
            resets.stop()
        stats = emulator.stats()
        elapsed = time.monotonic() - started
        done = (resets.stopped and settled(list(resets.sent)) >= len(resets.sent)
                and stats["events_pending"] == 0)
        if tty or done or elapsed - last_line >= 2:
            filled = int(BAR * done_newsletter / max(len(newsletter), 1))
            line = (f"[{'#' * filled}{'.' * (BAR - filled)}] {done_newsletter:>4}/"
                    f"{len(newsletter)} newsletter settled  {len(resets.sent):>3} resets  "
                    f"{stats['recipients_accepted']:>4} recipients at SES  "
                    f"{stats['throttled']} throttled  {elapsed:5.1f} s")
            print(("\r" if tty else "") + line, end="" if tty and not done else "\n",
                  flush=True)
            last_line = elapsed
        if done:
            return True
        if time.monotonic() > deadline:
            resets.stop()
            print()
            return False
        time.sleep(0.2)


def steady_rate(emulator: SESEmulator, skip: float = 1.0) -> float:
    """Recipients per second SES accepted, leaving out the first ``skip`` seconds (the burst
    a full bucket allows)."""
    accepted = emulator.messages()
    if len(accepted) < 2:
        return 0.0
    start = accepted[0].time + skip
    end = accepted[-1].time
    window = [m for m in accepted if start <= m.time <= end]
    if end - start <= 0 or not window:
        return 0.0
    return sum(len(m.destinations) for m in window) / (end - start)


def sent_by(emulator: SESEmulator) -> str:
    """Messages SES accepted from each worker process (its User-Agent app id)."""
    counts = Counter(m.app or "?" for m in emulator.messages())
    return ", ".join(f"{app} {n} messages" for app, n in sorted(counts.items())) or "nobody"


def lane_rows(newsletter: list[str], newsletter_queued: float, resets: PasswordResets,
              emulator: SESEmulator) -> list[tuple[str, str]]:
    """Each lane's rate while the newsletter drained (from ``send_messages`` returning,
    ``newsletter_queued``, to its last send at SES) and its latency: the newsletter's, how
    long it took; a password reset's, from its ``send_messages`` returning to SES taking it
    (matched by the ``seacucumber-id`` tag every send carries)."""
    accepted = emulator.messages()
    by_id = {m.tags.get("seacucumber-id"): m for m in accepted}
    ours = set(newsletter)
    bulk = [m for m in accepted if m.tags.get("seacucumber-id") in ours]
    drained = max((m.time for m in bulk), default=newsletter_queued) - newsletter_queued
    window = max(drained, 1e-3)

    def rate(lane: str) -> float:
        recipients = sum(len(m.destinations) for m in accepted
                         if m.tags.get("seacucumber-lane") == lane
                         and newsletter_queued <= m.time <= newsletter_queued + drained)
        return recipients / window

    waits = sorted(by_id[i].time - at for i, at in resets.sent.items() if i in by_id)
    if len(waits) >= 2:
        p99 = statistics.quantiles(waits, n=100, method="inclusive")[98]
        latency = (f"median {statistics.median(waits):.2f} s, p99 {p99:.2f} s, "
                   f"max {waits[-1]:.2f} s")
    else:
        latency = ", ".join(f"{wait:.2f} s" for wait in waits) or "none at SES"
    at_ses = "all" if len(waits) == len(resets.sent) else str(len(waits))
    return [
        ("transactional lane", f"{len(resets.sent)} password resets, {at_ses} at SES; "
                               f"{rate('transactional'):.1f} recipients/s"),
        ("  send_messages -> SES", latency),
        ("bulk lane", f"the newsletter: {len(bulk)} messages, "
                      f"{sum(len(m.destinations) for m in bulk)} recipients at SES; "
                      f"{rate('bulk'):.1f} recipients/s"),
        ("  send_messages -> SES", f"{drained:.1f} s to its last message"),
    ]


def summary(queued: int, lanes: list[tuple[str, str]], resets: int, emulator: SESEmulator,
            account_rate: float, elapsed: float) -> str:
    from seacucumber.models import MessageStatus

    stats = emulator.stats()
    counts = status_counts()
    rate = steady_rate(emulator)
    failures = MessageStatus.objects.filter(status="failed").values_list("sender", "last_error")
    retried = stats["throttled"] + stats["failed_5xx"] + stats["dropped"]
    rows = [
        ("accepted by send_messages", f"{queued + resets} messages ({queued} newsletter, "
                                      f"{resets} password resets)"),
        ("sent (accepted by SES)", f"{stats['accepted']} messages, "
                                   f"{stats['recipients_accepted']} recipients"),
        *lanes,
        ("steady rate", f"{rate:.1f} recipients/s = {rate / account_rate:.2f} × the "
                        f"account's {account_rate:g}/s"),
        ("sent by", sent_by(emulator)),
        ("throttles", str(stats["throttled"])),
        ("retries", f"{retried} (SES errors: {stats['failed_5xx']} 503, "
                    f"{stats['throttled']} throttling, {stats['dropped']} dropped)"),
        ("delivered", str(counts.get("delivered", 0))),
        ("bounced", f"{counts.get('bounced', 0)} (now on the suppression list)"),
        ("complained", f"{counts.get('complained', 0)} (now on the suppression list)"),
        ("failed", str(counts.get("failed", 0))),
    ]
    rows += [("", f"{sender}: {error[:70]}...") for sender, error in failures]
    rows.append(("elapsed", f"{elapsed:.1f} s"))
    width = max(len(name) for name, _ in rows)
    rule = "-" * (width + 60)
    return "\n".join([rule, *(f"{name:<{width}}  {value}" for name, value in rows), rule])
