"""Replies received by email (the reply-by-email demo)."""

from django.db import models

from seacucumber.models import MessageStatus


class Reply(models.Model):
    """A mail SES received for the example, matched to the message it answers when its
    In-Reply-To or References name that message's SES Message-ID."""

    ses_message_id = models.CharField(max_length=128, unique=True)  # one row per mail
    answers = models.ForeignKey(MessageStatus, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="replies")
    from_email = models.CharField(max_length=320)
    subject = models.TextField(blank=True)
    text = models.TextField(blank=True)
    spam_verdict = models.CharField(max_length=32, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
