"""The webhook view with Django's test client: signed SNS posts applied once, forged and
malformed posts refused with a 4xx and no change, signals, both payload styles."""

import json

import pytest
from django.utils import timezone

from seacucumber import signals, status
from seacucumber.events import handlers
from seacucumber.models import MessageStatus, SeenNotification, SuppressedAddress
from tests.fixtures_events import (
    CERT_URL,
    TOPIC,
    WEBHOOK,
    Signer,
    bounce,
    confirmation,
    notification,
    published,
    ses_event,
)

CERT_PATH = "/" + CERT_URL.rsplit("/", 1)[1]

pytestmark = pytest.mark.django_db


@pytest.fixture
def tracked(settings):
    """Tracking and suppression on, one sent message (SES id "ses-1") to two addresses."""
    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_SUPPRESS_ON_BOUNCE = True
    settings.SEACUCUMBER_SUPPRESS_ON_COMPLAINT = True
    now = timezone.now()
    return MessageStatus.objects.create(
        message_id="ours-1", ses_message_id="ses-1", sender="sender@example.com",
        recipients="a@example.com\nb@example.com", subject="Hi", status="sent",
        queued_at=now, sent_at=now, updated_at=now,
    )


@pytest.fixture
def received():
    """Every SES event signal received, as (name, kwargs)."""
    seen = []
    receivers = []
    for name in ("bounce", "complaint", "delivery", "send", "open", "click", "delivery_delay",
                 "reject", "rendering_failure", "subscription"):
        def receiver(sender, name=name, **kwargs):
            seen.append((name, kwargs))
        receivers.append(receiver)
        getattr(signals, f"{name}_received").connect(receiver)
    yield seen
    for name, receiver in zip(
        ("bounce", "complaint", "delivery", "send", "open", "click", "delivery_delay",
         "reject", "rendering_failure", "subscription"), receivers, strict=True):
        getattr(signals, f"{name}_received").disconnect(receiver)


def state():
    return (
        list(MessageStatus.objects.values_list("message_id", "status", "last_error")),
        list(SuppressedAddress.objects.values_list("address", flat=True)),
        SeenNotification.objects.count(),
    )


@pytest.mark.parametrize("style", ["eventType", "notificationType"])
def test_permanent_bounce_moves_status_and_suppresses(webhook, tracked, received, style):
    message = notification(bounce("ses-1", "A@Example.com", style=style))
    response = webhook(message)
    assert response.status_code == 200, response.content
    record = status.get(ses_message_id="ses-1")
    assert record.status == "bounced"
    assert "Permanent/General" in record.last_error
    assert list(SuppressedAddress.objects.values_list("address", "reason")) == [
        ("a@example.com", "bounce")]
    [(name, kwargs)] = received
    assert name == "bounce"
    assert kwargs["mail_obj"]["messageId"] == "ses-1"
    assert kwargs["event_obj"]["bounceType"] == "Permanent"
    assert kwargs["bounce_obj"] is kwargs["event_obj"]
    assert kwargs["raw_message"]["MessageId"] == message["MessageId"]
    assert kwargs["event_type"] == "Bounce"


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_soft_bounce_is_noted_without_a_final_status_or_suppression(webhook, tracked, received,
                                                                    bounce_type):
    assert webhook(notification(bounce("ses-1", "a@example.com",
                                       bounce_type=bounce_type))).status_code == 200
    record = status.get(message_id="ours-1")
    assert record.status == "sent"
    assert record.last_error.startswith(f"Bounce {bounce_type}/General: ")
    assert record.updated_at > tracked.updated_at
    assert not SuppressedAddress.objects.exists()
    assert [(name, kwargs["bounce_obj"]["bounceType"]) for name, kwargs in received] == [
        ("bounce", bounce_type)]  # receivers still hear of it


def test_soft_bounce_then_delivery_is_delivered(webhook, tracked):
    soft = bounce("ses-1", "a@example.com", bounce_type="Transient")
    assert webhook(notification(soft)).status_code == 200
    assert webhook(notification(ses_event("Delivery", "ses-1"))).status_code == 200
    record = status.get(message_id="ours-1")
    assert record.status == "delivered"
    assert "Transient" in record.last_error  # the soft bounce stays on record
    assert not SuppressedAddress.objects.exists()


