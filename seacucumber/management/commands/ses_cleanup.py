"""``manage.py ses_cleanup [--days N]``: delete old status records and seen SNS ids."""

from django.core.management.base import BaseCommand, CommandError

from ...conf import conf
from ...events.sns import forget_seen, replay_window
from ...status import cleanup


class Command(BaseCommand):
    help = ("Delete message status records and seen SNS message ids older than --days (seen "
            "ids inside the SNS replay window are kept: SEACUCUMBER_SNS_MAX_AGE).")

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days", type=float, default=None,
            help="Keep this many days (default: SEACUCUMBER_STATUS_RETENTION_DAYS).",
        )

    def handle(self, *args, days=None, **options) -> None:
        days = float(conf.SEACUCUMBER_STATUS_RETENTION_DAYS if days is None else days)
        if days < 0:
            raise CommandError("--days must not be negative")
        statuses = cleanup(days)
        seen = forget_seen(days)
        window = replay_window()
        kept = (f" (seen SNS ids of the last {window:g} s kept: SEACUCUMBER_SNS_MAX_AGE and "
                "SEACUCUMBER_SNS_CLOCK_SKEW)" if window is not None and window > days * 86400
                else "")
        self.stdout.write(f"deleted {statuses} status record(s) and {seen} seen SNS id(s) "
                          f"older than {days:g} day(s){kept}")
