"""Django admin: per-send status (read only, but for cancelling sends not yet sent) and
received mail (read only), the suppression list and topic suppressions."""

from typing import Any

import redis
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.http import HttpRequest

from .conf import lanes
from .models import InboundMail, MessageStatus, Status, SuppressedAddress, TopicSuppression
from .send.cancel import cancel


class LaneFilter(admin.SimpleListFilter):
    """The declared lanes as choices: no query over every record for its distinct values."""

    title = "lane"
    parameter_name = "lane"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(found.name, found.name) for found in lanes()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(lane=self.value()) if self.value() else queryset


class SenderFilter(admin.SimpleListFilter):
    """The senders of the latest records as choices (the index on ``queued_at`` reads them;
    no DISTINCT over every record); any sender by ``?sender=``."""

    title = "sender"
    parameter_name = "sender"
    #: How many of the latest records name the choices.
    LATEST = 1000

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        latest = MessageStatus.objects.order_by("-queued_at").values_list("sender", flat=True)
        return [(sender, sender) for sender in sorted(set(latest[:self.LATEST]))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(sender=self.value()) if self.value() else queryset


@admin.register(MessageStatus)
class MessageStatusAdmin(admin.ModelAdmin):
    list_display = ("message_id", "status", "lane", "sender", "short_recipients", "subject",
                    "queued_at", "send_at", "sent_at", "updated_at")
    list_filter = (LaneFilter, "status", SenderFilter, "queued_at", "sent_at", "updated_at")
    search_fields = ("message_id", "ses_message_id", "sender", "recipients", "subject")
    date_hierarchy = "queued_at"
    readonly_fields = [f.name for f in MessageStatus._meta.fields]
    actions = ("cancel_sends",)

    @admin.action(description="Cancel the selected sends not yet sent",
                  permissions=("cancel",))
    def cancel_sends(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """``seacucumber.cancel`` on the selected queued (or scheduled) sends; the others
        (sent, failed...) are left as they are and counted in the message."""
        queued = list(queryset.filter(status=Status.QUEUED)
                      .values_list("message_id", flat=True))
        try:
            cancelled = [message_id for message_id in queued
                         if cancel(message_id, f"cancelled in the admin by {request.user}")]
        except (ImproperlyConfigured, redis.RedisError) as exc:
            self.message_user(request, f"Nothing cancelled: {exc}", messages.ERROR)
            return
        self.message_user(request, f"{len(cancelled)} send(s) cancelled; "
                          f"{len(queued) - len(cancelled)} already being sent or sent; "
                          f"{queryset.count() - len(queued)} no longer queued.",
                          messages.SUCCESS if len(cancelled) == len(queued) else messages.WARNING)

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        """Cancelling is changing a send: the model's change permission, not the admin's
        read-only one (``has_change_permission`` is False for every record)."""
        return request.user.has_perm("seacucumber.change_messagestatus")

    @admin.display(description="recipients")
    def short_recipients(self, obj: MessageStatus) -> str:
        found = obj.recipient_list
        return ", ".join(found[:3]) + (f" (+{len(found) - 3})" if len(found) > 3 else "")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SuppressedAddress)
class SuppressedAddressAdmin(admin.ModelAdmin):
    list_display = ("address", "reason", "created_at")
    list_filter = ("reason", "created_at")
    search_fields = ("address", "detail")

    def save_model(self, request, obj, form, change) -> None:
        obj.address = obj.address.strip().lower()
        super().save_model(request, obj, form, change)


@admin.register(TopicSuppression)
class TopicSuppressionAdmin(admin.ModelAdmin):
    """Who left which topic. Deleting a row resubscribes; adding one here sends no
    ``unsubscribed`` signal (``ses_suppression add --topic`` does)."""

    list_display = ("address", "topic", "source", "created_at")
    list_filter = ("topic", "source", "created_at")
    search_fields = ("address", "topic")

    def save_model(self, request, obj, form, change) -> None:
        obj.address = obj.address.strip().lower()
        super().save_model(request, obj, form, change)


@admin.register(InboundMail)
class InboundMailAdmin(admin.ModelAdmin):
    """Every receipt notification the webhook took in, and what came of its mail: an
    operator sees here why a mail was refused, gone or failed (read only)."""

    list_display = ("received_at", "state", "source", "action_type", "reason", "updated_at")
    list_filter = ("state", "action_type", "received_at")
    search_fields = ("sns_message_id", "ses_message_id", "source", "reason")
    date_hierarchy = "received_at"
    readonly_fields = [f.name for f in InboundMail._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