def test_soft_bounce_then_permanent_bounce_is_bounced(webhook, tracked):
    assert webhook(notification(bounce("ses-1", "a@example.com",
                                       bounce_type="Transient"))).status_code == 200
    assert webhook(notification(bounce("ses-1", "a@example.com"))).status_code == 200
    record = status.get(message_id="ours-1")
    assert record.status == "bounced" and "Permanent/General" in record.last_error
    assert list(SuppressedAddress.objects.values_list("address", flat=True)) == ["a@example.com"]


def test_late_soft_bounce_or_delay_does_not_overwrite_a_complaint(webhook, tracked):
    complaint = ses_event("Complaint", "ses-1", complaintFeedbackType="abuse",
                          complainedRecipients=[{"emailAddress": "b@example.com"}])
    assert webhook(notification(complaint)).status_code == 200
    assert webhook(notification(bounce("ses-1", "a@example.com",
                                       bounce_type="Undetermined"))).status_code == 200
    assert webhook(notification(ses_event("DeliveryDelay", "ses-1",
                                          delayType="MailboxFull"))).status_code == 200
    record = status.get(message_id="ours-1")
    assert (record.status, record.last_error) == ("complained", "Complaint: abuse")


def test_suppression_settings_off_add_nothing(webhook, tracked, settings):
    settings.SEACUCUMBER_SUPPRESS_ON_BOUNCE = False
    settings.SEACUCUMBER_SUPPRESS_ON_COMPLAINT = False
    complaint = ses_event("Complaint", "ses-1", complainedRecipients=[
        {"emailAddress": "b@example.com"}])
    assert webhook(notification(bounce("ses-1", "a@example.com"))).status_code == 200
    assert webhook(notification(complaint)).status_code == 200
    assert not SuppressedAddress.objects.exists()


def test_complaint_after_delivery(webhook, tracked, received):
    assert webhook(notification(ses_event("Delivery", "ses-1", recipients=["a@example.com"]))
                   ).status_code == 200
    assert status.get(ses_message_id="ses-1").status == "delivered"
    complaint = ses_event("Complaint", "ses-1", complaintFeedbackType="abuse",
                          complainedRecipients=[{"emailAddress": "b@example.com"}])
    assert webhook(notification(complaint, subject="SES")).status_code == 200
    record = status.get(ses_message_id="ses-1")
    assert (record.status, record.last_error) == ("complained", "Complaint: abuse")
    assert list(SuppressedAddress.objects.values_list("address", "reason")) == [
        ("b@example.com", "complaint")]
    # a late delivery notification does not undo the complaint
    assert webhook(notification(ses_event("Delivery", "ses-1"))).status_code == 200
    assert status.get(ses_message_id="ses-1").status == "complained"
    assert [name for name, _ in received] == ["delivery", "complaint", "delivery"]
    assert received[1][1]["complaint_obj"]["complaintFeedbackType"] == "abuse"


@pytest.mark.parametrize("kind,signal,expected", [
    ("Send", "send", "sent"),
    ("Open", "open", "sent"),
    ("Click", "click", "sent"),
    ("DeliveryDelay", "delivery_delay", "sent"),
    ("Reject", "reject", "failed"),
    ("Rendering Failure", "rendering_failure", "failed"),
    ("Subscription", "subscription", "sent"),
])
def test_every_event_type_sends_its_signal(webhook, tracked, received, kind, signal, expected):
    assert webhook(notification(ses_event(kind, "ses-1", reason="Bad content",
                                          delayType="MailboxFull"))).status_code == 200
    [(name, kwargs)] = received
    assert name == signal and kwargs["event_type"] == kind
    assert kwargs["event_obj"]["reason"] == "Bad content"
    assert status.get(ses_message_id="ses-1").status == expected


def test_duplicate_sns_delivery_is_applied_once(webhook, tracked, received, signer):
    message = signer.sign(notification(bounce("ses-1", "a@example.com")))
    first = webhook(json.dumps(message))
    again = webhook(json.dumps(message))
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.content == b"duplicate\n"
    assert len(received) == 1
    assert SeenNotification.objects.count() == 1


def test_unknown_event_types_and_non_ses_messages_are_tolerated(webhook, tracked, received):
    before = state()[:2]
    unknown = webhook(notification({"eventType": "Teleport", "mail": {"messageId": "ses-1"}}))
    not_json = webhook(notification("hello from the SNS console"))
    assert (unknown.status_code, not_json.status_code) == (200, 200)
    assert received == []
    assert state()[:2] == before


