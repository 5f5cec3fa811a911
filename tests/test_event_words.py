"""SES's words for an event, read in one place (``events.parse``): the timeline's detail
and the status record's note say the same thing."""

import json

import pytest

from seacucumber.events.parse import event_detail, event_note, parse_event


def event(event_type: str, key: str, obj: dict) -> str:
    return json.dumps({"eventType": event_type, "mail": {"messageId": "ses-1"}, key: obj})


@pytest.mark.parametrize(("event_type", "key", "obj", "detail", "note"), [
    ("Bounce", "bounce", {"bounceType": "Permanent", "bounceSubType": "General",
                          "bouncedRecipients": [{"emailAddress": "a@example.com",
                                                 "diagnosticCode": "550 5.1.1"}]},
     "Permanent/General: 550 5.1.1", "Bounce Permanent/General: 550 5.1.1"),
    ("Bounce", "bounce", {"bounceType": "Transient", "bounceSubType": "General",
                          "bouncedRecipients": [{"emailAddress": "a@example.com"}]},
     "Transient/General", "Bounce Transient/General: a@example.com"),
    ("Complaint", "complaint", {"complaintFeedbackType": "abuse"},
     "feedback: abuse", "Complaint: abuse"),
    ("Reject", "reject", {"reason": "Bad content"}, "Bad content", "Reject: Bad content"),
    ("Rendering Failure", "failure", {"errorMessage": "no template"}, "no template",
     "Rendering Failure: no template"),
    ("RenderingFailure", "failure", {"errorMessage": "no template"}, "no template",
     "Rendering Failure: no template"),
    ("DeliveryDelay", "deliveryDelay", {"delayType": "MailboxFull"}, "MailboxFull",
     "DeliveryDelay: MailboxFull"),
    ("Delivery", "delivery", {"smtpResponse": "250 2.0.0 OK"}, "250 2.0.0 OK", "Delivery"),
])
def test_the_timeline_detail_and_the_note_read_the_same_words(event_type, key, obj, detail,
                                                               note):
    parsed = parse_event(event(event_type, key, obj))
    assert event_detail(parsed.event_type, parsed.detail) == detail
    assert event_note(parsed) == note
