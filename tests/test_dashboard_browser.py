"""The dashboard and the timeline in a real browser: Debian's headless Chromium, driven by
Playwright, on data from real sends through a real ``celery worker`` (Redis broker, SES at
moto), real SES events posted to the webhook, and the statistics ``get_ses_statistics``
stored. The charts must draw with data, the page must log no console error, and the metrics
endpoint must add up what the worker's processes counted. Screenshots go to docs/ with
SEACUCUMBER_REFRESH_SCREENSHOTS=1.

Playwright never downloads a browser here (``playwright install`` is not used): the tests
find ``chromium`` on the PATH, and without it skip, or fail under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core import mail
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from seacucumber import status
from seacucumber.events import suppression
from seacucumber.models import DailyStatistics, MessageStatus
from tests.conftest import SENDER, service_missing
from tests.fixtures_events import bounce, notification, ses_event

DOCS = Path(__file__).resolve().parent.parent / "docs"


def screenshots(tmp_path: Path) -> Path:
    """Where the pages' screenshots go: docs/ (the pictures docs/dashboard.rst shows) when
    SEACUCUMBER_REFRESH_SCREENSHOTS is set, else the test's own directory, so a test run
    leaves the checkout as it was."""
    return DOCS if os.environ.get("SEACUCUMBER_REFRESH_SCREENSHOTS") else tmp_path
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
FEEDBACK_ENV = {"SEACUCUMBER_TRACK_STATUS": "1", "SEACUCUMBER_SUPPRESSION_LIST": "1"}
TOKEN = "browser-test-token"  # noqa: S105
#: the permissions the dashboard's pages need (seacucumber.dashboard.admin.VIEW_PERMISSIONS)
VIEW_CODENAMES = ("view_messagestatus", "view_suppressedaddress")


#: each chart text's size on screen (its font size times the chart's scale) and whether it
#: lies wholly inside its chart's box (and, for a day's label, is at least 6 px from any other)
CHART_LABELS = """() => [...document.querySelectorAll('svg.sc-chart')].flatMap(svg => {
  const box = svg.getBoundingClientRect();
  const scale = box.width / svg.viewBox.baseVal.width;
  const days = [...svg.querySelectorAll('text.sc-day')].map(t => t.getBoundingClientRect());
  return [...svg.querySelectorAll('text')].map(text => {
    const r = text.getBoundingClientRect();
    const overlaps = text.classList.contains('sc-day') && days.some(o => o.left !== r.left
        && o.left < r.right + 6 && r.left < o.right + 6);  // at least 6 px apart
    return {text: text.textContent, size: parseFloat(getComputedStyle(text).fontSize) * scale,
            inside: r.left >= box.left - 0.5 && r.right <= box.right + 0.5
                    && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5 && !overlaps};
  });
})"""


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system's Chromium (Debian: ``apt-get install -y chromium``)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        service_missing("Chromium (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        service_missing("the playwright Python package (pip install playwright)")
    return str(found)


def log_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


def wait_until(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached after {timeout}s")
        time.sleep(0.1)


def settled(ids: list[str]) -> bool:
    return not MessageStatus.objects.filter(message_id__in=ids, status="queued").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pipeline", ["redis"], indirect=True)
def test_dashboard_and_timeline_in_chromium(chromium, pipeline, start_worker, moto_ses,
                                            webhook, live_server, settings, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = screenshots(tmp_path)

    settings.SEACUCUMBER_TRACK_STATUS = True
    settings.SEACUCUMBER_SUPPRESSION_LIST = True
    settings.SEACUCUMBER_METRICS_TOKEN = TOKEN
    suppression.add(["gone@example.com"], "manual", "asked to be left alone")
    start_worker(pipeline.worker_env(**FEEDBACK_ENV), queues=pipeline.queue, concurrency=2)

    messages = [EmailMessage(f"Hello {n}", "Body", SENDER, [f"user{n}@example.com"])
                for n in range(12)]
    messages.append(EmailMessage("Unverified", "Body", "nobody@example.org",
                                 ["user99@example.com"]))
    messages.append(EmailMessage("Suppressed", "Body", SENDER, ["gone@example.com"]))
    assert mail.get_connection().send_messages(messages) == 14
    ids = list(MessageStatus.objects.values_list("message_id", flat=True))
    wait_until(lambda: settled(ids), what="every send settled")
    outcomes = dict(MessageStatus.objects.values_list("subject", "status"))
    assert (outcomes["Unverified"], outcomes["Suppressed"], outcomes["Hello 0"]) == (
        "failed", "suppressed", "sent")
    ses_ids = {r.recipients: r.ses_message_id for r in MessageStatus.objects.filter(
        status="sent")}
    for n in range(2, 12):
        event = ses_event("Delivery", ses_ids[f"user{n}@example.com"],
                          smtpResponse="250 2.0.0 OK")
        assert webhook(notification(event)).status_code == 200
    assert webhook(notification(bounce(ses_ids["user0@example.com"], "user0@example.com")))\
        .status_code == 200
    complaint = ses_event("Complaint", ses_ids["user1@example.com"],
                          complaintFeedbackType="abuse",
                          complainedRecipients=[{"emailAddress": "user1@example.com"}])
    assert webhook(notification(complaint)).status_code == 200
    call_command("get_ses_statistics", stdout=open("/dev/null", "w"))  # noqa: SIM115
    counted = sum(len(m.destinations) for m in moto_ses.sent())  # as moto counts them
    assert DailyStatistics.objects.filter(delivery_attempts=counted).exists()

    # the worker's two pool processes counted; the scrape adds them up
    text = Client().get("/ses/metrics/", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for family in text_string_to_metric_families(text) for s in family.samples}
    lane = ("lane", "transactional")  # mail naming no lane
    assert found[("seacucumber_sends_total", (lane, ("outcome", "sent")))] == 12
    assert found[("seacucumber_sends_total", (lane, ("outcome", "failed")))] == 1
    assert found[("seacucumber_sends_total", (lane, ("outcome", "suppressed")))] == 1
    assert found[("seacucumber_ses_events_total",
                  (("bounce_type", ""), lane, ("type", "Delivery")))] == 10
    assert found[("seacucumber_queue_depth", (("queue", pipeline.queue),))] == 0
    # the worker's heartbeat: it consumes the test's queue, and nobody the bulk lane's
    assert found[("seacucumber_queue_consumers", (("queue", pipeline.queue),))] == 1
    assert found[("seacucumber_queue_consumers", (("queue", "seacucumber-bulk"),))] == 0

    ops = User.objects.create_user("ops", password="ops-password", is_staff=True)  # noqa: S106
    ops.user_permissions.set(Permission.objects.filter(
        content_type__app_label="seacucumber", codename__in=VIEW_CODENAMES))
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{live_server.url}/admin/seacucumber/dashboard/")
            assert "/admin/login/" in page.url  # not logged in: the admin's login
            page.fill("#id_username", "ops")
            page.fill("#id_password", "ops-password")
            # from here on, our pages: any console error, page error or failed request counts
            # (the admin's own login page asks for a /favicon.ico the test server lacks)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
                    if r.status >= 400 else None)
            page.click("input[type=submit]")
            page.wait_for_url("**/admin/seacucumber/dashboard/")

            assert page.locator("svg.sc-hourly rect.sc-sent").count() >= 1
            assert page.locator("svg.sc-hourly rect.sc-failed").count() == 1
            assert page.locator("svg.sc-hourly rect.sc-bounced").count() == 1
            assert page.locator("svg.sc-rate circle.sc-point").count() >= 2  # both charts
            box = page.locator("svg.sc-hourly").bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 100
            assert "MessageRejected" in page.locator("#sc-failures").inner_text()
            assert "1" in page.locator("#sc-suppressed .sc-big").inner_text()
            ours = page.locator(f'#sc-queues tr[data-queue="{pipeline.queue}"] td')
            assert ours.all_inner_texts()[1:] == ["0", "-", "1"]  # waiting, oldest, workers
            bulk = page.locator('#sc-queues tr[data-queue="seacucumber-bulk"]')
            assert bulk.locator("td").last.inner_text() == "none"
            assert "sc-warn" in (bulk.get_attribute("class") or "")
            lane = page.locator('#sc-lanes tr[data-lane="transactional"] td').all_inner_texts()
            assert lane[1:4] == ["12", "12", "1"]  # sends, recipients, failed
            assert page.locator("#sc-bounce-rate .sc-big").inner_text().endswith("%")
            assert page.locator("#sc-complaint-rate .sc-big").inner_text().endswith("%")
            # every chart label at least 11 px on screen, and none cut off by its chart
            labels = page.evaluate(CHART_LABELS)
            assert len(labels) > 20
            assert [label for label in labels if label["size"] < 11 or not label["inside"]] == []
            page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

            page.fill("#sc-q", "user0@example.com")
            page.click(".sc-lookup input[type=submit]")
            page.wait_for_url("**/timeline/?q=*")
            steps = page.locator("li.sc-step strong").all_inner_texts()
            assert steps == ["queued", "sent", "Bounce"]
            assert "Permanent/General: smtp; 550 5.1.1 unknown" in page.content()
            page.screenshot(path=str(shots / "timeline.png"), full_page=True)

            page.goto(f"{live_server.url}/admin/seacucumber/dashboard/timeline/?q=gone@example.com")
            assert "is on the suppression list (manual" in page.content()
            assert page.locator("li.sc-step strong").all_inner_texts() == ["queued", "suppressed"]
        finally:
            browser.close()
    assert problems == []


@pytest.mark.django_db(transaction=True)
def test_the_pages_need_the_view_permissions_in_chromium(chromium, live_server):
    """Staff without the view permissions: no dashboard line on the admin index, 403 on both
    pages. Staff with them: a query longer than an address is answered with a message."""
    from playwright.sync_api import sync_playwright

    now = timezone.now()
    MessageStatus.objects.create(message_id="m1", sender=SENDER, queued_at=now, updated_at=now,
                                 recipients="victim@example.com", subject="Private")
    status.record_recipients([("m1", ["victim@example.com"])])  # as send_messages writes them
    User.objects.create_user("nosy", password="nosy-password", is_staff=True)  # noqa: S106
    ops = User.objects.create_user("ops", password="ops-password", is_staff=True)  # noqa: S106
    ops.user_permissions.set(Permission.objects.filter(
        content_type__app_label="seacucumber", codename__in=VIEW_CODENAMES))
    dashboard = f"{live_server.url}/admin/seacucumber/dashboard/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            nosy = browser.new_context().new_page()
            log_in(nosy, live_server.url, "nosy", "nosy-password")
            assert nosy.locator('a[href="/admin/seacucumber/dashboard/"]').count() == 0
            for url in (dashboard, dashboard + "timeline/?q=victim@example.com"):
                response = nosy.goto(url)
                assert response is not None and response.status == 403, url
                assert "Private" not in nosy.content()

            page = browser.new_context().new_page()
            log_in(page, live_server.url, "ops", "ops-password")
            assert page.locator('a[href="/admin/seacucumber/dashboard/"]').count() >= 1
            response = page.goto(dashboard + "timeline/?q=" + "a" * 300 + "@example.com")
            assert response is not None and response.status == 200
            assert "Too long: 312 characters" in page.locator("#sc-too-long").inner_text()
            assert len(page.locator("#sc-q").input_value()) <= 254
            page.fill("#sc-q", "victim@example.com")
            page.click("#sc-timeline input[type=submit]")
            page.wait_for_url("**/timeline/?q=victim*")
            assert "Private" in page.content()
        finally:
            browser.close()