def _forged(signer):
    """(name, body or message, sign) triples of posts the webhook must refuse."""
    good = notification(bounce("ses-1", "a@example.com"))
    signed = signer.sign(good)
    other = Signer()
    return [
        ("bad signature", {**signed, "Message": signed["Message"].replace("a@", "b@")}, False),
        ("other key", other.sign(good), False),
        ("version 3", {**signed, "SignatureVersion": "3"}, False),
        ("no signature", {k: v for k, v in signed.items() if k != "Signature"}, False),
        ("cert on S3", signer.sign(good, cert_url=(
            "https://sns-certs.s3.amazonaws.com/SimpleNotificationService-test.pem")), False),
        ("cert on other amazonaws host", signer.sign(good, cert_url=(
            "https://sns.evil.amazonaws.com/SimpleNotificationService-test.pem")), False),
        ("cert in a made-up region", signer.sign(good, cert_url=(
            "https://sns.zz-evil-1.amazonaws.com/SimpleNotificationService-test.pem")), False),
        ("cert over http", signer.sign(good, cert_url=CERT_URL.replace("https", "http")), False),
        ("cert with user info", signer.sign(good, cert_url=CERT_URL.replace(
            "https://", "https://evil.com@")), False),
        ("unknown topic", notification(bounce("ses-1", "a@example.com"),
                                       topic="arn:aws:sns:us-east-1:999:evil"), True),
        ("malformed JSON", b'{"Type": "Notification", ', False),
        ("not an object", b"[1, 2]", False),
        ("not UTF-8", b"\xff\xfe{}", False),
        ("empty", b"", False),
        ("missing MessageId", {k: v for k, v in signed.items() if k != "MessageId"}, False),
        ("Message not a string", {**signed, "Message": {"eventType": "Bounce"}}, False),
        ("wrong Type", {**signed, "Type": "Notice"}, False),
        ("huge", b'{"Type": "Notification", "x": "' + b"x" * 600_000 + b'"}', False),
    ]


def test_forged_and_malformed_posts_get_4xx_and_change_nothing(webhook, tracked, received,
                                                               signer, fake_sns):
    before = state()
    answers = {}
    for name, body, sign in _forged(signer):
        if isinstance(body, dict) and not sign:
            body = json.dumps(body).encode()
        answers[name] = webhook(body).status_code
    assert all(400 <= code < 500 for code in answers.values()), answers
    assert answers["huge"] == 413 and answers["unknown topic"] == 403
    assert answers["bad signature"] == 403 and answers["malformed JSON"] == 400
    assert state() == before
    assert received == []
    assert fake_sns.requests == []  # no certificate was fetched for any of them


def test_made_up_region_is_refused_with_403_not_503(webhook, tracked, signer, settings):
    """A forged post whose SigningCertURL names a region SNS does not run in is refused before
    any lookup: a fetch would fail (no such host, here a closed port) and answer 503."""
    from seacucumber.testing.processes import free_port

    settings.SEACUCUMBER_SNS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    before = state()
    for cert_url in ("https://sns.zz-evil-1.amazonaws.com/SimpleNotificationService-x.pem",
                     "https://sns.cn-north-1.amazonaws.com/SimpleNotificationService-x.pem"):
        forged = signer.sign(notification(bounce("ses-1", "a@example.com")), cert_url=cert_url)
        assert webhook(json.dumps(forged)).status_code == 403
        confirm = signer.sign(confirmation(subscribe_url=(
            "https://sns.zz-evil-1.amazonaws.com/?Action=ConfirmSubscription"
            f"&TopicArn={TOPIC}&Token=t")))
        assert webhook(json.dumps(confirm)).status_code == 403
    assert state() == before


def test_certificate_host_5xx_answers_503_then_the_retry_is_applied(webhook, tracked, signer,
                                                                    fake_sns, settings,
                                                                    received):
    settings.SEACUCUMBER_SNS_CERTIFICATES = {}  # fetched from the (fake) SNS host
    fake_sns.files[CERT_PATH] = signer.pem
    fake_sns.codes[CERT_PATH] = 503
    message = json.dumps(signer.sign(notification(bounce("ses-1", "a@example.com"))))
    before = state()
    assert webhook(message).status_code == 503  # SNS retries a 5xx, never a 4xx
    assert state() == before and received == []
    fake_sns.codes[CERT_PATH] = 404  # a certificate that is not there: the post is refused
    assert webhook(message).status_code == 400
    del fake_sns.codes[CERT_PATH]
    assert webhook(message).status_code == 200  # SNS's retry
    assert status.get(message_id="ours-1").status == "bounced"
    assert len(received) == 1


