"""What one-click unsubscribe costs at ``send_messages``: ``build_sends`` for one message to
1,000 readers (Bcc), without a topic (20 sends of 50) and with ``unsubscribe_topic`` (1,000
sends, each with its own signed List-Unsubscribe URL put in front of the MIME built once).

    .venv/bin/python benchmarks/unsubscribe_build.py [--recipients 1000] [--rounds 20]

Prints the median and the slowest round of each, and the cost per recipient of the topic.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(INSTALLED_APPS=["seacucumber"], SECRET_KEY="benchmark-only",  # noqa: S106
                   SEACUCUMBER_BASE_URL="https://www.example.com/ses/",
                   DEFAULT_CHARSET="utf-8")
django.setup()

from django.core.mail import EmailMultiAlternatives  # noqa: E402

from seacucumber.payload import MailerOptions, build_sends  # noqa: E402


def timed(message: EmailMultiAlternatives, options: MailerOptions, rounds: int) -> list[float]:
    build_sends(message, options)  # warm
    found = []
    for _ in range(rounds):
        start = time.perf_counter()
        build_sends(message, options)
        found.append(time.perf_counter() - start)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    readers = [f"reader{n}@example.com" for n in range(args.recipients)]
    text = "This week's news, in a few paragraphs. " * 100
    message = EmailMultiAlternatives("Newsletter, issue 7", text, "news@example.com",
                                     bcc=readers)
    message.attach_alternative(f"<p>{text}</p>", "text/html")
    for name, options in (("no topic", MailerOptions()),
                          ("unsubscribe_topic", MailerOptions.parse(
                              {"unsubscribe_topic": "newsletter"}))):
        runs = timed(message, options, args.rounds)
        sends = len(build_sends(message, options))
        print(f"{name:>18}: {sends:>5} sends, median {statistics.median(runs) * 1000:7.1f} ms, "
              f"max {max(runs) * 1000:7.1f} ms "
              f"({statistics.median(runs) / args.recipients * 1e6:.1f} us per recipient)")


if __name__ == "__main__":
    main()
