"""``manage.py ses_suppression list [--json] [--topic TOPIC | --topics] | add ADDRESS...
[--topic TOPIC] | remove ADDRESS... [--topic TOPIC] | sync [--dry-run] [--import-only |
--export-only]``.

Without ``--topic`` these act on the list of addresses dropped from every send; with it, on
the addresses that left that topic (one-click unsubscribe), dropped from its sends only.
``sync`` exchanges the every-send list with SES's account-level suppression list (topic
suppressions stay local: SES's list is account-wide).
"""

import json

from django.core.management.base import BaseCommand, CommandError

from ...events import suppression, suppression_sync
from ...exceptions import InvalidOption, OperatorError
from ...models import SuppressedAddress, TopicSuppression
from ...payload import check_topic


def _topic(value: str) -> str:
    """A topic name, checked as the ``unsubscribe_topic`` option is."""
    try:
        return check_topic("--topic", value)
    except InvalidOption as exc:
        raise CommandError(str(exc)) from None


class Command(BaseCommand):
    help = ("List, add to or remove from the suppression list, or a topic's (--topic), or "
            "sync it with SES's account-level suppression list.")

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="Print the list.")
        listing.add_argument("--json", action="store_true", help="One JSON array.")
        which = listing.add_mutually_exclusive_group()
        which.add_argument("--topic", help="The addresses that left this topic.")
        which.add_argument("--topics", action="store_true",
                           help="The addresses that left any topic, with the topic.")
        adding = actions.add_parser("add", help="Add addresses (reason/source: manual).")
        adding.add_argument("addresses", nargs="+")
        adding.add_argument("--detail", default="", help="A note kept with each address.")
        adding.add_argument("--topic", help="Only for this topic's mail (unsubscribe_topic).")
        removing = actions.add_parser("remove", help="Remove addresses.")
        removing.add_argument("addresses", nargs="+")
        removing.add_argument("--topic", help="Resubscribe them to this topic.")
        syncing = actions.add_parser(
            "sync", help="Import SES's account-level suppression list (ListSuppressedDestinations) "
                         "and export local additions to it (PutSuppressedDestination).")
        syncing.add_argument("--dry-run", action="store_true",
                             help="Print what would change; change nothing.")
        only = syncing.add_mutually_exclusive_group()
        only.add_argument("--import-only", action="store_true", help="Only import from SES.")
        only.add_argument("--export-only", action="store_true", help="Only export to SES.")

    def handle(self, *args, action: str, **options) -> None:
        topic = _topic(options["topic"]) if options.get("topic") else None
        if action == "list":
            if topic is not None or options["topics"]:
                self._list_topics(topic, options["json"])
            else:
                self._list(options["json"])
            return
        if action == "sync":
            return self.sync(**options)
        bad = [a for a in options["addresses"] if "@" not in a]
        if bad:
            raise CommandError(f"not addresses: {', '.join(bad)}")
        if action == "add" and topic is not None:
            added = sum(suppression.unsubscribe(a, topic, TopicSuppression.Source.MANUAL)
                        for a in options["addresses"])
            self.stdout.write(f"added {added} address(es) to topic {topic}")
        elif action == "add":
            added = suppression.add(options["addresses"], SuppressedAddress.Reason.MANUAL,
                                    options["detail"])
            self.stdout.write(f"added {added} address(es)")
        elif topic is not None:
            removed = suppression.resubscribe(options["addresses"], topic)
            self.stdout.write(f"removed {removed} address(es) from topic {topic}")
        else:
            removed = suppression.remove(options["addresses"])
            self.stdout.write(f"removed {removed} address(es)")

    def _list(self, as_json: bool) -> None:
        self._print(SuppressedAddress.objects.order_by("address"),
                    ("address", "reason", "detail"), ("address", "reason"), as_json)

    def _list_topics(self, topic: str | None, as_json: bool) -> None:
        rows = TopicSuppression.objects.order_by("topic", "address")
        if topic is not None:
            rows = rows.filter(topic=topic)
        self._print(rows, ("address", "topic", "source"), ("address", "topic", "source"),
                    as_json)

    def _print(self, rows, fields: tuple[str, ...], columns: tuple[str, ...],
               as_json: bool) -> None:
        """``fields`` and the time as one JSON array, or ``columns`` and the time a line."""
        if as_json:
            self.stdout.write(json.dumps([
                {**{f: getattr(r, f) for f in fields}, "created_at": r.created_at.isoformat()}
                for r in rows], indent=2))
            return
        for r in rows:
            self.stdout.write("\t".join([*(getattr(r, c) for c in columns),
                                         f"{r.created_at:%Y-%m-%d %H:%M}"]))
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
