"""`make demo` keeps working: run it as the Makefile does and read its summary: a newsletter
on the bulk lane, password resets on the transactional lane while it drains."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.demo

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_RATE = 50  # the demo's default account: 50 recipients per second
#: Redis: 200 messages are 300 recipients, six seconds of sending at the account's rate, so
#: the steady rate means something. The filesystem transport is slower and has no rate to
#: hold: fewer messages.
MESSAGES = {"redis": 200, "filesystem": 80}


def run_demo(tmp_path, messages: int, **env_extra) -> str:
    env = {**os.environ, "SEACUCUMBER_DEMO_DIR": str(tmp_path),
           "SEACUCUMBER_DEMO_MESSAGES": str(messages), **env_extra}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-m", "demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def row(output: str, name: str) -> str:
    found = re.search(rf"^{name}\s{{2,}}(.+)$", output, re.MULTILINE)
    assert found, f"no {name!r} row in:\n{output}"
    return found.group(1)


def expected(messages: int) -> dict[str, int]:
    """What demo/mailing.py sends: every fourth message to three recipients; the simulator's
    bounce@ for i % 10 == 3, complaint@ for i % 10 == 7; plus one refused message."""
    numbers = range(1, messages + 1)
    bounced = sum(1 for i in numbers if i % 10 == 3)
    complained = sum(1 for i in numbers if i % 10 == 7)
    return {
        "recipients": sum(3 if i % 4 == 0 else 1 for i in numbers),
        "bounced": bounced,
        "complained": complained,
        "delivered": messages - bounced - complained,
    }


@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_demo_prints_the_summary(tmp_path, broker, redis_url):
    extra = ({"SEACUCUMBER_DEMO_BROKER": "filesystem"} if broker == "filesystem"
             else {"REDIS_URL": f"{redis_url}/7"})
    count = MESSAGES[broker]
    want = expected(count)
    output = run_demo(tmp_path, count, **extra)

    # the workers: two processes sharing the rate through Redis, or one on the filesystem;
    # either way consuming both lanes' queues
    workers = row(output, "workers:")
    assert "queues 'mail' (transactional lane) and 'seacucumber-bulk' (bulk lane)" in output, output
    if broker == "redis":
        assert re.match(r"2 celery worker processes ready \(pids \d+, \d+\)", workers), workers
        assert "sharing the account's rate through Redis, transactional first" in output
    else:
        assert re.match(r"1 celery worker process ready \(pid \d+\)", workers), workers
        assert "no Redis, so no shared rate, no lanes' priority and no send log" in output

    # the newsletter, and the password resets sent while it drained (one recipient each)
    accepted = re.fullmatch(r"(\d+) messages \((\d+) newsletter, (\d+) password resets\)",
                            row(output, "accepted by send_messages"))
    assert accepted, output
    total, newsletter, resets = map(int, accepted.groups())
    assert newsletter == count + 1 and total == newsletter + resets
    assert resets >= 3, output  # one every 0.7 s over a newsletter of several seconds
    # the stranger's message is refused by SES
    assert row(output, "sent \\(accepted by SES\\)") == (
        f"{count + resets} messages, {want['recipients'] + resets} recipients")

    # each lane: every reset at SES, its wait from send_messages to SES; the newsletter's
    # recipients all at SES, and how long it took; each lane's rate while it drained
    transactional = re.fullmatch(
        rf"{resets} password resets, all at SES; (\d+\.\d) recipients/s",
        row(output, "transactional lane"))
    assert transactional, output
    waits = re.search(r"^transactional lane .*\n  send_messages -> SES\s+median (\d+\.\d\d) s, "
                      r"p99 (\d+\.\d\d) s, max (\d+\.\d\d) s$", output, re.MULTILINE)
    assert waits, output
    median, p99, longest = map(float, waits.groups())
    assert 0 < median <= p99 <= longest, output
    bulk = re.fullmatch(rf"the newsletter: {count} messages, {want['recipients']} recipients at "
                        r"SES; (\d+\.\d) recipients/s", row(output, "bulk lane"))
    assert bulk, output
    drained = re.search(r"^bulk lane .*\n  send_messages -> SES\s+(\d+\.\d) s to its last "
                        r"message$", output, re.MULTILINE)
    assert drained, output
    drained_in = float(drained.group(1))
    assert 0 < drained_in, output
    lanes_rate = float(transactional.group(1)) + float(bulk.group(1))
    assert float(transactional.group(1)) > 0, output

    # both Redis workers took a share of the mail; every message is someone's
    sent_by = dict((app, int(n)) for app, n in
                   re.findall(r"(worker\d) (\d+) messages", row(output, "sent by")))
    assert sum(sent_by.values()) == count + resets, output
    assert set(sent_by) == ({"worker1", "worker2"} if broker == "redis" else {"worker1"})
    assert min(sent_by.values()) > 0, output

    rate, ratio = re.search(
        rf"^steady rate\s+(\d+\.\d) recipients/s = (\d\.\d\d) × the account's "
        rf"{ACCOUNT_RATE}/s$", output, re.MULTILINE).groups()
    assert abs(float(rate) / ACCOUNT_RATE - float(ratio)) < 0.01
    throttles = int(row(output, "throttles"))
    retries = re.fullmatch(r"(\d+) \(SES errors: (\d+) 503, (\d+) throttling, (\d+) dropped\)",
                           row(output, "retries"))
    assert retries, row(output, "retries")
    total, failed_5xx, throttling, dropped = map(int, retries.groups())
    assert total == failed_5xx + throttling + dropped
    assert throttling == throttles
    assert dropped == 0  # the demo's SES fails 2% of calls with 503 and drops none
    assert failed_5xx <= count // 10 + 5  # about 2% of some 200 calls
    if broker == "redis":
        # the shared rate holds the account's rate, no faster, no slower
        assert 0.9 <= float(ratio) <= 1.02, output
        assert throttles == 0, output
        # together the lanes keep to the account's rate (the first second's burst aside)
        assert 0.85 * ACCOUNT_RATE <= lanes_rate <= 1.1 * ACCOUNT_RATE, output
        # lanes: a reset waits for a free slot, not behind the newsletter (which took
        # several seconds); without them it would wait half the newsletter on average
        assert median < min(1.0, drained_in / 3), output
        assert longest < drained_in, output
    else:
        assert 0 < float(ratio) <= 1.1, output

    assert row(output, "delivered") == str(want["delivered"] + resets)
    assert row(output, "bounced") == f"{want['bounced']} (now on the suppression list)"
    assert row(output, "complained") == f"{want['complained']} (now on the suppression list)"
    assert row(output, "failed") == "1"
    assert re.search(r"^failed\s+1\n\s+someone@unverified\.example: MessageRejected: Email "
                     r"address is not verified", output, re.MULTILINE), output
    elapsed = float(re.fullmatch(r"(\d+\.\d) s", row(output, "elapsed")).group(1))
    assert 0 < elapsed < 60, output
    assert re.search(rf"^\[#{{32}}\]\s+{count + 1}/{count + 1} newsletter settled\s+"
                     rf"{resets} resets", output, re.MULTILINE), output

    # the summary ends with the operator's commands, answered by the same SES
    tail = output[output.index("$ manage.py ses_address verify example.com"):]
    assert "_amazonses.example.com" in tail
    assert re.search(r"^\$ manage\.py ses_address list\n.*\n\s+domain\s+example\.com\s+success$",
                     tail, re.MULTILINE), tail
    usage = tail[tail.index("$ manage.py ses_usage"):]
    assert re.search(rf"^\s+max send rate\s+{ACCOUNT_RATE} recipients/s$", usage, re.MULTILINE)
    assert re.search(rf"^\s+total\s+{want['recipients'] + resets}\s", usage, re.MULTILINE), usage
