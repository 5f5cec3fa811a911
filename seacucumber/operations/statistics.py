"""SES's daily send statistics kept in the database (``DailyStatistics``), past the two weeks
SES keeps them: what django-ses's ``get_ses_statistics`` did, under the same command name so
cron jobs carry over, and as a Celery task for beat.

The numbers come from ``usage.fetch_days`` (v1 ``GetSendStatistics`` summed per UTC day), the
one reader of SES's statistics. Storing is idempotent: each day in SES's window is written
whole, so running it twice, or every hour, leaves the same rows. The oldest UTC day SES still
reports is cut short by the two-week window, so only the ``STATISTICS_DAYS`` whole (or
current) days are written: a day that has left the window keeps the figures it had.
"""

from __future__ import annotations

import datetime as dt

from celery import shared_task

from ..models import DailyStatistics
from . import usage

TASK_NAME = "seacucumber.get_ses_statistics"


def store(today: dt.date | None = None) -> list[DailyStatistics]:
    """Read SES's statistics and write one row per UTC day of its window; returns the rows.
    SES errors come out as ``OperatorError`` (naming the IAM action when denied)."""
    today = today or dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=usage.STATISTICS_DAYS - 1)
    rows = []
    for day in usage.fetch_days(today):
        date = dt.date.fromisoformat(day.date)
        if not first <= date <= today:
            continue  # partly outside SES's two weeks: the stored figures are the whole day's
        row, _ = DailyStatistics.objects.update_or_create(date=date, defaults={
            "delivery_attempts": day.delivery_attempts, "bounces": day.bounces,
            "complaints": day.complaints, "rejects": day.rejects})
        rows.append(row)
    return rows


@shared_task(name=TASK_NAME, ignore_result=True)
def get_ses_statistics() -> int:
    """Celery beat's way to run ``store`` (see the README); returns the days written."""
    return len(store())
