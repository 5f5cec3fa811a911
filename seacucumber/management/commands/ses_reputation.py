"""``manage.py ses_reputation status [--json] | release LANE``: the reputation guard's rates
and holds, and the operator's way to end a hold."""

from __future__ import annotations

import json
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...shared import reputation, store


class Command(BaseCommand):
    # Reads and writes the shared-state Redis only: the project's system checks are not its
    # business (an operator releasing a lane must not be stopped by a webhook warning).
    requires_system_checks: list[str] = []
    help = ("Show the reputation guard's bounce and complaint rates per lane and "
            "configuration set and its holds, or release a held lane.")

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        status = actions.add_parser("status", help="Rates, samples and holds.")
        status.add_argument("--json", action="store_true", help="print JSON for scripts")
        release = actions.add_parser(
            "release", help="End the hold on a lane; it is judged afresh from now on.")
        release.add_argument("lane")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if store.redis_url() is None:
            raise CommandError("no shared-state Redis: set SEACUCUMBER_REDIS_URL (or use a "
                               "Redis broker); the reputation guard keeps its counts there")
        try:
            if action == "status":
                found = reputation.report()
                if options["json"]:
                    self.stdout.write(json.dumps(found, indent=2))
                else:
                    self.stdout.write("\n".join(reputation.render(found)))
                return
            hold = reputation.release(options["lane"])
        except redis.RedisError as exc:
            raise CommandError(f"shared-state Redis unavailable: {exc}") from None
        lane = options["lane"]
        if hold is None:
            self.stdout.write(f"lane {lane!r} was not held; its rates are judged afresh "
                              "from now on")
        else:
            self.stdout.write(f"lane {lane!r} released (held for its {hold.rate} rate "
                              f"{100 * hold.value:.3f}% above {100 * hold.threshold:.3f}%); "
                              "its rates are judged afresh from now on")
