"""The demo's live progress bar and closing summary, read from the status records and the
SES emulator's counters."""

from __future__ import annotations

import sys
import time
from collections import Counter

from seacucumber.testing.emulator import SESEmulator

BAR = 32


def status_counts() -> Counter:
    from django.db.models import Count

    from seacucumber.models import MessageStatus

    rows = MessageStatus.objects.values_list("status").annotate(n=Count("id"))
    return Counter(dict(rows))


def progress(total: int, started: float, emulator: SESEmulator, timeout: float) -> bool:
    """Draw the bar until every send is settled and SES's events are in; False on timeout."""
    deadline = time.monotonic() + timeout
    tty = sys.stdout.isatty()
    last_line = 0.0
    while True:
        counts = status_counts()
        settled = total - counts.get("queued", 0)
        stats = emulator.stats()
        elapsed = time.monotonic() - started
        done = settled >= total and stats["events_pending"] == 0
        if tty or done or elapsed - last_line >= 2:
            filled = int(BAR * settled / max(total, 1))
            line = (f"[{'#' * filled}{'.' * (BAR - filled)}] {settled:>4}/{total} settled  "
                    f"{stats['recipients_accepted']:>4} recipients at SES  "
                    f"{stats['throttled']} throttled  {elapsed:5.1f} s")
            print(("\r" if tty else "") + line, end="" if tty and not done else "\n",
                  flush=True)
            last_line = elapsed
        if done:
            return True
        if time.monotonic() > deadline:
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


def summary(queued: int, emulator: SESEmulator, account_rate: float, elapsed: float) -> str:
    from seacucumber.models import MessageStatus

    stats = emulator.stats()
    counts = status_counts()
    rate = steady_rate(emulator)
    failures = MessageStatus.objects.filter(status="failed").values_list("sender", "last_error")
    retried = stats["throttled"] + stats["failed_5xx"] + stats["dropped"]
    rows = [
        ("accepted by send_messages", f"{queued} messages"),
        ("sent (accepted by SES)", f"{stats['accepted']} messages, "
                                   f"{stats['recipients_accepted']} recipients"),
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