@pytest.fixture
def in_flight(settings):
    """Tracking on; a send the worker has made but not yet recorded: ``queued``, no SES
    MessageId, the sender and recipient ``ses_event`` mail objects carry."""
    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_SUPPRESS_ON_BOUNCE = True
    now = timezone.now()
    return MessageStatus.objects.create(
        message_id="ours-2", sender="Sender@example.com",
        recipients="cc@example.com\nTo@Example.com", subject="Hi", status="queued",
        queued_at=now, updated_at=now,
    )


def test_event_before_the_worker_stored_the_ses_id_is_retried_until_it_is(
        webhook, in_flight, received, signer):
    message = signer.sign({**notification(ses_event("Delivery", "ses-2")),
                           "Timestamp": published()})
    first = webhook(json.dumps(message))
    assert (first.status_code, first.content) == (503, b"not yet\n")
    assert not SeenNotification.objects.exists()  # so SNS's retry is not a "duplicate"
    assert received == []
    status.record_sent(message_id="ours-2", ses_message_id="ses-2",
                       sender_address="sender@example.com", recipients=["to@example.com"])
    again = webhook(json.dumps(message))  # SNS's retry
    assert (again.status_code, again.content) == (200, b"applied\n")
    assert status.get(message_id="ours-2").status == "delivered"
    assert [name for name, _ in received] == ["delivery"]


def test_an_event_with_our_id_tag_is_applied_at_once(webhook, in_flight, received, signer):
    """Sends carry our id as the ``seacucumber-id`` message tag, which SES copies into the
    event: the event finds its record by it, even before the worker stored SES's id (no
    503, no waiting), and the record learns SES's id from it."""
    event = ses_event("Delivery", "ses-2")
    event["mail"]["tags"] = {"seacucumber-id": ["ours-2"], "seacucumber-lane": ["bulk"],
                             "ses:configuration-set": ["news"]}
    message = signer.sign({**notification(event), "Timestamp": published()})
    answer = webhook(json.dumps(message))
    assert (answer.status_code, answer.content) == (200, b"applied\n")
    record = status.get(message_id="ours-2")
    assert (record.status, record.ses_message_id) == ("delivered", "ses-2")
    assert [name for name, _ in received] == ["delivery"]


def test_waiting_for_the_ses_id_ends_so_no_event_is_lost(webhook, in_flight, received):
    """Past the grace (shorter than SNS's retry span) the event is applied without a record:
    signal and suppression happen, the record stays as it is."""
    old = {**notification(bounce("ses-2", "to@example.com")),
           "Timestamp": published(handlers.AWAIT_SEND_SECONDS + 5)}
    assert webhook(old).status_code == 200
    assert [name for name, _ in received] == ["bounce"]
    assert list(SuppressedAddress.objects.values_list("address", flat=True)) == [
        "to@example.com"]
    assert status.get(message_id="ours-2").status == "queued"
    assert SeenNotification.objects.count() == 1


@pytest.mark.parametrize("mail", [
    {"source": "other@example.com"},  # another sender
    {"destination": ["someone@example.com"]},  # another recipient
    {"destination": ["o@example.com"]},  # only a substring of one of ours
    {"source": None},
    {"destination": "to@example.com"},  # malformed
])
def test_fresh_events_for_mail_that_is_not_ours_are_applied_at_once(webhook, in_flight,
                                                                    received, mail):
    event = ses_event("Delivery", "ses-3")
    event["mail"].update(mail)
    assert webhook({**notification(event), "Timestamp": published()}).status_code == 200
    assert [name for name, _ in received] == ["delivery"]
    assert SeenNotification.objects.count() == 1


def test_no_waiting_once_the_send_is_recorded_or_with_tracking_off(webhook, in_flight,
                                                                   received, settings):
    in_flight.status, in_flight.ses_message_id = "failed", None  # e.g. SES refused it
    in_flight.save()
    assert webhook({**notification(ses_event("Delivery", "ses-2")),
                    "Timestamp": published()}).status_code == 200
    in_flight.status = "queued"
    in_flight.save()
    settings.SEACUCUMBER_TRACK_STATUS = False
    assert webhook({**notification(ses_event("Delivery", "ses-2")),
                    "Timestamp": published()}).status_code == 200
    assert [name for name, _ in received] == ["delivery", "delivery"]


