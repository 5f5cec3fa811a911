"""Reply by email: each mail SES receives for the example is kept as a ``Reply`` and shown on
the page under the message it answers.

SES gives every message it sends the Message-ID ``<SES MessageId@<region>.amazonses.com>``
(``email.amazonses.com`` in us-east-1); a reply names it in In-Reply-To and References, and
the status record of the send keeps that SES MessageId. That is the whole match: no token in
the address is needed.
"""

import re

from django.dispatch import receiver

from seacucumber.models import MessageStatus
from seacucumber.signals import inbound_received

from .models import Reply

SES_MESSAGE_ID = re.compile(r"<([^<>@\s]+)@[a-z0-9.-]*amazonses\.com>", re.IGNORECASE)


@receiver(inbound_received)
def keep_reply(sender, message, event, **kwargs):
    referenced = SES_MESSAGE_ID.findall(
        f"{message.get('In-Reply-To', '')} {message.get('References', '')}")
    answers = MessageStatus.objects.filter(ses_message_id__in=referenced).first()
    Reply.objects.update_or_create(
        ses_message_id=event.ses_message_id,
        defaults={"answers": answers, "from_email": message.from_email,
                  "subject": message.subject, "text": message.text[:10000],
                  "spam_verdict": message.spam_verdict or ""},
    )
