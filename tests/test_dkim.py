"""DKIM signing in the worker, verified independently with dkimpy on the message as the SES
endpoint (moto's server) received it, with the public key from a test key (no DNS)."""

import re
import subprocess
import sys
from email.mime.image import MIMEImage
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.apps import apps
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives

from seacucumber import dkim, signals
from seacucumber.exceptions import PermanentSendError
from tests.conftest import SENDER

ROOT = Path(__file__).resolve().parent.parent
PNG = bytes.fromhex("89504e470d0a1a0a") + bytes(range(256)) * 8
DOT_BODY = "Intro\n.\n.leading dot\n..two dots\nFrom the start of a line\n. \nend.\n"


def received(sent) -> bytes:
    """What moto received: it keeps the raw bytes decoded (strictly) as UTF-8, so encoding
    them again gives the bytes back exactly."""
    return sent.raw_data.encode("utf-8")


def tags(raw: bytes) -> dict[str, str]:
    header = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    match = re.search(r"^DKIM-Signature:(.*?)\r\n(?=\S)", header, re.S | re.M)
    assert match, "no DKIM-Signature header"
    value = re.sub(r"\s+", "", match.group(1))
    return dict(part.split("=", 1) for part in value.split(";") if part)


def verifies(raw: bytes, key, domain: str = "example.com", selector: str = "ses") -> bool:
    return dkimpy.verify(raw, dnsfunc=key.dnsfunc(f"{selector}._domainkey.{domain}.".encode()))


@pytest.fixture
def signing(settings, dkim_key):
    settings.DKIM_DOMAIN = "example.com"
    settings.DKIM_PRIVATE_KEY = dkim_key.pem
    return dkim_key


def rich_message() -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject="Grüße aus Köln ☕ — a long subject line " + "that folds " * 8,
        body=DOT_BODY + "Ünïcödé body ✓\n" + "long line " * 150,
        from_email=f"Zoë Sender <{SENDER}>",
        to=["Åsa Recipient <to@example.com>", "plain@example.com"],
        cc=["Jürgen <cc@example.com>"],
        bcc=["hidden@example.com"],
        reply_to=["reply@example.com"],
    )
    message.attach_alternative("<p>HTML ✓</p>\n<p>.dot line</p>", "text/html")
    message.attach("data.bin", PNG, "application/octet-stream")
    message.attach("notes.txt", "Notizen: äöü\n.dot\n", "text/plain")
    inline = MIMEImage(PNG, "png")
    inline.add_header("Content-ID", "<logo>")
    message.attach(inline)
    return message


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_signature_verifies_on_what_ses_received(moto_ses, eager, signing, settings, v2):
    settings.USE_SES_V2 = v2
    assert mail.get_connection().send_messages([rich_message()]) == 1
    [sent] = moto_ses.wait_for(1)
    raw = received(sent)
    assert raw.startswith(b"DKIM-Signature: ")
    assert b"\r\n.leading dot\r\n..two dots\r\n" in raw  # dots reach SES as written
    assert b"hidden@example.com" not in raw
    found = tags(raw)
    assert (found["d"], found["s"], found["c"], found["a"]) == (
        "example.com", "ses", "relaxed/relaxed", "rsa-sha256")
    assert found["h"] == ("from:from:to:cc:subject:reply-to:mime-version:content-type:"
                          "content-transfer-encoding")  # From twice: oversigned
    assert verifies(raw, signing)


def test_signature_survives_what_ses_changes_and_breaks_on_tampering(moto_ses, eager, signing):
    mail.send_mail("Hello", DOT_BODY, SENDER, ["to@example.com"])
    raw = received(moto_ses.wait_for(1)[0])
    assert verifies(raw, signing)
    # SES replaces Message-ID and Date and adds headers of its own: none of them is signed
    ses_like = re.sub(rb"\r\nMessage-ID: [^\r]*", b"\r\nMessage-ID: <0100-ses@email.amazonses.com>",
                      raw)
    ses_like = re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: Mon, 1 Jan 2029 00:00:00 +0000", ses_like)
    ses_like = b"Feedback-ID: 1.us-east-1.x:AmazonSES\r\n" + ses_like
    assert ses_like != raw and verifies(ses_like, signing)
    assert not verifies(raw.replace(b"Subject: Hello", b"Subject: Hullo"), signing)
    assert not verifies(raw.replace(b"\r\n..two dots", b"\r\n.two dots"), signing)
    assert not verifies(raw, signing, selector="other")


