"""``manage.py get_ses_statistics``: SES's daily statistics kept in the database, from moto
after real sends and from a loopback endpoint answering GetSendStatistics as SES does."""

import datetime as dt
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from seacucumber.models import DailyStatistics
from seacucumber.operations import statistics, usage
from tests.conftest import SENDER
from tests.fixtures_ops import v1_error
from tests.test_ses_usage import statistics_xml


def run() -> str:
    out = StringIO()
    call_command("get_ses_statistics", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_stores_each_day_of_what_moto_counted_and_again_leaves_the_same_rows(moto_ses, eager):
    mail.get_connection().send_messages([
        mail.EmailMessage("S", "B", SENDER, [f"to{i}@example.com"]) for i in range(3)])
    counted = sum(len(m.destinations) for m in moto_ses.wait_for(3))
    text = run()
    assert f"Stored SES statistics for {usage.STATISTICS_DAYS} days" in text
    today = dt.datetime.now(dt.UTC).date()
    assert DailyStatistics.objects.count() == usage.STATISTICS_DAYS
    row = DailyStatistics.objects.get(date=today)
    assert (row.delivery_attempts, row.bounces, row.complaints, row.rejects) == (counted, 0, 0, 0)
    before = list(DailyStatistics.objects.order_by("date").values_list(
        "date", "delivery_attempts", "bounces", "complaints", "rejects"))
    run()
    after = list(DailyStatistics.objects.order_by("date").values_list(
        "date", "delivery_attempts", "bounces", "complaints", "rejects"))
    assert after == before


@pytest.mark.django_db
def test_a_day_cut_short_by_the_two_week_window_keeps_its_stored_figures(fake_endpoint):
    today = dt.date(2026, 11, 30)
    edge = today - dt.timedelta(days=usage.STATISTICS_DAYS)  # partly inside SES's window
    DailyStatistics.objects.create(date=edge, delivery_attempts=500, bounces=9)
    noon = dt.datetime.combine(today, dt.time(12), dt.UTC)
    fake_endpoint.routes["GetSendStatistics"] = statistics_xml([
        (dt.datetime.combine(edge, dt.time(23, 45), dt.UTC), 7, 1, 0, 0),
        (noon - dt.timedelta(days=3), 100, 4, 1, 2),
        (noon - dt.timedelta(days=3, minutes=15), 50, 1, 0, 0),
        (noon, 10, 0, 0, 0),
    ])
    rows = statistics.store(today)
    assert [r.date for r in rows][0] == today - dt.timedelta(days=usage.STATISTICS_DAYS - 1)
    assert len(rows) == usage.STATISTICS_DAYS
    stored = {r.date: (r.delivery_attempts, r.bounces, r.complaints, r.rejects)
              for r in DailyStatistics.objects.all()}
    assert stored[edge] == (500, 9, 0, 0)
    assert stored[today - dt.timedelta(days=3)] == (150, 5, 1, 2)
    assert stored[today] == (10, 0, 0, 0)
    assert stored[today - dt.timedelta(days=1)] == (0, 0, 0, 0)


@pytest.mark.django_db
def test_denied_is_one_line_naming_the_iam_action(fake_endpoint):
    fake_endpoint.routes["GetSendStatistics"] = v1_error("AccessDenied", "not authorized")
    with pytest.raises(CommandError, match="ses:GetSendStatistics"):
        run()
    assert not DailyStatistics.objects.exists()


@pytest.mark.django_db
def test_the_beat_task_runs_the_same_store(fake_endpoint, eager):
    fake_endpoint.routes["GetSendStatistics"] = statistics_xml([])
    from celery import current_app

    result = current_app.tasks[statistics.TASK_NAME].delay()
    assert result.get() == usage.STATISTICS_DAYS
    assert DailyStatistics.objects.count() == usage.STATISTICS_DAYS
