"""A page that sends a test message, and shows replies to it received through SES."""

from django.conf import settings
from django.contrib import messages
from django.core.mail import EmailMessage
from django.shortcuts import redirect, render

from seacucumber.exceptions import SeaCucumberError
from seacucumber.models import MessageStatus

from .models import Reply


def home(request):
    """GET: the form, the latest messages with their status and the replies each got. POST:
    queue a test message to the address given, replies going to EXAMPLE_REPLY_TO."""
    if request.method == "POST":
        to = request.POST.get("to", "").strip()
        message = EmailMessage(
            "Sea Cucumber test message",
            "This message went through Django, Celery and Amazon SES. Reply to it: the "
            "reply comes back through an SES receipt rule and shows on the example's page.",
            None,
            [to],
            reply_to=[settings.EXAMPLE_REPLY_TO],
        )
        try:
            queued = message.send()
        except SeaCucumberError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Queued {queued} message to {to}.")
        return redirect("home")
    recent = MessageStatus.objects.order_by("-queued_at").prefetch_related("replies")[:20]
    unmatched = Reply.objects.filter(answers__isnull=True)[:20]
    return render(request, "mailer/home.html", {
        "recent": recent, "unmatched": unmatched, "reply_to": settings.EXAMPLE_REPLY_TO})
