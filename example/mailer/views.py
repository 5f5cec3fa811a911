"""A page that sends a test message."""

from django.contrib import messages
from django.core.mail import send_mail
from django.shortcuts import redirect, render

from seacucumber.exceptions import SeaCucumberError


def home(request):
    """GET: the form. POST: queue a test message to the address given."""
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
    return render(request, "mailer/home.html")
