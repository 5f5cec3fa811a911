"""System checks for the event webhook's settings."""

from __future__ import annotations

from typing import Any

from django.core.checks import Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, reverse

from ..conf import conf


def _webhook_installed() -> bool:
    try:
        reverse("seacucumber:events")
    except (NoReverseMatch, ImproperlyConfigured, AttributeError, ImportError):
        return False  # not routed, or no URLconf at all (a worker-only settings module)
    return True


@register()
def check_webhook_settings(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Warn when the webhook is routed but will refuse everything, or verifies nothing."""
    if not _webhook_installed():
        return []
    found = []
    if not conf.SEACUCUMBER_EVENT_TOPIC_ARNS:
        found.append(Warning(
            "SEACUCUMBER_EVENT_TOPIC_ARNS is empty: the SES event webhook refuses every post.",
            hint="List the ARNs of the SNS topics your SES events are published to.",
            id="seacucumber.W001",
        ))
    if not conf.SEACUCUMBER_VERIFY_EVENT_SIGNATURES:
        found.append(Warning(
            "SNS signature verification is off: anyone can post events to the webhook.",
            hint="Set SEACUCUMBER_VERIFY_EVENT_SIGNATURES = True outside tests.",
            id="seacucumber.W002",
        ))
    if conf.SEACUCUMBER_SNS_ENDPOINT_URL:
        found.append(Warning(
            f"SNS certificates are fetched from {conf.SEACUCUMBER_SNS_ENDPOINT_URL}, not SNS.",
            hint="SEACUCUMBER_SNS_ENDPOINT_URL is for tests against an emulator only.",
            id="seacucumber.W003",
        ))
    return found
