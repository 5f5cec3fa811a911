"""``manage.py ses_usage``: the SES quota, send rate, two weeks of statistics, reputation, and
the account's state (sandbox, sending enabled)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from seacucumber.exceptions import OperatorError
from seacucumber.operations import usage


class Command(BaseCommand):
    # An SES query: the project's system checks (webhook settings, say) are not its business.
    requires_system_checks: list[str] = []
    help = (
        "Show the SES 24-hour quota and how much of it is used, the max send rate, the "
        "rate the workers hold (or why there is none) and any daily-quota hold on sends, two "
        "weeks of send statistics, the bounce and complaint rates against SES's review "
        "levels, and the account's state (GetAccount: sending enabled, enforcement status, "
        "production access or the sandbox)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            found = usage.fetch()
        except OperatorError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(found.to_json(), indent=2))
        else:
            self.stdout.write(usage.render(found))
