"""``manage.py ses_suppression sync`` against the emulator's account-level suppression list
(SES v2 ListSuppressedDestinations, paginated, and PutSuppressedDestination) over HTTP."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from seacucumber.models import SuppressedAddress
from seacucumber.ses.clients import client

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("ses_suppression", "sync", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def lists(ses_emulator):
    """SES's list: 5 entries over pages of 2; ours: one shared, three of our own."""
    ses_emulator.configure(suppression_page_size=2)
    ses = client("sesv2")
    for address, reason in [("b1@example.com", "BOUNCE"), ("b2@example.com", "BOUNCE"),
                            ("c1@example.com", "COMPLAINT"), ("Shared@example.com", "BOUNCE"),
                            ("c2@example.com", "COMPLAINT")]:
        ses.put_suppressed_destination(EmailAddress=address, Reason=reason)
    SuppressedAddress.objects.bulk_create([
        SuppressedAddress(address="shared@example.com", reason="complaint"),
        SuppressedAddress(address="local-bounce@example.org", reason="bounce"),
        SuppressedAddress(address="local-complaint@example.org", reason="complaint"),
        SuppressedAddress(address="by-hand@example.org", reason="manual"),
    ])
    ses_emulator.suppression.put_calls = 0
    return ses_emulator


def local() -> dict[str, str]:
    return dict(SuppressedAddress.objects.values_list("address", "reason"))


def remote(emulator) -> dict[str, str]:
    return {a: e.reason for a, e in emulator.suppression.entries.items()}


def test_dry_run_prints_the_plan_and_changes_nothing(lists):
    before_local, before_remote = local(), remote(lists)
    out = run("--dry-run")
    assert "SES's list: 5 address(es); local list: 4" in out
    for line in ("would import b1@example.com (BOUNCE)", "would import c2@example.com (COMPLAINT)",
                 "would export by-hand@example.org (BOUNCE)",
                 "would export local-complaint@example.org (COMPLAINT)",
                 "dry run: would import 4 and export 3 address(es); nothing changed"):
        assert line in out
    assert "shared@example.com" not in out
    assert local() == before_local and remote(lists) == before_remote
    assert lists.suppression.put_calls == 0
    assert lists.suppression.list_calls == 3  # 5 entries in pages of 2: NextToken followed


def test_sync_imports_and_exports(lists):
    out = run()
    assert "imported 4 and exported 3 address(es)" in out
    assert local() == {
        "b1@example.com": "bounce", "b2@example.com": "bounce", "c1@example.com": "complaint",
        "c2@example.com": "complaint", "shared@example.com": "complaint",  # ours kept as is
        "local-bounce@example.org": "bounce", "local-complaint@example.org": "complaint",
        "by-hand@example.org": "manual"}
    assert remote(lists) == {
        "b1@example.com": "BOUNCE", "b2@example.com": "BOUNCE", "c1@example.com": "COMPLAINT",
        "c2@example.com": "COMPLAINT", "shared@example.com": "BOUNCE",
        "local-bounce@example.org": "BOUNCE", "local-complaint@example.org": "COMPLAINT",
        "by-hand@example.org": "BOUNCE"}
    detail = SuppressedAddress.objects.get(address="b1@example.com").detail
    assert "SES's account-level suppression list" in detail
    assert "imported 0 and exported 0 address(es)" in run()  # in step now


def test_import_only_and_export_only(lists):
    assert "imported 4 and exported 0" in run("--import-only")
    assert lists.suppression.put_calls == 0
    assert len(remote(lists)) == 5
    assert "imported 0 and exported 3" in run("--export-only")
    assert len(remote(lists)) == 8
    with pytest.raises(CommandError):
        call_command("ses_suppression", "sync", "--import-only", "--export-only")


def test_missing_permission_is_one_clear_line(lists):
    lists.configure(forbid_suppression=True)
    with pytest.raises(CommandError, match="allow the IAM action "
                                           "ses:ListSuppressedDestinations"):
        run()
    assert len(local()) == 4
