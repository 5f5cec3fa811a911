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


def test_two_mailers_send_through_real_workers_each_with_its_options(
        pipeline, start_worker, moto_ses, settings):
    """A project configured as README shows (Django 6.1: MAILERS; before: EMAIL_BACKEND and
    get_connection(**options)): the bulk mailer's mail goes to its own queue, which only the
    second worker consumes, with its own envelope sender."""
    bulk_queue = f"{pipeline.queue}-bulk"
    bulk_options = {"queue": bulk_queue, "return_path": "bounces@example.com"}
    moto_ses.verify("bounces@example.com")
    if hasattr(mail, "mailers"):
        settings.MAILERS = {
            "default": {"BACKEND": "seacucumber.backend.SESBackend"},
            "bulk": {"BACKEND": "seacucumber.backend.SESBackend", "OPTIONS": bulk_options},
        }
        send_bulk = lambda message: message.send(using="bulk")  # noqa: E731
    else:
        send_bulk = lambda message: mail.get_connection(  # noqa: E731
            "seacucumber.backend.SESBackend", **bulk_options).send_messages([message])
    start_worker(pipeline.worker_env(), queues=pipeline.queue)
    assert send_bulk(EmailMessage("News", "B", SENDER, ["reader@example.com"])) == 1
    mail.send_mail("Reset", "B", SENDER, ["user@example.com"])
    [reset] = moto_ses.wait_for(1)
    assert (reset.source, reset.destinations[0]) == (SENDER, "user@example.com")
    start_worker(pipeline.worker_env(), queues=bulk_queue)
    news = moto_ses.wait_for(2)[1]
    assert (news.source, news.destinations[0]) == ("bounces@example.com", "reader@example.com")
