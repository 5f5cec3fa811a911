"""A page that sends a test message."""

from django.contrib import messages
from django.core.mail import send_mail
from django.shortcuts import redirect, render

from seacucumber.exceptions import SeaCucumberError
from seacucumber.models import MessageStatus


def home(request):
    """GET: the form and the latest messages with their status. POST: queue a test message
    to the address given."""
    if request.method == "POST":
        to = request.POST.get("to", "").strip()
        try:
            queued = send_mail(
                "Sea Cucumber test message",
                "This message went through Django, Celery and Amazon SES.",
                None,
                [to],
            )
        except SeaCucumberError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Queued {queued} message to {to}.")
        return redirect("home")
    recent = MessageStatus.objects.order_by("-queued_at")[:20]
    return render(request, "mailer/home.html", {"recent": recent})
