"""django-anymail's message attributes through ``SESBackend`` (tasks run eagerly, SES at the
project's emulator), ``anymail_status``, and SES events as anymail's tracking events."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from email.utils import parseaddr

import pytest
from anymail.message import AnymailMessage
from django.core import mail
from django.core.mail import EmailMessage
from django.utils import timezone

from seacucumber import payload, signals
from seacucumber.anymail.status import AnymailRecipientStatus, AnymailStatus
from seacucumber.exceptions import InvalidMessage, MalformedPayload, UnsupportedFeature
from seacucumber.payload import OutboundSend, build_sends
from tests.fixtures_events import bounce, notification, ses_event

SENDER = "sender@example.com"


def headers_of(accepted) -> dict[str, list[str]]:
    parsed = message_from_bytes(accepted.raw)
    return {name: parsed.get_all(name, []) for name in ("X-Tag", "X-Metadata")}


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_anymail_message_arrives_with_its_tags_metadata_and_envelope_sender(
        ses_emulator, eager, settings, v2):
    settings.USE_SES_V2 = v2
    settings.AWS_SES_CONFIGURATION_SET = "tracking"
    message = AnymailMessage(
        "Hi", "Body", f"Shop <{SENDER}>", ["a@example.com", "b@example.com"],
        tags=["welcome", "onboarding step 1"],
        metadata={"user_id": 42, "plan": "free-tier", "note": "not a tag: spaces"},
        envelope_sender="bounces@example.com",
    )
    assert mail.get_connection().send_messages([message]) == 1
    [accepted] = ses_emulator.messages()
    assert headers_of(accepted) == {"X-Tag": ["welcome", "onboarding step 1"],
                                    "X-Metadata": [json.dumps(message.metadata)]}
    [our_id] = message.seacucumber_ids
    # metadata items that fit SES's tag rules are message tags too; ours stay
    assert accepted.tags == {"user_id": "42", "plan": "free-tier", "seacucumber-id": our_id,
                             "seacucumber-lane": "transactional"}
    # v1 Source; v2 has no FromEmailAddress (as anymail: SES reads the From header)
    assert parseaddr(accepted.source)[1] == (SENDER if v2 else "bounces@example.com")
    assert accepted.options.get("FeedbackForwardingEmailAddress") == (
        "bounces@example.com" if v2 else None)
    assert accepted.options["ConfigurationSetName"] == "tracking"
    status = message.anymail_status
    assert (status.message_id, status.status, status.esp_response) == (our_id, {"queued"}, None)
    assert {a: (s.message_id, s.status) for a, s in status.recipients.items()} == {
        "a@example.com": (our_id, "queued"), "b@example.com": (our_id, "queued")}


def test_attributes_on_a_plain_email_message_are_read_by_name(ses_emulator, eager):
    message = EmailMessage("Hi", "Body", SENDER, ["a@example.com"])
    message.tags = ["reset"]
    assert not hasattr(message, "anymail_status")
    assert mail.get_connection().send_messages([message]) == 1
    [accepted] = ses_emulator.messages()
    assert headers_of(accepted)["X-Tag"] == ["reset"]
    assert message.anymail_status.status == {"queued"}
    plain = EmailMessage("Hi", "Body", SENDER, ["a@example.com"])
    mail.get_connection().send_messages([plain])
    assert not hasattr(plain, "anymail_status")  # nothing added to mail that asked nothing


@pytest.mark.parametrize(("attributes", "words"), [
    ({"template_id": "welcome"}, "template_id: messages are sent as raw MIME"),
    ({"merge_data": {"a@example.com": {"name": "A"}}}, "merge_data"),
    ({"merge_global_data": {"x": 1}}, "merge_global_data"),
    ({"track_clicks": True}, "track_clicks=True without a configuration set"),
    ({"esp_extra": {"MessageDsn": {}}},
     r"esp_extra\['MessageDsn'\]: not a parameter SES v1 SendRawEmail takes"),
    ({"esp_extra": {"EmailTags": []}}, r"a parameter of v2 SendEmail \(USE_SES_V2\)"),
    ({"esp_extra": {"Destination": {}}}, "the recipients are the message's"),
], ids=["template", "merge_data", "merge_global", "track_clicks", "v1-unknown", "v2-name",
        "destination"])
def test_unsupported_attributes_are_refused_at_send_messages(
        ses_emulator, eager, attributes, words):
    message = AnymailMessage("Hi", "Body", SENDER, ["a@example.com"], **attributes)
    with pytest.raises(UnsupportedFeature, match=words) as refused:
        mail.get_connection().send_messages([message])
    assert isinstance(refused.value, InvalidMessage | ValueError)
    assert "SEACUCUMBER_IGNORE_UNSUPPORTED_FEATURES" in str(refused.value)
    assert ses_emulator.messages() == [] and not hasattr(message, "seacucumber_ids")


@pytest.mark.parametrize("setting", [
    {"SEACUCUMBER_IGNORE_UNSUPPORTED_FEATURES": True},
    {"ANYMAIL": {"IGNORE_UNSUPPORTED_FEATURES": True}},
    {"ANYMAIL_IGNORE_UNSUPPORTED_FEATURES": True},
], ids=["ours", "anymail-dict", "anymail-setting"])
def test_ignoring_unsupported_features_sends_without_them(ses_emulator, eager, settings,
                                                           setting):
    for name, value in setting.items():
        setattr(settings, name, value)
    message = AnymailMessage("Hi", "Body", SENDER, ["a@example.com"], template_id="welcome",
                             tags=["kept"], track_opens=True)
    assert mail.get_connection().send_messages([message]) == 1
    [accepted] = ses_emulator.messages()
    assert headers_of(accepted)["X-Tag"] == ["kept"]


def test_our_setting_off_wins_over_anymails(ses_emulator, eager, settings):
    settings.ANYMAIL = {"IGNORE_UNSUPPORTED_FEATURES": True}
    settings.SEACUCUMBER_IGNORE_UNSUPPORTED_FEATURES = False
    with pytest.raises(UnsupportedFeature):
        build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"], template_id="x"))


def test_tracking_needs_the_configuration_set_it_is_done_by(settings):
    settings.AWS_SES_CONFIGURATION_SET = "tracking"
    [send] = build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"],
                                        track_clicks=True, track_opens=True))
    assert send.options["configuration_set"] == "tracking"
    with pytest.raises(UnsupportedFeature, match="track_opens=False with configuration set"):
        build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"], track_opens=False))


def test_esp_extra_sets_what_our_options_set(ses_emulator, eager, settings):
    settings.USE_SES_V2 = True
    settings.AWS_SES_CONFIGURATION_SET = "default-set"
    arn = "arn:aws:ses:us-east-1:123456789012:identity/example.com"
    message = AnymailMessage("Hi", "B", SENDER, ["a@example.com"], metadata={"k": "v"},
                             esp_extra={"ConfigurationSetName": "marketing",
                                        "EmailTags": [{"Name": "campaign", "Value": "may"}],
                                        "FromEmailAddressIdentityArn": arn})
    assert mail.get_connection(tags={"app": "shop"}).send_messages([message]) == 1
    [accepted] = ses_emulator.messages()
    assert accepted.options == {"ConfigurationSetName": "marketing",
                                "FromEmailAddressIdentityArn": arn}
    assert {k: v for k, v in accepted.tags.items() if not k.startswith("seacucumber")} == {
        "app": "shop", "k": "v", "campaign": "may"}  # the mailer's, the metadata's, extra's


def test_esp_extra_values_are_checked_as_our_options_are(settings):
    with pytest.raises(InvalidMessage, match="configuration set name"):
        build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"],
                                   esp_extra={"ConfigurationSetName": "no spaces allowed"}))
    with pytest.raises(InvalidMessage, match="tag names and values"):
        build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"],
                                   esp_extra={"Tags": [{"Name": "a b", "Value": "c"}]}))


def test_anymails_message_tag_name_setting(settings):
    settings.ANYMAIL = {"AMAZON_SES_MESSAGE_TAG_NAME": "Type"}
    [send] = build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"], tags=["Welcome"]))
    assert send.options["tags"] == {"Type": "Welcome"}
    with pytest.raises(UnsupportedFeature, match="multiple tags with the "
                                                 "AMAZON_SES_MESSAGE_TAG_NAME setting"):
        build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"], tags=["a", "b"]))


def test_merge_metadata_gives_each_recipient_its_own_send(ses_emulator, eager):
    message = AnymailMessage("Hi", "B", SENDER, ["a@example.com", "b@example.com"],
                             cc=["c@example.com"], metadata={"campaign": "may"},
                             merge_metadata={"a@example.com": {"order": 1},
                                             "B@example.com": {"order": 2}})
    assert mail.get_connection().send_messages([message]) == 1
    assert len(message.seacucumber_ids) == 3
    got = {tuple(m.destinations): headers_of(m)["X-Metadata"] for m in ses_emulator.messages()}
    assert got == {("a@example.com",): ['{"campaign": "may", "order": 1}'],
                   ("b@example.com",): ['{"campaign": "may", "order": 2}'],
                   ("c@example.com",): ['{"campaign": "may"}']}
    assert message.anymail_status.message_id == set(message.seacucumber_ids)


def test_non_ascii_and_long_values_are_encoded_and_folded(ses_emulator, eager):
    metadata = {"note": "Grüße " + "x" * 2000, "list": list(range(200))}
    message = AnymailMessage("Hi", "B", SENDER, ["a@example.com"], tags=["Grüße ☕"],
                             metadata=metadata)
    assert mail.get_connection().send_messages([message]) == 1
    [accepted] = ses_emulator.messages()
    parsed = message_from_bytes(accepted.raw, policy=policy.default)
    assert parsed["X-Tag"] == "Grüße ☕"
    assert json.loads(parsed["X-Metadata"]) == metadata
    assert max(map(len, accepted.raw.split(b"\r\n\r\n")[0].split(b"\r\n"))) <= 78


def test_tags_must_be_a_list():
    with pytest.raises(InvalidMessage, match="tags must be a list"):
        build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"], tags="welcome"))


def test_a_tag_with_a_line_break_is_header_injection():
    with pytest.raises(InvalidMessage, match="line break"):
        build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"],
                                   tags=["ok\r\nBcc: evil@example.com"]))


def test_an_old_worker_refuses_a_payload_whose_return_path_it_would_not_forward(
        monkeypatch, settings):
    """Only ``envelope_sender`` writes version 4: a worker of the release before reads
    versions 1 to 3, so it fails such a send with its reason (recorded), never sends it
    without the feedback address; every other anymail attribute stays readable by it."""
    [tagged] = build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"], tags=["t"],
                                          metadata={"k": "v"}))
    [enveloped] = build_sends(AnymailMessage("Hi", "B", SENDER, ["a@example.com"],
                                             envelope_sender="bounces@example.com"))
    assert (tagged.to_json()["v"], enveloped.to_json()["v"]) == (3, 4)
    assert OutboundSend.from_json(enveloped.to_json()) == enveloped
    monkeypatch.setattr(payload, "PAYLOAD_VERSIONS", (1, 2, 3))  # the release before
    assert OutboundSend.from_json(tagged.to_json()) == tagged
    with pytest.raises(MalformedPayload, match="unknown payload version 4"):
        OutboundSend.from_json(enveloped.to_json())


def test_refresh_moves_anymail_status_on_from_the_status_record(ses_emulator, eager, settings,
                                                                 db):
    settings.SEACUCUMBER_TRACK_STATUS = True
    message = AnymailMessage("Hi", "B", SENDER, ["a@example.com"], tags=["t"])
    mail.get_connection().send_messages([message])
    assert message.anymail_status.status == {"queued"}  # as send_messages left it
    assert message.anymail_status.refresh() is message.anymail_status
    assert message.anymail_status.status == {"sent"}
    assert message.anymail_status.recipients["a@example.com"].status == "sent"


def test_refresh_without_a_record_keeps_the_status(db):
    status = AnymailStatus()
    status.set_recipient_status({"a@example.com": AnymailRecipientStatus("no-such", "queued")})
    assert status.refresh().status == {"queued"}
    assert status.message_id == "no-such"


# --- SES events as anymail's tracking events ------------------------------------------------


@pytest.fixture
def tracked(webhook, settings, db, django_capture_on_commit_callbacks):
    """Receivers of ``signals.tracking``; the webhook posts, on-commit callbacks run."""
    settings.SEACUCUMBER_TRACK_STATUS = True
    got: list = []

    def receiver(sender, event, esp_name, **kwargs):
        got.append((event, esp_name))

    signals.tracking.connect(receiver)

    def post(event: dict) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return webhook(notification(event)).status_code

    try:
        yield post, got
    finally:
        signals.tracking.disconnect(receiver)


def with_headers(event: dict, our_id: str | None = None) -> dict:
    event["mail"]["headers"] = [{"name": "X-Tag", "value": "welcome"},
                                {"name": "X-Metadata", "value": '{"user_id": 42}'}]
    if our_id:
        event["mail"]["tags"] = {"seacucumber-id": [our_id]}
    return event


def test_a_bounce_is_one_anymail_event_per_bounced_recipient(tracked):
    post, got = tracked
    event = with_headers(bounce("ses-1", "a@example.com", "b@example.com"), our_id="ours-1")
    assert post(event) == 200
    assert [(e.recipient, e.event_type, name) for e, name in got] == [
        ("a@example.com", "bounced", "Amazon SES"), ("b@example.com", "bounced", "Amazon SES")]
    first = got[0][0]
    assert (first.message_id, first.reject_reason, first.description, first.mta_response) == (
        "ours-1", "bounced", "Permanent: General", "smtp; 550 5.1.1 unknown")
    assert (first.tags, first.metadata) == (["welcome"], {"user_id": 42})
    assert first.esp_event == event and first.event_id and first.timestamp.tzinfo is not None


@pytest.mark.parametrize(("kind", "detail", "expected"), [
    ("Delivery", {"recipients": ["to@example.com"], "smtpResponse": "250 ok"},
     ("delivered", None, "250 ok")),
    ("Complaint", {"complainedRecipients": [{"emailAddress": "to@example.com"}],
                   "complaintFeedbackType": "abuse"}, ("complained", "spam", None)),
    ("Send", {}, ("sent", None, None)),
    ("Reject", {"reason": "Bad content"}, ("rejected", "blocked", None)),
    ("Open", {"userAgent": "UA"}, ("opened", None, None)),
    ("Click", {"link": "https://example.com/x"}, ("clicked", None, None)),
    ("Rendering Failure", {"errorMessage": "no"}, ("failed", None, None)),
    ("DeliveryDelay", {"delayType": "MailboxFull", "delayedRecipients": [
        {"emailAddress": "to@example.com", "diagnosticCode": "452"}]},
     ("deferred", None, "452")),
])
def test_each_ses_event_type_maps_to_anymails(tracked, kind, detail, expected):
    post, got = tracked
    assert post(ses_event(kind, "ses-2", **detail)) == 200
    [(event, _)] = got
    assert (event.event_type, event.reject_reason, event.mta_response) == expected
    assert event.recipient == "to@example.com" and event.message_id == "ses-2"


def test_a_raising_tracking_receiver_changes_nothing(tracked, caplog):
    from seacucumber.models import MessageStatus

    post, got = tracked
    now = timezone.now()
    MessageStatus.objects.create(message_id="ours-3", ses_message_id="ses-3", sender=SENDER,
                                 recipients="to@example.com", status="sent", queued_at=now,
                                 updated_at=now)

    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.tracking.connect(broken)
    try:
        assert post(with_headers(ses_event("Delivery", "ses-3", recipients=["to@example.com"]),
                                 our_id="ours-3")) == 200
    finally:
        signals.tracking.disconnect(broken)
    assert MessageStatus.objects.get(message_id="ours-3").status == "delivered"
    assert len(got) == 1  # the other receiver still ran
    assert "a receiver of tracking" in caplog.text and "receiver bug" in caplog.text


def test_no_receiver_no_work(webhook, db, monkeypatch):
    from seacucumber.events import tracking

    monkeypatch.setattr(tracking, "tracking_events", lambda *a: pytest.fail("built"))
    assert webhook(notification(bounce("ses-4", "a@example.com"))).status_code == 200


def test_the_envelope_of_an_anymail_sent_message(ses_emulator, settings):
    """What anymail's own SES backend sends for the same message, for the guide's table."""
    settings.ANYMAIL = {"AMAZON_SES_CLIENT_PARAMS": {
        "endpoint_url": ses_emulator.url, "region_name": "us-east-1",
        "aws_access_key_id": "x", "aws_secret_access_key": "y"}}
    settings.EMAIL_BACKEND = "anymail.backends.amazon_ses.EmailBackend"
    message = AnymailMessage("Hi", "B", SENDER, ["a@example.com"], tags=["t"],
                             envelope_sender="bounces@example.com")
    message.send()
    [accepted] = ses_emulator.messages()
    assert parseaddr(accepted.source)[1] == SENDER
    assert accepted.options == {"FeedbackForwardingEmailAddress": "bounces@example.com"}
