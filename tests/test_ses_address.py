"""``manage.py ses_address`` against moto's SES server, SES v1 and v2."""

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.conftest import SENDER
from tests.fixtures_ops import v1_error, v2_error

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    out = StringIO()
    call_command("ses_address", *args, stdout=out)
    return out.getvalue()


@pytest.fixture(params=[False, True], ids=["v1", "v2"])
def api(request, moto_ses, settings):
    settings.USE_SES_V2 = request.param
    return moto_ses


def listed(*extra: str) -> dict[str, dict]:
    return {item["identity"]: item for item in json.loads(run("list", "--json", *extra))}


def test_verify_list_delete_round_trip(api):
    assert "mails that address a link" in run("verify", "new@example.org")
    run("verify", "Example.NET")
    found = listed()
    assert found["new@example.org"]["kind"] == "address"
    assert found["example.net"] == {"identity": "example.net", "kind": "domain",
                                    "status": "success"}
    assert found[SENDER]["status"] == "success"
    text = run("list")
    assert "address  new@example.org" in text and "domain   example.net" in text

    assert run("delete", "new@example.org").strip() == "Deleted SES identity new@example.org."
    run("delete", "example.net")
    assert set(listed()) == {SENDER}


def test_domain_verify_prints_txt_and_dkim_cnames_v1(moto_ses, settings):
    settings.USE_SES_V2 = False
    text = run("verify", "example.org")
    assert "_amazonses.example.org" in text and " TXT " in text
    # moto answers VerifyDomainIdentity and VerifyDomainDkim with fixed tokens
    assert "QTKknzFg2J4ygwa+XvHAxUl1hyHoY0gVfZdfjIedHZ0=" in text
    cnames = [line for line in text.splitlines() if " CNAME " in line]
    assert len(cnames) == 3
    for line in cnames:
        name, kind, value = line.split()[:3]
        token = name.split("._domainkey.")[0]
        assert name == f"{token}._domainkey.example.org"
        assert value == f"{token}.dkim.amazonses.com"

    data = json.loads(run("verify", "example.org", "--json"))
    assert data["kind"] == "domain"
    assert [r["type"] for r in data["records"]] == ["TXT", "CNAME", "CNAME", "CNAME"]
    assert data["records"][0]["name"] == "_amazonses.example.org"


def test_domain_verify_v2_creates_the_identity(moto_ses, settings):
    settings.USE_SES_V2 = True
    text = run("verify", "example.org")
    # moto's v2 CreateEmailIdentity gives no DKIM tokens: the command says so
    assert "SES gave no records yet" in text
    assert "example.org" in listed()


def test_idn_domain_is_verified_in_punycode(api):
    run("verify", "bücher.example")
    assert "xn--bcher-kva.example" in listed()


@pytest.mark.parametrize(
    "bad", ["nonsense", "not an address@", "a@b@c", "bad-.com", "x@y", "exa mple.com"])
def test_invalid_input_is_a_command_error(api, bad):
    with pytest.raises(CommandError) as caught:
        run("verify", bad)
    message = str(caught.value)
    assert bad in message and "\n" not in message
    assert "address" in message or "domain" in message


def test_deleting_an_unknown_identity_fails(api):
    with pytest.raises(CommandError, match="no SES identity 'nobody@example.org'"):
        run("delete", "nobody@example.org")


def test_ses_error_is_one_line_naming_the_action(fake_endpoint, settings):
    settings.USE_SES_V2 = False
    fake_endpoint.routes["ListIdentities"] = v1_error(
        "AccessDenied", "User: arn:aws:iam::1:user/x is not authorized to perform: "
        "ses:ListIdentities")
    with pytest.raises(CommandError) as caught:
        run("list")
    assert str(caught.value).startswith("SES denied ListIdentities (AccessDenied): allow the "
                                        "IAM action ses:ListIdentities")
    settings.USE_SES_V2 = True
    fake_endpoint.routes["POST /v2/email/identities"] = v2_error(
        "BadRequestException", "Invalid domain", 400)
    with pytest.raises(CommandError, match="^SES refused CreateEmailIdentity: "
                                           "BadRequestException: Invalid domain$"):
        run("verify", "example.org")


def test_unreachable_endpoint_is_one_line(settings):
    from seacucumber.testing.processes import free_port

    settings.SEACUCUMBER_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    settings.SEACUCUMBER_CONNECT_TIMEOUT = 1
    with pytest.raises(CommandError, match="^cannot reach SES: Could not connect"):
        run("list")


def test_missing_credentials_say_so(settings, no_aws_credentials):
    settings.SEACUCUMBER_ENDPOINT_URL = "http://127.0.0.1:9"  # never reached: signing fails
    with pytest.raises(CommandError, match="^no AWS credentials found: set "
                                           "AWS_SES_ACCESS_KEY_ID"):
        run("list")


def test_command_line_exit_code_and_no_traceback(moto_ses):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "SEACUCUMBER_ENDPOINT_URL": moto_ses.url}
    done = subprocess.run(
        [sys.executable, "-m", "django", "ses_address", "verify", "nonsense"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "CommandError: 'nonsense' is neither an email address nor a domain name (example.com)")
    assert "Traceback" not in done.stderr + done.stdout

    done = subprocess.run(
        [sys.executable, "-m", "django", "ses_address", "list", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert {i["identity"] for i in json.loads(done.stdout)} == {SENDER}


def test_v2_domain_already_there_prints_its_dkim_cnames(fake_endpoint, settings):
    """Real SES v2 answers AlreadyExistsException for a known identity; the command then
    reads the identity and prints its Easy DKIM records (moto gives no tokens, so the
    answers come from a loopback endpoint speaking SES v2's protocol)."""
    from tests.fixtures_ops import v2_json

    settings.USE_SES_V2 = True
    fake_endpoint.routes["POST /v2/email/identities"] = v2_error(
        "AlreadyExistsException", "Email identity example.org already exists.", 400)
    fake_endpoint.routes["GET /v2/email/identities/example.org"] = v2_json({
        "IdentityType": "DOMAIN", "VerifiedForSendingStatus": False,
        "VerificationStatus": "PENDING",
        "DkimAttributes": {"SigningEnabled": True, "Status": "PENDING",
                           "Tokens": ["tok1", "tok2", "tok3"]},
    })
    data = json.loads(run("verify", "example.org", "--json"))
    assert data["status"] == "pending"
    assert [(r["name"], r["type"], r["value"]) for r in data["records"]] == [
        (f"{t}._domainkey.example.org", "CNAME", f"{t}.dkim.amazonses.com")
        for t in ("tok1", "tok2", "tok3")]
    assert fake_endpoint.requests == ["POST /v2/email/identities",
                                      "GET /v2/email/identities/example.org"]