def test_a_key_per_sender_domain(moto_ses, eager, settings, dkim_key, other_dkim_key):
    moto_ses.verify("mail.other.org")  # moto does not count a parent domain's verification
    moto_ses.verify("third.net")
    settings.SEACUCUMBER_DKIM_KEYS = {
        "example.com": {"private_key": dkim_key.pem, "selector": "s1"},
        "other.org": {"private_key": other_dkim_key.pem.encode(), "selector": "s2",
                      "headers": ["From", "Subject", "Reply-To"]},
    }
    mail.send_mail("One", "B", SENDER, ["a@example.com"])
    mail.send_mail("Two", "B", "News <news@mail.other.org>", ["b@example.com"])
    mail.send_mail("Three", "B", "x@third.net", ["c@example.com"])
    sent = {m.destinations[0]: received(m) for m in moto_ses.wait_for(3)}
    one, two, three = sent["a@example.com"], sent["b@example.com"], sent["c@example.com"]
    assert (tags(one)["d"], tags(one)["s"]) == ("example.com", "s1")
    assert verifies(one, dkim_key, "example.com", "s1")
    assert (tags(two)["d"], tags(two)["s"], tags(two)["h"]) == ("other.org", "s2",
                                                                "from:subject:reply-to")
    assert verifies(two, other_dkim_key, "other.org", "s2")
    assert not verifies(two, dkim_key, "other.org", "s2")
    assert b"DKIM-Signature" not in three  # no key for third.net and no default


def test_default_key_signs_domains_without_their_own(moto_ses, eager, signing, settings,
                                                     other_dkim_key):
    moto_ses.verify("other.org")
    settings.SEACUCUMBER_DKIM_KEYS = {"other.org": {"private_key": other_dkim_key.pem}}
    mail.send_mail("One", "B", SENDER, ["a@example.com"])
    mail.send_mail("Two", "B", "x@other.org", ["b@example.com"])
    sent = {m.destinations[0]: received(m) for m in moto_ses.wait_for(2)}
    assert verifies(sent["a@example.com"], signing, "example.com", "ses")
    assert verifies(sent["b@example.com"], other_dkim_key, "other.org", "ses")


def test_no_dkim_settings_no_signature(moto_ses, eager):
    mail.send_mail("Hi", "B", SENDER, ["a@example.com"])
    assert b"DKIM-Signature" not in received(moto_ses.wait_for(1)[0])


def test_key_is_parsed_once_per_process(settings, signing):
    raw = EmailMessage("Hi", "B", SENDER, ["a@example.com"]).message().as_bytes()
    dkim.sign(raw)
    first = dkim.signers()
    misses = dkim._load_key.cache_info().misses
    for _ in range(3):
        assert dkim.sign(raw).startswith(b"DKIM-Signature: ")
    assert dkim.signers() is first
    assert dkim._load_key.cache_info().misses == misses
    settings.DKIM_SELECTOR = "s2"  # override_settings takes effect at once
    assert tags(dkim.sign(raw))["s"] == "s2"


def test_txt_record_matches_the_public_key(dkim_key):
    assert dkim.txt_record(dkim_key.pem) == dkim_key.txt.decode()
    pkcs1 = serialization.load_pem_private_key(dkim_key.pem.encode(), None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode().replace("\n", "\r\n")
    assert dkim.txt_record("  " + pkcs1 + "\n") == dkim_key.txt.decode()


def _ec_key() -> str:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


def _encrypted(pem: str) -> str:
    key = serialization.load_pem_private_key(pem.encode(), None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"secret")).decode()


