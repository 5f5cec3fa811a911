"""Management commands (ses_suppression, ses_cleanup), the admin pages, the status API, the
system checks, and worker-side status writes that must never fail a send."""

import datetime
import json
from io import StringIO

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.utils import timezone

from seacucumber import status
from seacucumber.models import MessageStatus, SeenNotification, SuppressedAddress

pytestmark = pytest.mark.django_db


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def record(message_id, days_ago=0, **fields):
    when = timezone.now() - datetime.timedelta(days=days_ago)
    return MessageStatus.objects.create(
        message_id=message_id, sender="sender@example.com", recipients="a@example.com",
        subject=fields.pop("subject", "Hi"), queued_at=when, updated_at=when, **fields)


def test_suppression_command_add_list_remove():
    assert run("ses_suppression", "add", "A@Example.com", "b@example.com",
               "--detail", "asked") == "added 2 address(es)\n"
    assert run("ses_suppression", "add", "a@example.com") == "added 0 address(es)\n"
    listed = json.loads(run("ses_suppression", "list", "--json"))
    assert [(e["address"], e["reason"], e["detail"]) for e in listed] == [
        ("a@example.com", "manual", "asked"), ("b@example.com", "manual", "asked")]
    assert run("ses_suppression", "list").splitlines()[0].startswith("a@example.com\tmanual\t")
    assert run("ses_suppression", "remove", "A@EXAMPLE.COM", "x@example.com") == (
        "removed 1 address(es)\n")
    assert list(SuppressedAddress.objects.values_list("address", flat=True)) == [
        "b@example.com"]
    with pytest.raises(CommandError, match="not addresses"):
        run("ses_suppression", "add", "nobody")


def test_cleanup_keeps_recent_records(settings):
    record("old", days_ago=40)
    record("recent", days_ago=5)
    seen = SeenNotification.objects.create(sns_message_id="sns-old", topic_arn="t")
    SeenNotification.objects.filter(pk=seen.pk).update(
        received_at=timezone.now() - datetime.timedelta(days=40))
    SeenNotification.objects.create(sns_message_id="sns-new", topic_arn="t")
    assert "deleted 1 status record(s) and 1 seen SNS id(s) older than 30 day(s)" in run(
        "ses_cleanup")
    assert list(MessageStatus.objects.values_list("message_id", flat=True)) == ["recent"]
    settings.SEACUCUMBER_STATUS_RETENTION_DAYS = 1
    assert "deleted 1 status record(s)" in run("ses_cleanup")
    record("again", days_ago=3)
    assert "deleted 1 status" in run("ses_cleanup", "--days", "2")
    with pytest.raises(CommandError):
        run("ses_cleanup", "--days", "-1")


def test_status_get_needs_exactly_one_key():
    record("ours", ses_message_id="ses")
    assert status.get(message_id="ours") == status.get(ses_message_id="ses")
    assert status.get(message_id="missing") is None
    with pytest.raises(TypeError):
        status.get()
    with pytest.raises(TypeError):
        status.get(message_id="ours", ses_message_id="ses")


def test_admin_lists_filters_and_searches(admin_client):
    record("first-id", subject="Quarterly report", status="bounced")
    record("second-id", subject="Welcome", status="delivered")
    page = admin_client.get("/admin/seacucumber/messagestatus/", {"q": "quarterly"})
    assert page.status_code == 200
    assert b"first-id" in page.content and b"second-id" not in page.content
    page = admin_client.get("/admin/seacucumber/messagestatus/", {"status__exact": "delivered"})
    assert b"second-id" in page.content and b"first-id" not in page.content
    assert admin_client.get("/admin/seacucumber/messagestatus/add/").status_code == 403
    SuppressedAddress.objects.create(address="x@example.com", reason="bounce")
    page = admin_client.get("/admin/seacucumber/suppressedaddress/", {"q": "x@"})
    assert b"x@example.com" in page.content
    added = admin_client.post("/admin/seacucumber/suppressedaddress/add/",
                              {"address": " Y@Example.COM ", "reason": "manual", "detail": ""})
    assert added.status_code == 302
    assert SuppressedAddress.objects.filter(address="y@example.com").exists()


def test_worker_status_writes_follow_rank_and_never_raise(settings, monkeypatch):
    settings.SEACUCUMBER_TRACK_STATUS = True
    record("m1")
    status.record_sent(message_id="m1", ses_message_id="s1",
                       sender_address="sender@example.com", recipients=["a@example.com"])
    status.record_failed(message_id="m1", code="X", reason="late",
                         sender_address=None, recipients=None)
    assert status.get(message_id="m1").status == "sent"  # failed does not undo sent
    # A send the worker reports before the backend's record exists gets a record of its own.
    status.record_sent(message_id="m2", ses_message_id="s2",
                       sender_address="sender@example.com", recipients=["b@example.com"])
    got = status.get(ses_message_id="s2")
    assert (got.message_id, got.status, got.recipients) == ("m2", "sent", "b@example.com")

    from django.db import DatabaseError

    def broken(*args, **kwargs):
        raise DatabaseError("database is down")

    monkeypatch.setattr(status, "advance", broken)
    status.record_sent(message_id="m3", ses_message_id="s3",
                       sender_address="sender@example.com", recipients=["c@example.com"])
    assert status.get(message_id="m3") is None


def test_system_check_warns_about_empty_topics_and_no_verification(settings):
    settings.SEACUCUMBER_EVENT_TOPIC_ARNS = []
    settings.SEACUCUMBER_VERIFY_EVENT_SIGNATURES = False
    ids = {m.id for m in run_checks()}
    assert {"seacucumber.W001", "seacucumber.W002"} <= ids
    assert "seacucumber.W003" not in ids
    settings.SEACUCUMBER_SNS_ENDPOINT_URL = "http://127.0.0.1:1"
    assert "seacucumber.W003" in {m.id for m in run_checks()}
    del settings.SEACUCUMBER_SNS_ENDPOINT_URL
    settings.SEACUCUMBER_EVENT_TOPIC_ARNS = ["arn:aws:sns:us-east-1:1:t"]
    settings.AWS_SES_VERIFY_EVENT_SIGNATURES = True  # the django-ses name is honoured
    del settings.SEACUCUMBER_VERIFY_EVENT_SIGNATURES
    assert not {m.id for m in run_checks()} & {"seacucumber.W001", "seacucumber.W002"}
