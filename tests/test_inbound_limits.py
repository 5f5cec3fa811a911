"""Received mail is parsed off the request path, within limits, and only from the S3 buckets
allowed (issue 26): the webhook records a receipt notification and answers without reading
the mail; the task (run here with ``apply``, as a worker would, and by a real worker in the
last test) refuses a mail past a limit, recording why. Notifications are signed by the
project's SES emulator and posted to the real webhook view; S3 is moto's server, or a
loopback server that counts the requests it gets."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time

import pytest
from django.contrib.auth.models import User
from django.core import checks
from django.test import Client

from seacucumber.checks import check_inbound_settings
from seacucumber.events import inbound, inbound_task, s3
from seacucumber.exceptions import InboundTooLarge, InvalidNotification
from seacucumber.models import InboundMail, SeenNotification
from tests.fixtures_inbound import BUCKET, answer, post, record, reply_mail

CLAIM_BUCKET = "claim-check-payloads"


def empty_parts(count: int) -> bytes:
    """The issue's mail: ``count`` empty MIME parts (7 bytes each)."""
    return (b"From: a@example.org\r\nTo: support@inbound.example.com\r\nSubject: parts\r\n"
            b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
            + b"--B\r\n\r\n" * count + b"--B--\r\n")


def nested(depth: int) -> bytes:
    """A mail whose MIME parts nest ``depth`` deep (1: no parts): 67 bytes a level."""
    head, tail = b"", b""
    for level in range(depth - 1):
        head += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
        tail = b"\r\n--b%d--\r\n" % level + tail
    return (b"From: a@example.org\r\nTo: support@inbound.example.com\r\nSubject: deep\r\n"
            + head + b"Content-Type: text/plain\r\n\r\nthe bottom" + tail)


def encoded_subject(words: int) -> bytes:
    """A mail whose Subject is ``words`` encoded words (14 bytes each), decoding to 'a's."""
    return (b"From: a@example.org\r\nTo: support@inbound.example.com\r\nSubject: "
            + b" ".join([b"=?utf-8?q?a?="] * words) + b"\r\n\r\nbody\r\n")


def taken_in_by_the_task(sns_message_id: str) -> InboundMail:
    """Run the inbound task for the notification's record, as a worker would; the record
    after it."""
    pending = InboundMail.objects.get(sns_message_id=sns_message_id)
    inbound_task.receive_mail.apply(args=[pending.pk])
    pending.refresh_from_db()
    return pending


# --- the webhook answers without reading the mail; the task refuses past a limit ---------------

