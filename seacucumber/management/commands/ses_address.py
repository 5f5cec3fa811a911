"""``manage.py ses_address verify|list|delete``: manage SES identities (addresses, domains)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from seacucumber.conf import conf
from seacucumber.exceptions import OperatorError
from seacucumber.ses import identities


class Command(BaseCommand):
    # An SES query: the project's system checks (webhook settings, say) are not its business.
    requires_system_checks: list[str] = []
    help = (
        "Verify, list and delete the SES identities (email addresses and domains) this "
        "project sends from. Uses the backend's credentials, region and endpoint."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        verify = actions.add_parser(
            "verify", help="ask SES to verify an address or a domain (prints DNS records)")
        verify.add_argument("identity", help="name@example.com or example.com")
        verify.add_argument("--json", action="store_true", help="print JSON")
        listing = actions.add_parser("list", help="list identities and their status")
        listing.add_argument("--json", action="store_true", help="print JSON")
        delete = actions.add_parser("delete", help="delete an identity")
        delete.add_argument("identity", help="name@example.com or example.com")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, f"do_{options['action']}")(options)
        except (OperatorError, identities.InvalidIdentity) as exc:
            raise CommandError(str(exc)) from None

    def do_verify(self, options: dict[str, Any]) -> None:
        done = identities.verify(options["identity"])
        if options["json"]:
            self.stdout.write(json.dumps(done.to_json(), indent=2))
            return
        if done.kind == identities.ADDRESS:
            self.stdout.write(
                f"SES is verifying {done.name}: it mails that address a link to click.")
            return
        self.stdout.write(f"SES is verifying the domain {done.name}. Publish these DNS records:")
        width = max((len(record.name) for record in done.records), default=0)
        for record in done.records:
            self.stdout.write(
                f"  {record.name:<{width}}  {record.type:<5}  {record.value}  ({record.purpose})")
        if not done.records:
            self.stdout.write("  (SES gave no records yet: run `ses_address verify` again "
                              "later, or see the SES console)")

    def do_list(self, options: dict[str, Any]) -> None:
        found = identities.list_identities()
        if options["json"]:
            self.stdout.write(json.dumps(
                [{"identity": i.name, "kind": i.kind, "status": i.status} for i in found],
                indent=2))
            return
        api = "v2" if conf.USE_SES_V2 else "v1"
        self.stdout.write(f"SES identities in {identities.region()} (SES {api} API):")
        if not found:
            self.stdout.write("  none")
        width = max((len(i.name) for i in found), default=0)
        for identity in found:
            self.stdout.write(f"  {identity.kind:<8} {identity.name:<{width}}  {identity.status}")

    def do_delete(self, options: dict[str, Any]) -> None:
        name = identities.delete(options["identity"])
        self.stdout.write(f"Deleted SES identity {name}.")
