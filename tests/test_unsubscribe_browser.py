"""The unsubscribe confirmation page in a real browser: Debian's headless Chromium, driven by
Playwright, opens a List-Unsubscribe URL built by the backend for a live server; the page
changes nothing until its button is clicked, which records the topic suppression. The page
must log no console error and make no failed request."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from django.core.mail import EmailMessage

from seacucumber.models import TopicSuppression
from seacucumber.payload import MailerOptions, build_sends
from tests.conftest import SENDER
from tests.test_dashboard_browser import CHROMIUM_ARGS, chromium  # noqa: F401 - a fixture


@pytest.mark.django_db(transaction=True)
def test_confirmation_page_button_unsubscribes(chromium, live_server, settings):  # noqa: F811
    from playwright.sync_api import sync_playwright

    settings.SEACUCUMBER_BASE_URL = f"{live_server.url}/ses/"
    message = EmailMessage("News", "Body", SENDER, ["jane.doe@example.com"])
    (send,) = build_sends(message, MailerOptions.parse({"unsubscribe_topic": "newsletter"}))
    link = message_from_bytes(send.raw, policy=policy.SMTP)["List-Unsubscribe"][1:-1]
    assert link.startswith(f"{live_server.url}/ses/unsubscribe/")

    problems: list[str] = []

    def in_browser(steps) -> None:
        """Run ``steps(page)`` in a fresh Chromium (Playwright's sync API runs an event loop:
        the database is checked outside it)."""
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.on("console",
                        lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
                page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
                        if r.status >= 400 else None)
                steps(page)
            finally:
                browser.close()

    def look(page) -> None:
        page.goto(link)
        assert page.title() == "Unsubscribe"
        assert page.locator(".address").inner_text() == "j\u2022\u2022\u2022@example.com"
        assert page.locator(".topic").inner_text() == "newsletter"
        page.reload()  # a scanner fetching the link twice changes nothing either

    def click(page) -> None:
        page.goto(link)
        page.click("#unsubscribe")
        page.wait_for_selector("#result")
        assert page.title() == "Unsubscribed"
        assert "will get no more" in page.locator("#result").inner_text()

    in_browser(look)
    assert not TopicSuppression.objects.exists()
    in_browser(click)
    assert list(TopicSuppression.objects.values_list("address", "topic", "source")) == [
        ("jane.doe@example.com", "newsletter", "one-click")]
    assert problems == []
