"""How a send ends (``send.outcome``): the package's bookkeeping is called directly, and a
user's receiver that raises is logged with its traceback and changes nothing else."""

from __future__ import annotations

import logging
import uuid

import pytest
from django.core import mail
from django.core.mail import EmailMessage

from seacucumber import signals, status
from seacucumber.exceptions import PermanentSendError
from seacucumber.operations import metrics
from seacucumber.shared import quota
from tests.conftest import SENDER


class ReceiverBroke(Exception):
    pass


@pytest.fixture
def tracked(settings, redis_url):
    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/7"
    settings.SEACUCUMBER_REDIS_PREFIX = f"o-{uuid.uuid4().hex[:8]}"
    quota.forget()
    return settings


@pytest.fixture
def broken_then_counting():
    """Connects, for every send-outcome signal, a receiver that raises first and one that
    records after it; yields what the second saw."""
    seen: list[tuple[str, dict]] = []
    receivers = []
    for name in ("message_sent", "message_failed", "message_suppressed"):
        signal = getattr(signals, name)

        def broken(sender, name=name, **kwargs):
            raise ReceiverBroke(f"{name} receiver broke")

        def record(sender, name=name, **kwargs):
            seen.append((name, kwargs))

        signal.connect(broken, weak=False)
        signal.connect(record, weak=False)
        receivers += [(signal, broken), (signal, record)]
    try:
        yield seen
    finally:
        for signal, receiver in receivers:
            signal.disconnect(receiver)


@pytest.mark.django_db
def test_a_raising_sent_receiver_changes_neither_the_send_nor_its_record(
        tracked, moto_ses, eager, broken_then_counting, caplog):
    message = EmailMessage("Hi", "B", SENDER, ["a@example.com"])
    with caplog.at_level(logging.ERROR, logger="seacucumber.send.outcome"):
        assert mail.get_connection().send_messages([message]) == 1
    [sent] = moto_ses.wait_for(1)
    [message_id] = message.seacucumber_ids
    record = status.get(message_id=message_id)
    assert (record.status, record.ses_message_id) == ("sent", sent.id)
    assert [name for name, _ in broken_then_counting] == ["message_sent"]
    [logged] = [r for r in caplog.records if r.name == "seacucumber.send.outcome"]
    assert message_id in logged.getMessage()
    assert logged.exc_info is not None and logged.exc_info[0] is ReceiverBroke


@pytest.mark.django_db
def test_a_raising_failed_receiver_leaves_the_failure_recorded_and_counted(
        tracked, moto_ses, eager, broken_then_counting):
    message = EmailMessage("Hi", "B", "unverified@example.org", ["c@example.com"])
    with pytest.raises(PermanentSendError) as caught:  # SES's refusal, not the receiver's
        mail.get_connection().send_messages([message])
    assert caught.value.code == "MessageRejected"
    record = status.get(message_id=message.seacucumber_ids[0])
    assert record.status == "failed" and record.last_error.startswith("MessageRejected")
    counted = metrics.read_counters()["sends"]
    assert sum(n for labels, n in counted.items() if "failed" in labels) == 1
    assert [name for name, _ in broken_then_counting] == ["message_failed"]


@pytest.mark.django_db
def test_a_raising_suppressed_receiver_leaves_the_send_suppressed(
        tracked, moto_ses, eager, broken_then_counting):
    tracked.SEACUCUMBER_RECIPIENT_ALLOWLIST = ["example.org"]
    message = EmailMessage("Hi", "B", SENDER, ["nobody@example.com"])
    assert mail.get_connection().send_messages([message]) == 1
    record = status.get(message_id=message.seacucumber_ids[0])
    assert record.status == "suppressed"
    assert moto_ses.sent() == []
    [(name, seen)] = broken_then_counting
    assert (name, seen["reason"], seen["recipients"]) == ("message_suppressed", "allowlist", [])