def test_header_type_must_match_body(webhook, tracked):
    response = webhook(notification(bounce("ses-1", "a@example.com")),
                       headers={"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert response.status_code == 400
    assert status.get(message_id="ours-1").status == "sent"


def test_empty_topic_allowlist_refuses_everything(webhook, tracked, settings):
    settings.SEACUCUMBER_EVENT_TOPIC_ARNS = []
    assert webhook(notification(bounce("ses-1", "a@example.com"))).status_code == 403
    assert status.get(message_id="ours-1").status == "sent"


def test_topic_setting_as_one_string_is_not_a_substring_match(webhook, tracked, settings):
    settings.SEACUCUMBER_EVENT_TOPIC_ARNS = TOPIC + "-and-more"
    assert webhook(notification(bounce("ses-1", "a@example.com"))).status_code == 403
    settings.SEACUCUMBER_EVENT_TOPIC_ARNS = TOPIC
    assert webhook(notification(bounce("ses-1", "a@example.com"))).status_code == 200


def test_get_is_not_allowed(client):
    assert client.get(WEBHOOK).status_code == 405


def test_verification_off_still_checks_the_topic(webhook, tracked, settings):
    settings.SEACUCUMBER_VERIFY_EVENT_SIGNATURES = False
    assert webhook(notification(ses_event("Delivery", "ses-1")), sign=False).status_code == 200
    assert status.get(message_id="ours-1").status == "delivered"
    other = notification(bounce("ses-1", "a@example.com"), topic="arn:aws:sns:us-east-1:9:x")
    assert webhook(other, sign=False).status_code == 403


def test_handler_error_rolls_back_and_answers_500_so_sns_retries(webhook, tracked):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    message = notification(bounce("ses-1", "a@example.com"))
    signals.bounce_received.connect(broken)
    try:
        assert webhook(message).status_code == 500
    finally:
        signals.bounce_received.disconnect(broken)
    assert status.get(message_id="ours-1").status == "sent"
    assert not SuppressedAddress.objects.exists() and not SeenNotification.objects.exists()
    assert webhook(message).status_code == 200  # SNS's retry is applied
    assert status.get(message_id="ours-1").status == "bounced"


def test_subscription_is_confirmed_for_an_allowed_topic(webhook, fake_sns):
    message = confirmation()
    assert webhook(message).status_code == 200
    [request] = fake_sns.requests
    assert request.startswith("/?Action=ConfirmSubscription")
    assert f"Token={message['Token']}" in request


def test_subscription_refusals(webhook, fake_sns, settings):
    other_topic = confirmation(topic="arn:aws:sns:us-east-1:999:evil")
    off_host = confirmation(subscribe_url=(
        f"https://evil.example.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=t"))
    wrong_topic_in_url = confirmation(subscribe_url=(
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
        "&TopicArn=arn:aws:sns:us-east-1:999:evil&Token=t"))
    assert webhook(other_topic).status_code == 403
    assert webhook(off_host).status_code == 403
    assert webhook(wrong_topic_in_url).status_code == 403
    assert webhook(confirmation(), sign=False).status_code == 403
    settings.SEACUCUMBER_CONFIRM_SUBSCRIPTIONS = False
    assert webhook(confirmation()).status_code == 200
    assert fake_sns.requests == []


def test_subscription_confirmation_unreachable_answers_503(webhook, settings):
    from seacucumber.testing.processes import free_port

    settings.SEACUCUMBER_SNS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    assert webhook(confirmation()).status_code == 503


def test_unsubscribe_confirmation_is_noted(webhook, fake_sns):
    assert webhook(confirmation(kind="UnsubscribeConfirmation")).status_code == 200
    assert fake_sns.requests == []


# --- JSON of any shape: 400, never a 500 with a traceback ----------------------------------------

@pytest.mark.parametrize("body", [
    b"[" * 200_000,  # json raises RecursionError, not ValueError, for this
    b'{"a":' * 100_000,
    b'{"Type": "Notification", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    b"1" * 5_000,  # over Python's int digit limit: ValueError of another kind
    b"null", b'"a string"', b"42", b"[]",
])
def test_any_json_error_or_non_object_is_400_without_a_traceback(webhook, tracked, caplog,
                                                                   body):
    before = state()
    with caplog.at_level("WARNING"):
        response = webhook(body)
    assert response.status_code == 400
    assert state() == before
    assert all(r.exc_info is None for r in caplog.records)  # no traceback anywhere
    [line] = [r.getMessage() for r in caplog.records if r.name == "seacucumber.events.views"]
    assert line.startswith("SNS post refused (400): body is ")


def test_a_signed_notification_whose_message_nests_too_deeply_is_ignored(webhook, tracked,
                                                                          received, caplog):
    """An authentic notification carrying no SES event we can read is tolerated (200,
    "ignored"), as one with a Message that is not JSON is."""
    before = state()[:2]
    with caplog.at_level("WARNING"):
        response = webhook(notification("[" * 200_000))
    assert (response.status_code, response.content) == (200, b"ignored\n")
    assert "nested too deeply" in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
    assert state()[:2] == before and received == []


# --- SNS freshness: a replay is refused however long ago the original came ---------------------

def test_a_notification_signed_years_ago_is_refused_and_changes_nothing(webhook, tracked,
                                                                         received, caplog):
    old = {**notification(bounce("ses-1", "a@example.com")),
           "Timestamp": "2019-05-01T10:00:00.000Z"}
    before = state()
    with caplog.at_level("WARNING"):
        response = webhook(old)
    assert response.status_code == 400
    assert state() == before and received == []
    assert "over SEACUCUMBER_SNS_MAX_AGE (3600 s): a replay" in caplog.text


@pytest.mark.parametrize(("seconds_ago", "expected"), [
    (3600 - 120, 200),  # older than any SNS retry would be, inside the limit
    (3600 + 120, 400),
    (-120, 200),  # a sender's clock a little ahead: within SEACUCUMBER_SNS_CLOCK_SKEW
    (-600, 400),
])
def test_timestamp_window(webhook, tracked, seconds_ago, expected):
    message = {**notification(bounce("ses-1", "a@example.com")),
               "Timestamp": published(seconds_ago)}
    assert webhook(message).status_code == expected


def test_confirmations_are_checked_for_age_too(webhook, fake_sns):
    stale = {**confirmation(), "Timestamp": published(2 * 3600)}
    assert webhook(stale).status_code == 400
    assert fake_sns.requests == []  # no subscription confirmed from a replay


def test_freshness_holds_with_signature_checks_off(webhook, tracked, settings):
    settings.SEACUCUMBER_VERIFY_EVENT_SIGNATURES = False
    old = {**notification(bounce("ses-1", "a@example.com")),
           "Timestamp": "2019-05-01T10:00:00.000Z"}
    assert webhook(old, sign=False).status_code == 400


@pytest.mark.parametrize("stamp", ["", "yesterday", "2026-12-07T10:00:00", "2026-13-01T00:00Z"])
def test_a_timestamp_that_is_no_time_is_refused(webhook, tracked, stamp):
    message = {**notification(bounce("ses-1", "a@example.com")), "Timestamp": stamp}
    assert webhook(message).status_code == 400


def test_a_replay_after_cleanup_does_not_resuppress_a_removed_address(webhook, tracked,
                                                                      received, settings,
                                                                      signer):
    """The finding: a bounce applied, the operator removed the address from the suppression
    list, ``ses_cleanup`` pruned the seen ids, the same signed post came again and suppressed
    the address again. Now the seen id outlives any ``--days`` while the message is fresh,
    and once it is pruned the message is too old to pass."""
    from django.core.management import call_command

    message = signer.sign({**notification(bounce("ses-1", "a@example.com")),
                           "Timestamp": published(1800)})
    assert webhook(json.dumps(message)).content == b"applied\n"
    SuppressedAddress.objects.filter(address="a@example.com").delete()  # the operator

    call_command("ses_cleanup", "--days", "0", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert SeenNotification.objects.filter(sns_message_id=message["MessageId"]).exists()
    assert webhook(json.dumps(message)).content == b"duplicate\n"

    # later: the seen id is past the replay window and pruned; the message is past its age
    # (a shorter SEACUCUMBER_SNS_MAX_AGE stands in for the hour going by)
    settings.SEACUCUMBER_SNS_MAX_AGE = 1000
    SeenNotification.objects.update(received_at=timezone.now() - timezone.timedelta(hours=2))
    call_command("ses_cleanup", "--days", "0", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert not SeenNotification.objects.exists()
    assert webhook(json.dumps(message)).status_code == 400
    assert not SuppressedAddress.objects.filter(address="a@example.com").exists()
    assert len(received) == 1
