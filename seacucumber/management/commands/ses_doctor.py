"""``manage.py ses_doctor``: the whole path mail takes, checked from this host; exit 1 on any
FAIL, so it fits a deploy pipeline (the checks: ``seacucumber.operations.doctor``)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from seacucumber.operations import doctor


class Command(BaseCommand):
    # its own "system checks" line reports Sea Cucumber's; the project's others are not its
    # business, and an error among them must not hide the rest of the report
    requires_system_checks: list[str] = []
    help = (
        "Check the whole path mail takes, from this host: the Celery app is the project's "
        "(not Celery's fallback), the broker and the shared-state Redis answer, live workers "
        "consume every lane's queue, the SES region and credentials resolve, the account can "
        "send, each sender is verified, the event webhook is configured. One line each: OK, "
        "WARN or FAIL with the fix. Exits 1 on any FAIL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
        parser.add_argument("--timeout", type=float, default=doctor.DEFAULT_TIMEOUT,
                            help="seconds each check may take (default %(default)s)")

    def handle(self, *args: Any, **options: Any) -> None:
        findings = doctor.run(timeout=options["timeout"])
        if options["json"]:
            self.stdout.write(json.dumps({"ok": not doctor.failed(findings), "checks": [
                finding.to_json() for finding in findings]}, indent=2))
        else:
            self.stdout.write(doctor.render(findings))
        if doctor.failed(findings):
            failures = sum(finding.status == doctor.FAIL for finding in findings)
            raise CommandError(f"ses_doctor: {failures} check(s) failed", returncode=1)
