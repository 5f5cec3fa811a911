"""End to end on real parts: the backend in this process, real ``celery worker`` processes
(thread and prefork pools) on Redis and on RabbitMQ, SES at moto's server."""

import pytest
from django.core import mail
from django.core.mail import EmailMessage

from tests.conftest import SENDER


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_messages_reach_ses_through_real_workers(pipeline, start_worker, moto_ses, pool):
    start_worker(pipeline.worker_env(), queues=pipeline.queue, pool=pool, concurrency=2)
    messages = [
        EmailMessage(f"Message {i} ✓", f"Body {i}", SENDER, [f"to{i}@example.com"],
                     bcc=[f"bcc{i}@example.com"])
        for i in range(6)
    ]
    assert mail.get_connection().send_messages(messages) == 6
    sent = moto_ses.wait_for(6)
    assert sorted(m.destinations[0] for m in sent) == [f"to{i}@example.com" for i in range(6)]
    assert all(f"bcc{m.destinations[0][2]}@example.com" in m.destinations for m in sent)


def test_permanent_failure_is_logged_with_ses_code(pipeline, start_worker, moto_ses):
    worker = start_worker(pipeline.worker_env(), queues=pipeline.queue)
    mail.send_mail("Hi", "B", "unverified@example.org", ["a@example.com"])
    mail.send_mail("After", "B", SENDER, ["b@example.com"])
    moto_ses.wait_for(1)
    import time

    deadline = time.monotonic() + 30
    while "PermanentSendError" not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = worker.log()
    assert "failed: MessageRejected" in log
    assert "PermanentSendError" in log
    assert [m.destinations[0] for m in moto_ses.sent()] == ["b@example.com"]
