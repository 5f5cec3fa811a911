"""``manage.py ses_suppression list [--json] | add ADDRESS... | remove ADDRESS... |
sync [--dry-run] [--import-only | --export-only]``."""

import json

from django.core.management.base import BaseCommand, CommandError

from ...events import suppression, suppression_sync
from ...exceptions import OperatorError
from ...models import SuppressedAddress


class Command(BaseCommand):
    help = ("List, add to or remove from the suppression list, or sync it with SES's "
            "account-level suppression list.")

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="Print the list.")
        listing.add_argument("--json", action="store_true", help="One JSON array.")
        adding = actions.add_parser("add", help="Add addresses (reason: manual).")
        adding.add_argument("addresses", nargs="+")
        adding.add_argument("--detail", default="", help="A note kept with each address.")
        removing = actions.add_parser("remove", help="Remove addresses.")
        removing.add_argument("addresses", nargs="+")
        syncing = actions.add_parser(
            "sync", help="Import SES's account-level suppression list (ListSuppressedDestinations) "
                         "and export local additions to it (PutSuppressedDestination).")
        syncing.add_argument("--dry-run", action="store_true",
                             help="Print what would change; change nothing.")
        only = syncing.add_mutually_exclusive_group()
        only.add_argument("--import-only", action="store_true", help="Only import from SES.")
        only.add_argument("--export-only", action="store_true", help="Only export to SES.")

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
        if action == "sync":
            return self.sync(**options)
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

    def sync(self, dry_run: bool, import_only: bool, export_only: bool, **_) -> None:
        try:
            plan = suppression_sync.plan(do_import=not export_only, do_export=not import_only)
            self.stdout.write(f"SES's list: {plan.ses_count} address(es); local list: "
                              f"{plan.local_count}")
            verb = "would " if dry_run else ""
            for entry in plan.to_import:
                self.stdout.write(f"{verb}import {entry.address} ({entry.reason})")
            for entry in plan.to_export:
                self.stdout.write(f"{verb}export {entry.address} ({entry.reason})")
            if dry_run:
                self.stdout.write(f"dry run: would import {len(plan.to_import)} and export "
                                  f"{len(plan.to_export)} address(es); nothing changed")
                return
            imported, exported = suppression_sync.apply(plan)
        except OperatorError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"imported {imported} and exported {exported} address(es)")
