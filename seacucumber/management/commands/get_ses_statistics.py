"""``manage.py get_ses_statistics``: keep SES's daily send statistics in the database
(django-ses's command name, so cron jobs carry over)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from seacucumber.exceptions import OperatorError
from seacucumber.operations import statistics


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = ("Store SES's send statistics (GetSendStatistics) per UTC day in the database; "
            "safe to run as often as you like.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            rows = statistics.store()
        except OperatorError as exc:
            raise CommandError(str(exc)) from None
        attempts = sum(row.delivery_attempts for row in rows)
        self.stdout.write(f"Stored SES statistics for {len(rows)} days "
                          f"({rows[0].date if rows else '-'} to {rows[-1].date if rows else '-'}"
                          f", {attempts:,} delivery attempts).")
