"""Database records: per-send status, the suppression list, and SNS message ids already seen.

The tables exist once ``seacucumber`` is in ``INSTALLED_APPS`` and migrated; nothing writes to
them unless the settings that use them are on (see docs/events.rst).
"""

from __future__ import annotations

from django.db import models


class Status(models.TextChoices):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


#: A status only moves to one of higher rank: late or repeated news never undoes newer news.
STATUS_RANK = {
    Status.QUEUED: 0,
    Status.SENT: 1,
    Status.FAILED: 2,
    Status.SUPPRESSED: 2,
    Status.DELIVERED: 2,
    Status.BOUNCED: 3,
    Status.COMPLAINED: 4,
}


def statuses_below(status: str) -> list[str]:
    """The statuses a record may leave for ``status``."""
    rank = STATUS_RANK[Status(status)]
    return [str(s) for s, r in STATUS_RANK.items() if r < rank]  # TextChoices: str is the value


class MessageStatus(models.Model):
    """One SES send (one task payload: a message, or one 50-recipient part of it)."""

    message_id = models.CharField("our id", max_length=64, unique=True)
    ses_message_id = models.CharField(
        "SES MessageId", max_length=128, null=True, blank=True, db_index=True
    )
    sender = models.CharField(max_length=320)
    recipients = models.TextField(help_text="One address per line.")
    subject = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    queued_at = models.DateTimeField(db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    suppressed_recipients = models.TextField(
        blank=True, help_text="Recipients dropped by the suppression list, one a line."
    )

    class Meta:
        verbose_name = "message status"
        verbose_name_plural = "message statuses"
        ordering = ("-queued_at",)

    def __str__(self) -> str:
        return f"{self.message_id} ({self.status})"

    @property
    def recipient_list(self) -> list[str]:
        return [r for r in self.recipients.splitlines() if r]


class SuppressedAddress(models.Model):
    """An address the worker drops from every send."""

    class Reason(models.TextChoices):
        BOUNCE = "bounce"
        COMPLAINT = "complaint"
        MANUAL = "manual"

    address = models.CharField(max_length=320, unique=True, help_text="Lowercased.")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "suppressed address"
        verbose_name_plural = "suppression list"
        ordering = ("address",)

    def __str__(self) -> str:
        return self.address


class SeenNotification(models.Model):
    """An SNS MessageId the webhook applied: redeliveries of it are answered, not applied."""

    sns_message_id = models.CharField(max_length=128, unique=True)
    topic_arn = models.CharField(max_length=256)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return self.sns_message_id