@pytest.mark.django_db
def test_a_mail_of_100000_empty_parts_is_recorded_at_once_and_refused_by_the_task(
        inbound_emulator, inbound_s3, inbound_signals):
    """The issue's 0.7 MB mail of 100,000 empty parts (8.6 s of CPU in the request before):
    the webhook answers from the notification alone, the task stops at part 501."""
    raw = empty_parts(100_000)
    result = inbound_emulator.receive(raw, action="S3", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    assert record(result.sns_message_id).state == "pending" and inbound_signals == []
    refused = taken_in_by_the_task(result.sns_message_id)
    assert (refused.state, refused.reason) == (
        "refused", "more than 500 MIME parts (SEACUCUMBER_INBOUND_MAX_PARTS)")
    assert inbound_signals == []
    assert inbound_s3.head_object(Bucket=BUCKET, Key=result.ses_message_id)[
        "ContentLength"] == len(raw)  # kept where SES put it
    assert answer(post(result.notification)) == (200, "duplicate")
    # where an operator sees it: the admin's read-only list of received mail
    admin_user = User.objects.create_superuser("ops", "ops@example.com", "ops-password")
    client = Client()
    client.force_login(admin_user)
    page = client.get("/admin/seacucumber/inboundmail/?state=refused")
    assert page.status_code == 200
    assert "more than 500 MIME parts" in page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("max_depth", [None, 100])  # the default, and the most E043 allows
def test_a_mail_nested_1000_deep_is_recorded_at_once_and_refused_by_the_task(
        inbound_emulator, inbound_signals, settings, max_depth):
    """The issue's 67 KB of 1,000 nested parts (RecursionError, HTTP 500, and the mail
    never taken in, before) is refused at the depth limit, before the parser recurses."""
    if max_depth:
        settings.SEACUCUMBER_INBOUND_MAX_DEPTH = max_depth
    limit = max_depth or 32
    raw = nested(1000)
    assert len(raw) < 68_000
    result = inbound_emulator.receive(raw, encoding="BASE64", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    assert record(result.sns_message_id).state == "pending" and inbound_signals == []
    refused = taken_in_by_the_task(result.sns_message_id)
    assert (refused.state, refused.reason) == (
        "refused", f"MIME parts nested more than {limit} deep (SEACUCUMBER_INBOUND_MAX_DEPTH)")
    assert inbound_signals == []
    # the mail itself is kept in the record (an SNS action's mail is in the notification)
    content = json.loads(refused.notification)["content"]
    assert base64.b64decode(content) == raw


@pytest.mark.django_db
def test_a_subject_of_many_encoded_words_is_refused_past_the_header_limit(
        inbound_emulator, inbound_signals):
    """A Subject of 7,000 encoded words (98 KB; decoding costs more than linear time in a
    header's length) is refused on its raw length, before anything decodes it."""
    result = inbound_emulator.receive(encoded_subject(7_000), encoding="BASE64", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    refused = taken_in_by_the_task(result.sns_message_id)
    assert (refused.state, refused.reason) == (
        "refused", f"header 'Subject' is {7 + 7_000 * 14 - 1} bytes, over 32768 "
                   "(SEACUCUMBER_INBOUND_MAX_HEADER_BYTES)")
    assert inbound_signals == []


@pytest.mark.django_db
def test_a_subject_of_encoded_words_under_the_limit_is_received_whole(
        inbound_emulator, inbound_signals):
    words = (32 * 1024 - len("Subject") + 1) // 14  # as many as the default limit lets in
    result = inbound_emulator.receive(encoded_subject(words), encoding="BASE64", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    assert taken_in_by_the_task(result.sns_message_id).state == "received"
    [(message, _)] = inbound_signals
    assert message.subject == "a" * words


def test_decoding_the_longest_header_allowed_is_bounded():
    """The worst shape measured (an address header of encoded-word names) at the default
    limit decodes in about 0.15 s of this process's CPU time (not wall time, so other
    processes on the machine do not count); the bound is tenfold that. Its cost grows 2.3
    times per doubling of the header, so without the limit a 40 MB S3 mail could spend
    minutes on one header."""
    limit = 32 * 1024
    name = b"=?utf-8?q?a?= <a@b.example>"
    value = b", ".join([name] * ((limit - 4) // (len(name) + 2)))
    message = inbound.parse_bytes(b"To: " + value + b"\r\n\r\n")
    started = time.process_time()
    assert len(message.to) == (limit - 4) // (len(name) + 2)
    assert time.process_time() - started < 2.0


# --- the parser's limits, on the bytes ---------------------------------------------------------

def counted(raw: bytes, pulled: list[int]):
    """``raw`` in 64 KB chunks, counting each one the parser pulls."""
    for start in range(0, len(raw), inbound.CHUNK):
        pulled.append(start)
        yield raw[start:start + inbound.CHUNK]


LIMITS = inbound.Limits(max_bytes=40 * 1024 * 1024, max_parts=500, max_depth=32,
                        max_header_bytes=32 * 1024)


def test_the_parser_stops_at_the_first_part_past_the_limit():
    """Parsing stops inside the first 64 KB chunk (part 501 begins 3.6 KB in), not after the
    0.7 MB: its work is bounded by the limit, not by the mail."""
    pulled: list[int] = []
    with pytest.raises(InboundTooLarge, match="more than 500 MIME parts"):
        inbound.parse_stream(counted(empty_parts(100_000), pulled), LIMITS)
    assert pulled == [0]
    # the limit itself is allowed: the mail and 499 parts
    message = inbound.parse_bytes(empty_parts(499), LIMITS)
    assert len(message.get_payload()) == 499


def test_the_depth_limit_is_exact_and_guards_every_depth_the_parser_would_die_at():
    assert "the bottom" in inbound.parse_bytes(nested(32), LIMITS).as_string()
    with pytest.raises(InboundTooLarge, match="nested more than 32 deep"):
        inbound.parse_bytes(nested(33), LIMITS)
    for depth in (1_000, 10_000):  # deeper than Python's stack: refused, never RecursionError
        with pytest.raises(InboundTooLarge):
            inbound.parse_bytes(nested(depth), LIMITS)


def test_forwarded_mail_counts_as_parts_and_depth():
    forwarded = nested(3)
    for _ in range(20):  # a message/rfc822 adds a level, and so does its own content
        forwarded = (b"Subject: fwd\r\nContent-Type: message/rfc822\r\n\r\n" + forwarded)
    with pytest.raises(InboundTooLarge, match="nested more than 16 deep"):
        inbound.parse_bytes(forwarded, inbound.Limits(10_000_000, 500, 16, 32 * 1024))
    message = inbound.parse_bytes(forwarded, LIMITS)
    [(_, content_type, _)] = message.attachments
    assert content_type == "message/rfc822"


def test_the_size_limit_holds_for_inline_mail_too():
    with pytest.raises(InboundTooLarge, match="SEACUCUMBER_INBOUND_MAX_BYTES"):
        inbound.parse_bytes(reply_mail() + b"x" * 1000,
                            inbound.Limits(len(reply_mail()), 500, 32, 32 * 1024))


# --- S3: only the buckets allowed, never the claim-check bucket -----------------------------

@pytest.fixture
def counting_s3(settings):
    """A loopback 'S3' that counts the requests it gets (and answers each 404)."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.SEACUCUMBER_S3_ENDPOINT_URL = f"http://127.0.0.1:{server.server_address[1]}"
    yield requests
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
@pytest.mark.parametrize("allowed, bucket, why", [
    ((), BUCKET, "SEACUCUMBER_INBOUND_S3_BUCKETS"),  # the default: no S3 receipts
    (["other-bucket"], BUCKET, "SEACUCUMBER_INBOUND_S3_BUCKETS"),
    ([f"{BUCKET}/incoming/"], BUCKET, "SEACUCUMBER_INBOUND_S3_BUCKETS"),  # key not under it
    ([BUCKET, CLAIM_BUCKET], CLAIM_BUCKET, "claim-check bucket"),  # listed, still never
])
def test_an_s3_receipt_outside_the_allowed_buckets_is_refused_unread(
        inbound_emulator, inbound_signals, counting_s3, settings, caplog, allowed, bucket, why):
    settings.SEACUCUMBER_INBOUND_S3_BUCKETS = allowed
    settings.SEACUCUMBER_CLAIM_CHECK_BUCKET = CLAIM_BUCKET
    result = inbound_emulator.receive(reply_mail(), action="S3", bucket=bucket, post=False)
    with caplog.at_level("WARNING", logger="seacucumber.events.handlers"):
        assert answer(post(result.notification)) == (200, "refused")
    refused = record(result.sns_message_id)
    assert refused.state == "refused" and why in refused.reason
    assert refused.reason.startswith(f"s3://{bucket}/{result.ses_message_id} ")
    assert any(refused.reason in r.getMessage() for r in caplog.records)
    assert counting_s3 == [] and inbound_signals == []  # never fetched, never signalled
    assert answer(post(result.notification)) == (200, "duplicate")
    assert SeenNotification.objects.count() == InboundMail.objects.count() == 1


@pytest.mark.django_db
def test_the_task_refuses_a_bucket_no_longer_allowed_without_fetching(
        inbound_emulator, inbound_signals, counting_s3, settings):
    """The bucket is checked again where the mail is fetched: a record queued while the
    setting allowed it is refused, unread, once it no longer does."""
    settings.SEACUCUMBER_INBOUND_S3_BUCKETS = [BUCKET]
    result = inbound_emulator.receive(reply_mail(), action="S3", post=False)
    assert answer(post(result.notification)) == (200, "queued")
    settings.SEACUCUMBER_CLAIM_CHECK_BUCKET = BUCKET  # the bucket is the claim check's now
    refused = taken_in_by_the_task(result.sns_message_id)
    assert refused.state == "refused" and "claim-check bucket" in refused.reason
    assert counting_s3 == [] and inbound_signals == []
    with pytest.raises(InvalidNotification, match="claim-check"):
        s3.fetch_message(BUCKET, result.ses_message_id)
    assert counting_s3 == []


def test_allowed_locations_match_bucket_and_key_prefix(settings):
    settings.SEACUCUMBER_CLAIM_CHECK_BUCKET = None
    settings.SEACUCUMBER_INBOUND_S3_BUCKETS = ["mail", "shared/inbound/"]
    assert s3.refusal("mail", "anything") is None
    assert s3.refusal("shared", "inbound/abc") is None
    assert s3.refusal("shared", "outbound/abc") is not None
    assert s3.refusal("mail-other", "x") is not None  # a bucket name is never a prefix
    settings.SEACUCUMBER_INBOUND_S3_BUCKETS = "mail"  # one string: one bucket
    assert s3.refusal("mail", "x") is None and s3.refusal("m", "x") is not None


# --- system checks -----------------------------------------------------------------------------

def test_listing_the_claim_check_bucket_is_a_system_check_error(settings):
    settings.SEACUCUMBER_CLAIM_CHECK_BUCKET = CLAIM_BUCKET
    settings.SEACUCUMBER_INBOUND_S3_BUCKETS = [BUCKET]
    assert check_inbound_settings() == []
    settings.SEACUCUMBER_INBOUND_S3_BUCKETS = [BUCKET, f"{CLAIM_BUCKET}/inbound/"]
    [error] = check_inbound_settings()
    assert error.id == "seacucumber.E042" and error.level == checks.ERROR
    assert CLAIM_BUCKET in error.msg
    assert error.id in {m.id for m in checks.run_checks()}


@pytest.mark.parametrize("name, value", [
    ("SEACUCUMBER_INBOUND_MAX_PARTS", 0), ("SEACUCUMBER_INBOUND_MAX_DEPTH", 101),
    ("SEACUCUMBER_INBOUND_MAX_HEADER_BYTES", "32k"), ("SEACUCUMBER_INBOUND_MAX_BYTES", None),
])
def test_a_bad_inbound_limit_is_a_system_check_error(settings, name, value):
    setattr(settings, name, value)
    [error] = check_inbound_settings()
    assert error.id == "seacucumber.E043" and name in error.msg


# --- a real worker takes the mail in -------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pipeline", ["redis"], indirect=True)
def test_a_real_worker_takes_in_what_the_webhook_queued(pipeline, start_worker, inbound_emulator):
    """The webhook only records and queues (the mail is not read in the request); a
    ``celery worker`` takes a good mail in and refuses the 1,000-deep one, recording why."""
    good = inbound_emulator.receive(reply_mail(), encoding="BASE64", post=False)
    deep = inbound_emulator.receive(nested(1000), encoding="BASE64", post=False)
    for result in (good, deep):
        assert answer(post(result.notification)) == (200, "queued")
    assert set(InboundMail.objects.values_list("state", flat=True)) == {"pending"}
    start_worker(pipeline.worker_env(), queues=pipeline.queue, concurrency=1)
    deadline = time.monotonic() + 60
    while InboundMail.objects.filter(state="pending").exists():
        assert time.monotonic() < deadline, "the worker did not settle the records"
        time.sleep(0.1)
    assert record(good.sns_message_id).state == "received"
    assert (record(deep.sns_message_id).state, record(deep.sns_message_id).reason) == (
        "refused", "MIME parts nested more than 32 deep (SEACUCUMBER_INBOUND_MAX_DEPTH)")
