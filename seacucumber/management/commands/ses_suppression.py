"""``manage.py ses_suppression list [--json] | add ADDRESS... | remove ADDRESS...``."""

import json

from django.core.management.base import BaseCommand, CommandError

from ...events import suppression
from ...models import SuppressedAddress


class Command(BaseCommand):
    help = "List, add to or remove from the suppression list."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="Print the list.")
        listing.add_argument("--json", action="store_true", help="One JSON array.")
        adding = actions.add_parser("add", help="Add addresses (reason: manual).")
        adding.add_argument("addresses", nargs="+")
        adding.add_argument("--detail", default="", help="A note kept with each address.")
        removing = actions.add_parser("remove", help="Remove addresses.")
        removing.add_argument("addresses", nargs="+")

    def handle(self, *args, action: str, **options) -> None:
        if action == "list":
            rows = SuppressedAddress.objects.order_by("address")
            if options["json"]:
                self.stdout.write(json.dumps([
                    {"address": r.address, "reason": r.reason, "detail": r.detail,
                     "created_at": r.created_at.isoformat()} for r in rows
                ], indent=2))
            else:
                for r in rows:
                    self.stdout.write(f"{r.address}\t{r.reason}\t{r.created_at:%Y-%m-%d %H:%M}")
            return
        bad = [a for a in options["addresses"] if "@" not in a]
        if bad:
            raise CommandError(f"not addresses: {', '.join(bad)}")
        if action == "add":
            added = suppression.add(options["addresses"], SuppressedAddress.Reason.MANUAL,
                                    options["detail"])
            self.stdout.write(f"added {added} address(es)")
        else:
            removed = suppression.remove(options["addresses"])
            self.stdout.write(f"removed {removed} address(es)")
