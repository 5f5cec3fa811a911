"""Database records: per-send status, the suppression lists (every mail; per topic), and SNS
message ids already seen.

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
    CANCELLED = "cancelled"


#: A status only moves to one of higher rank: late or repeated news never undoes newer news.
STATUS_RANK = {
    Status.QUEUED: 0,
    Status.SENT: 1,
    Status.FAILED: 2,
    Status.SUPPRESSED: 2,
    Status.CANCELLED: 2,
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
    lane = models.CharField(max_length=64, blank=True,
                            help_text="The send's lane (SEACUCUMBER_LANES); empty for records "
                            "written before lanes were recorded.")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    queued_at = models.DateTimeField(db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    send_at = models.DateTimeField(
        "scheduled for", null=True, blank=True,
        help_text="When a scheduled send (its message's send_at) is due; empty: at once.")
    updated_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    suppressed_recipients = models.TextField(
        blank=True, help_text="Recipients dropped by the suppression list, one a line."
    )

    class Meta:
        verbose_name = "message status"
        verbose_name_plural = "message statuses"
        ordering = ("-queued_at",)
        indexes = [
            # the dashboard: sends per hour by outcome (an index-only scan of the last 48 h)
            # and the latest failures
            models.Index(fields=["queued_at", "status"], name="sc_status_queued_status"),
            models.Index(fields=["status", "updated_at"], name="sc_status_status_updated"),
            # the message list filtered by lane, newest first
            models.Index(fields=["lane", "queued_at"], name="sc_status_lane_queued"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} ({self.status})"

    @property
    def recipient_list(self) -> list[str]:
        return [r for r in self.recipients.splitlines() if r]


class SendRecipient(models.Model):
    """One recipient of one send, lower-cased: the timeline finds an address's sends through
    this table's index instead of scanning every record's recipients text."""

    send = models.ForeignKey(MessageStatus, on_delete=models.CASCADE, to_field="message_id",
                             db_column="message_id", related_name="recipient_rows")
    address = models.CharField(max_length=320)

    class Meta:
        constraints = [
            # also the lookup's index: an address's sends, read from the index alone
            models.UniqueConstraint(fields=["address", "send"], name="sc_recipient_address_send"),
        ]

    def __str__(self) -> str:
        return f"{self.address} in {self.send_id}"


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


class TopicSuppression(models.Model):
    """An address that left one topic (``unsubscribe_topic``): the worker drops it from sends
    of that topic only; other mail to it still goes."""

    class Source(models.TextChoices):
        ONE_CLICK = "one-click"
        MANUAL = "manual"

    address = models.CharField(max_length=320, help_text="Lowercased.")
    topic = models.CharField(max_length=64)
    source = models.CharField(max_length=16, choices=Source.choices)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = "topic suppression"
        verbose_name_plural = "topic suppressions"
        ordering = ("topic", "address")
        constraints = [models.UniqueConstraint(fields=["address", "topic"],
                                               name="sc_topic_suppression_unique")]

    def __str__(self) -> str:
        return f"{self.address} left {self.topic}"


class SeenNotification(models.Model):
    """An SNS MessageId the webhook applied: redeliveries of it are answered, not applied."""

    sns_message_id = models.CharField(max_length=128, unique=True)
    topic_arn = models.CharField(max_length=256)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return self.sns_message_id


class DailyStatistics(models.Model):
    """SES's send statistics of one UTC day (v1 ``GetSendStatistics``, summed), kept past the
    two weeks SES keeps them; filled by ``manage.py get_ses_statistics``."""

    date = models.DateField(unique=True)
    delivery_attempts = models.PositiveBigIntegerField(default=0)
    bounces = models.PositiveBigIntegerField(default=0)
    complaints = models.PositiveBigIntegerField(default=0)
    rejects = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "daily SES statistics"
        verbose_name_plural = "daily SES statistics"
        ordering = ("-date",)

    def __str__(self) -> str:
        return f"{self.date}: {self.delivery_attempts} attempts"


class SendEvent(models.Model):
    """One SES event (delivery, bounce, complaint, ...) for one send, as the webhook applied
    it: the per-send timeline keeps every step, where ``MessageStatus`` keeps only the
    latest."""

    ses_message_id = models.CharField("SES MessageId", max_length=128, db_index=True)
    kind = models.CharField(max_length=32)
    at = models.DateTimeField()
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ("at", "id")

    def __str__(self) -> str:
        return f"{self.ses_message_id} {self.kind} at {self.at}"


class InboundMail(models.Model):
    """One receipt notification the webhook took in (docs/inbound.rst): written before the
    webhook answers, so a mail is never lost unseen, then settled by the worker that parses
    it. Keeps SES's notification (an SNS action's mail inside it; an S3 action's stays in
    the bucket) and, for a mail not received, why."""

    class State(models.TextChoices):
        PENDING = "pending"  # recorded, waiting for the worker
        RECEIVED = "received"  # parsed, inbound_received sent
        REFUSED = "refused"  # over a limit, or from an S3 bucket not allowed
        GONE = "gone"  # its S3 object was not there
        FAILED = "failed"  # S3 or a receiver kept failing

    sns_message_id = models.CharField("SNS MessageId", max_length=128, unique=True)
    ses_message_id = models.CharField("SES messageId", max_length=128, blank=True,
                                      db_index=True)
    topic_arn = models.CharField(max_length=256)
    action_type = models.CharField(max_length=8)
    source = models.CharField("envelope sender", max_length=320, blank=True)
    notification = models.TextField(help_text="SES's receipt notification (JSON).")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING,
                             db_index=True)
    reason = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "inbound mail"
        verbose_name_plural = "inbound mail"
        ordering = ("-received_at",)

    def __str__(self) -> str:
        return f"{self.ses_message_id or self.sns_message_id} ({self.state})"


class Dashboard(MessageStatus):
    """No table: gives the admin its dashboard page at ``admin/seacucumber/dashboard/``,
    listed on the admin index (see ``seacucumber.dashboard``)."""

    class Meta:
        proxy = True
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"
