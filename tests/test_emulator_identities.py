"""``manage.py ses_address verify|list|delete`` against the project's SES emulator over HTTP,
SES v1 and v2: the command as operators run it, the emulator as the demo and the compose
stack serve it."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    out = StringIO()
    call_command("ses_address", *args, stdout=out)
    return out.getvalue()


@pytest.fixture(params=[False, True], ids=["v1", "v2"])
def api(request, ses_emulator, settings):
    settings.USE_SES_V2 = request.param
    return ses_emulator


def listed() -> dict[str, dict]:
    return {item["identity"]: item for item in json.loads(run("list", "--json"))}


def test_verify_list_delete_round_trip(api, settings):
    assert listed() == {}
    assert "mails that address a link" in run("verify", "new@example.org")
    domain = run("verify", "Example.NET")
    cnames = [line.split() for line in domain.splitlines() if " CNAME " in line]
    assert len(cnames) == 3
    for name, _, value, *_ in cnames:
        token = name.split(".", 1)[0]
        assert name == f"{token}._domainkey.example.net"
        assert value == f"{token}.dkim.amazonses.com"
    assert ("_amazonses.example.net" in domain) is (not settings.USE_SES_V2)  # v1's TXT
    assert listed() == {
        "new@example.org": {"identity": "new@example.org", "kind": "address",
                            "status": "success"},
        "example.net": {"identity": "example.net", "kind": "domain", "status": "success"},
    }
    assert run("delete", "new@example.org").strip() == "Deleted SES identity new@example.org."
    assert set(listed()) == {"example.net"}
    with pytest.raises(CommandError, match="no SES identity 'gone@example.org'"):
        run("delete", "gone@example.org")


def test_v1_domain_verification_gives_the_txt_record(ses_emulator, settings):
    settings.USE_SES_V2 = False
    text = run("verify", "example.org")
    [txt] = [line.split() for line in text.splitlines() if " TXT " in line]
    assert txt[0] == "_amazonses.example.org"
    assert txt[2] == ses_emulator.identities.get("example.org").verification_token
    assert run("verify", "example.org") == text  # SES answers a repeat with the same tokens


def test_v2_answers_as_ses_does_for_duplicates_and_unknowns(ses_emulator):
    client = boto3.client("sesv2", endpoint_url=ses_emulator.url, region_name="us-east-1")
    client.create_email_identity(EmailIdentity="a@example.com")
    with pytest.raises(ClientError) as raised:
        client.create_email_identity(EmailIdentity="a@example.com")
    assert raised.value.response["Error"]["Code"] == "AlreadyExistsException"
    with pytest.raises(ClientError) as raised:
        client.get_email_identity(EmailIdentity="b@example.com")
    assert raised.value.response["Error"]["Code"] == "NotFoundException"
    for n in range(3):
        client.create_email_identity(EmailIdentity=f"d{n}.example.com")
    first = client.list_email_identities(PageSize=2)
    rest = client.list_email_identities(PageSize=2, NextToken=first["NextToken"])
    names = [i["IdentityName"] for i in first["EmailIdentities"] + rest["EmailIdentities"]]
    assert names == ["a@example.com", "d0.example.com", "d1.example.com", "d2.example.com"]
    assert "NextToken" not in rest


def test_the_command_in_its_own_process(ses_emulator):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "SEACUCUMBER_ENDPOINT_URL": ses_emulator.url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "django", "ses_address"]
    done = subprocess.run([*command, "verify", "ops@example.com"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*command, "list"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "address  ops@example.com  success" in done.stdout
    assert ses_emulator.identities.names() == ["ops@example.com"]