@pytest.mark.parametrize("change, message", [
    ({"DKIM_PRIVATE_KEY": "not a key"}, "DKIM_PRIVATE_KEY is not a PEM private key"),
    ({"DKIM_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
     "DKIM_PRIVATE_KEY is not a PEM private key"),
    ({"DKIM_PRIVATE_KEY": "EC"}, "DKIM_PRIVATE_KEY is neither an RSA nor an Ed25519 key"),
    ({"DKIM_PRIVATE_KEY": "ENCRYPTED"}, "DKIM_PRIVATE_KEY is encrypted"),
    ({"DKIM_PRIVATE_KEY": None}, "DKIM_DOMAIN is set but DKIM_PRIVATE_KEY is not"),
    ({"DKIM_DOMAIN": None}, "DKIM_PRIVATE_KEY is set but DKIM_DOMAIN is not"),
    ({"DKIM_DOMAIN": "not a domain"}, "DKIM_DOMAIN 'not a domain' is not a domain name"),
    ({"DKIM_SELECTOR": "bad selector"}, "DKIM_SELECTOR 'bad selector' is not a DKIM selector"),
    ({"DKIM_HEADERS": ["To", "Subject"]}, "DKIM_HEADERS must include From"),
    ({"DKIM_HEADERS": ["From", "Bcc"]}, "DKIM_HEADERS: 'bcc' must not be signed"),
    ({"DKIM_HEADERS": "From"}, "DKIM_HEADERS must be a list of header names"),
    ({"DKIM_HEADERS": ["From", "Message-ID"]}, "DKIM_HEADERS: 'message-id' must not be signed: "
     "SES sets or rewrites it"),
    ({"SEACUCUMBER_DKIM_KEYS": {"other.org": {"selector": "x"}}},
     "SEACUCUMBER_DKIM_KEYS['other.org'] must be a dict with 'private_key'"),
    ({"SEACUCUMBER_DKIM_KEYS": {"other.org": {"private_key": "x"}}},
     "SEACUCUMBER_DKIM_KEYS['other.org']['private_key'] is not a PEM private key"),
    ({"SEACUCUMBER_DKIM_KEYS": {"other.org": []}},
     "SEACUCUMBER_DKIM_KEYS['other.org'] is an empty list"),
    ({"SEACUCUMBER_DKIM_KEYS": {"other.org": [{"private_key": "SAME"}, {"private_key": "SAME"}]}},
     "SEACUCUMBER_DKIM_KEYS['other.org']: each key needs a selector of its own"),
    ({"SEACUCUMBER_DKIM_KEYS": {"other.org": [{"selector": "a"}]}},
     "SEACUCUMBER_DKIM_KEYS['other.org'][0] must be a dict with 'private_key'"),
])
def test_bad_settings_fail_at_start_up(settings, signing, change, message):
    for name, value in change.items():
        if value == "EC":
            value = _ec_key()
        elif value == "ENCRYPTED":
            value = _encrypted(signing.pem)
        elif isinstance(value, dict):
            value = {d: [{**e, "private_key": signing.pem} if e.get("private_key") == "SAME"
                         else e for e in entries] if isinstance(entries, list) else entries
                     for d, entries in value.items()}
        setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured) as caught:
        apps.get_app_config("seacucumber").ready()
    assert str(caught.value).startswith(message)
    key_material = (signing.pem.splitlines()[1], "AAAA", "not a key")
    assert not any(part in str(caught.value) for part in key_material)


def test_process_with_a_bad_key_does_not_start():
    code = (
        "import django; from django.conf import settings; "
        "settings.configure(INSTALLED_APPS=['seacucumber'], DKIM_DOMAIN='example.com', "
        "DKIM_PRIVATE_KEY='-----BEGIN RSA PRIVATE KEY-----\\nbroken\\n'); django.setup()"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert ("django.core.exceptions.ImproperlyConfigured: DKIM_PRIVATE_KEY is not a PEM "
            "private key") in done.stderr


def test_signing_failure_fails_the_message_visibly(moto_ses, eager, signing, settings):
    failures = []

    def record(**kwargs):
        failures.append(kwargs)

    settings.DKIM_PRIVATE_KEY = "changed after start-up, broken"
    signals.message_failed.connect(record)
    try:
        with pytest.raises(PermanentSendError) as caught:
            mail.send_mail("Hi", "B", SENDER, ["a@example.com"])
    finally:
        signals.message_failed.disconnect(record)
    assert caught.value.code == "DKIMSigningError"
    assert "DKIM_PRIVATE_KEY is not a PEM private key" in caught.value.message
    assert [f["code"] for f in failures] == ["DKIMSigningError"]
    assert moto_ses.sent() == []


@pytest.mark.parametrize("pipeline", ["redis"], indirect=True)
def test_real_prefork_worker_signs(pipeline, start_worker, moto_ses, dkim_key):
    env = pipeline.worker_env(DJANGO_SETTINGS_MODULE="tests.settings_dkim",
                              TEST_DKIM_DOMAIN="example.com", TEST_DKIM_PRIVATE_KEY=dkim_key.pem)
    start_worker(env, queues=pipeline.queue, pool="prefork", concurrency=2)
    messages = [rich_message() for _ in range(3)]
    for i, message in enumerate(messages):
        message.to = [f"to{i}@example.com"]
        message.cc = []
    assert mail.get_connection().send_messages(messages) == 3
    sent = moto_ses.wait_for(3)
    assert all(verifies(received(m), dkim_key) for m in sent)
    assert all(received(m).isascii() for m in sent)  # 8-bit text parts went 7-bit


@pytest.mark.parametrize("pipeline", ["redis"], indirect=True)
def test_worker_with_a_bad_key_does_not_start(pipeline, start_worker):
    env = pipeline.worker_env(DJANGO_SETTINGS_MODULE="tests.settings_dkim",
                              TEST_DKIM_DOMAIN="example.com", TEST_DKIM_PRIVATE_KEY="garbage")
    with pytest.raises(RuntimeError, match="worker exited at start") as caught:
        start_worker(env, queues=pipeline.queue)
    assert "ImproperlyConfigured: DKIM_PRIVATE_KEY is not a PEM private key" in str(caught.value)



# --- 7-bit, oversigning, list headers, Ed25519 and dual signatures (issue 15) ---------------

def parts(raw: bytes) -> list:
    from email import message_from_bytes, policy

    return [p for p in message_from_bytes(raw, policy=policy.default).walk()
            if not p.is_multipart()]


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_eight_bit_text_reaches_ses_seven_bit_and_signed(moto_ses, eager, signing, settings, v2):
    """Django sends utf-8 text as 8bit; what SES gets is 7-bit (quoted-printable), every part
    decodes back to what was sent, and the signature covers the converted bytes."""
    settings.USE_SES_V2 = v2
    message = rich_message()
    assert b"Content-Transfer-Encoding: 8bit" in message.message().as_bytes()  # Django's own
    assert mail.get_connection().send_messages([message]) == 1
    raw = received(moto_ses.wait_for(1)[0])
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"8bit" not in raw.lower()
    found = {(p.get_content_type(), p.get_filename()): p for p in parts(raw)}
    text = found[("text/plain", None)]
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    # (Django 6's email API ends a text part with a line break)
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == message.body
    html = found[("text/html", None)].get_content().replace("\r\n", "\n")
    assert html.rstrip("\n") == "<p>HTML ✓</p>\n<p>.dot line</p>"
    notes = found[("text/plain", "notes.txt")]
    assert notes.get_content().replace("\r\n", "\n") == "Notizen: äöü\n.dot\n"
    assert found[("application/octet-stream", "data.bin")].get_content() == PNG
    assert found[("image/png", None)].get_content() == PNG
    assert verifies(raw, signing)


def test_seven_bit_leaves_the_callers_parts_alone():
    from email.mime.text import MIMEText

    from seacucumber.mime import seven_bit

    attached = MIMEText("Grüße", "plain", "utf-8")
    attached.replace_header("Content-Transfer-Encoding", "8bit")
    attached.set_payload("Grüße".encode().decode("ascii", "surrogateescape"))
    before = attached.as_bytes()
    message = EmailMessage("Hi", "plain ascii", SENDER, ["a@example.com"])
    message.attach(attached)
    built = message.message()
    converted = seven_bit(built)
    assert converted is not built and converted.as_bytes().isascii()
    assert attached.as_bytes() == before  # the caller's part is unchanged
    assert seven_bit(converted) is converted  # nothing left to convert: the same object


def test_a_second_from_breaks_the_oversigned_signature(moto_ses, eager, signing, settings):
    mail.send_mail("Hello", "Body", SENDER, ["to@example.com"])
    raw = received(moto_ses.wait_for(1)[0])
    assert verifies(raw, signing)
    forged = re.sub(rb"(?m)^(From: [^\r]*\r\n)", rb"From: ceo@example.com\r\n\1", raw, count=1)
    assert forged.count(b"\r\nFrom: ") + forged.startswith(b"From: ") == 2
    assert not verifies(forged, signing)
    # DKIM_HEADERS is taken as given: duplicates are kept, not collapsed (dkimpy's own
    # verifier adds an extra From of its own accord; OpenDKIM and Mail::DKIM rely on h=)
    settings.DKIM_HEADERS = ["From", "From", "Subject", "Subject", "To"]
    mail.send_mail("Hello", "Body", SENDER, ["once@example.com"])
    [once] = [received(m) for m in moto_ses.wait_for(2) if m.destinations[0] == "once@example.com"]
    assert tags(once)["h"] == "from:from:subject:subject:to"
    assert verifies(once, signing)
    forged = once.replace(b"\r\nSubject: ", b"\r\nSubject: Win!\r\nSubject: ", 1)
    assert not verifies(forged, signing)


def test_list_headers_are_signed_whenever_present(moto_ses, eager, signing, settings):
    settings.DKIM_HEADERS = ["From", "Subject"]  # narrowed: the list headers are signed anyway
    unsubscribe = {"List-Unsubscribe": "<https://example.com/u/token>",
                   "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    EmailMessage("News", "Body", SENDER, ["a@example.com"], headers=unsubscribe).send()
    mail.send_mail("Receipt", "Body", SENDER, ["b@example.com"])
    sent = {m.destinations[0]: received(m) for m in moto_ses.wait_for(2)}
    news, receipt = sent["a@example.com"], sent["b@example.com"]
    assert tags(news)["h"] == "from:subject:list-unsubscribe:list-unsubscribe-post"
    assert verifies(news, signing)
    assert not verifies(news.replace(b"/u/token", b"/u/other"), signing)
    assert not verifies(news.replace(b"=One-Click", b"=Two-Click"), signing)
    # absent: not signed as absent (SES's subscription management may add them after us)
    assert tags(receipt)["h"] == "from:subject"
    assert verifies(receipt, signing)


@pytest.mark.parametrize("form", ["pem", "seed"])
def test_ed25519_key_signs(moto_ses, eager, settings, ed25519_key, form):
    settings.DKIM_DOMAIN = "example.com"
    settings.DKIM_PRIVATE_KEY = ed25519_key.pem if form == "pem" else ed25519_key.seed
    mail.send_mail("Hello", "Grüße ✓", SENDER, ["to@example.com"])
    raw = received(moto_ses.wait_for(1)[0])
    assert raw.count(b"DKIM-Signature: ") == 1
    assert tags(raw)["a"] == "ed25519-sha256"
    assert verifies(raw, ed25519_key)
    assert not verifies(raw.replace(b"Subject: Hello", b"Subject: Hullo"), ed25519_key)
    assert dkim.txt_record(settings.DKIM_PRIVATE_KEY) == ed25519_key.txt.decode()


def test_dual_rsa_and_ed25519_signatures(moto_ses, eager, settings, dkim_key, ed25519_key):
    settings.SEACUCUMBER_DKIM_KEYS = {"example.com": [
        {"private_key": dkim_key.pem, "selector": "rsa1"},
        {"private_key": ed25519_key.pem, "selector": "ed1"},
    ]}
    rich = rich_message()
    rich.cc = []
    assert mail.get_connection().send_messages([rich]) == 1
    raw = received(moto_ses.wait_for(1)[0])
    assert raw.count(b"DKIM-Signature: ") == 2
    records = {b"rsa1._domainkey.example.com.": dkim_key.txt,
               b"ed1._domainkey.example.com.": ed25519_key.txt}

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    verifier = dkimpy.DKIM(raw)
    assert [verifier.verify(idx=i, dnsfunc=dns) for i in (0, 1)] == [True, True]
    algorithms = [dict(p.split("=", 1) for p in re.sub(rb"\s+", b"", h).decode().split(";")
                       if p)["a"]
                  for h in re.findall(rb"(?ms)^DKIM-Signature:(.*?)\r\n(?=\S)", raw)]
    assert algorithms == ["rsa-sha256", "ed25519-sha256"]
    # a verifier that knows only one of the keys still passes that signature
    only_rsa = {b"rsa1._domainkey.example.com.": dkim_key.txt}
    assert verifier.verify(idx=0, dnsfunc=lambda n, timeout=5: only_rsa.get(n))
    tampered = dkimpy.DKIM(raw.replace(b"Subject: ", b"Subject: X", 1))
    assert not any(tampered.verify(idx=i, dnsfunc=dns) for i in (0, 1))
