"""One-click unsubscribe (RFC 8058), short of a worker: the option and its checks, the per-
recipient sends and their headers, the signed tokens, the view (Django's test client), the
worker's screen of topic mail, the command, the admin and the system check. The browser and
end-to-end tests are in test_unsubscribe_browser.py and test_unsubscribe_e2e.py."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core import signing
from django.core.checks import run_checks
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command
from django.test import Client

from seacucumber import signals
from seacucumber.backend import SESBackend
from seacucumber.events import suppression
from seacucumber.exceptions import InvalidMessage, InvalidOption, InvalidUnsubscribeToken
from seacucumber.models import SuppressedAddress, TopicSuppression
from seacucumber.payload import (
    UNSUBSCRIBE_SALT,
    MailerOptions,
    OutboundSend,
    build_sends,
    read_unsubscribe_token,
    unsubscribe_token,
)
from seacucumber.send import screen
from tests.conftest import SENDER

BASE = "https://mail.example.com/ses/"
ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture
def base_url(settings):
    settings.SEACUCUMBER_BASE_URL = BASE
    return BASE


def topic_sends(recipients, topic="newsletter", **message_options):
    message = EmailMessage("News", "Body", SENDER, [], bcc=recipients, **message_options)
    return build_sends(message, MailerOptions.parse({"unsubscribe_topic": topic}))


def headers(send: OutboundSend):
    return message_from_bytes(send.raw, policy=policy.SMTP)


def link_of(send: OutboundSend) -> str:
    value = headers(send)["List-Unsubscribe"]
    assert value.startswith("<") and value.endswith(">")
    return value[1:-1]


def path_of(url: str) -> str:
    return urlsplit(url).path


# --- the option, the sends, the headers --------------------------------------------------------

def test_topic_mail_goes_one_recipient_per_send_each_with_its_own_link(base_url):
    recipients = [f"user{n}@example.com" for n in range(120)]
    sends = topic_sends(recipients)
    assert [s.recipients for s in sends] == [(r,) for r in recipients]
    assert len({s.message_id for s in sends}) == 120
    assert {s.options["unsubscribe_topic"] for s in sends} == {"newsletter"}
    links = [link_of(s) for s in sends]
    assert len(set(links)) == 120
    for send, link in zip(sends, links, strict=True):
        assert link.startswith(BASE + "unsubscribe/") and link.endswith("/")
        token = link[len(BASE + "unsubscribe/"):-1]
        assert read_unsubscribe_token(token) == (send.recipients[0], "newsletter")
        assert headers(send)["List-Unsubscribe-Post"] == ONE_CLICK
        assert headers(send)["Subject"] == "News"  # the rest of the message is intact


def test_mail_without_a_topic_is_unchanged(base_url):
    sends = build_sends(EmailMessage("Hi", "Body", SENDER, [f"u{n}@example.com"
                                                            for n in range(120)]))
    assert [len(s.recipients) for s in sends] == [50, 50, 20]
    assert "List-Unsubscribe" not in headers(sends[0])
    assert "unsubscribe_topic" not in sends[0].options
    assert sends[0].to_json()["v"] == 1


def test_topic_payload_is_version_3_and_round_trips(base_url):
    send = topic_sends(["a@example.com"])[0]
    data = json.loads(json.dumps(send.to_json()))
    assert data["v"] == 3
    assert OutboundSend.from_json(data) == send


def test_older_payload_versions_do_not_carry_a_topic(base_url):
    from seacucumber.exceptions import MalformedPayload

    data = topic_sends(["a@example.com"])[0].to_json()
    for version in (1, 2):
        with pytest.raises(MalformedPayload, match="options"):
            OutboundSend.from_json({**data, "v": version})


@pytest.mark.parametrize("topic", ["", " news", "news letter", "a" * 65, "news/letter", "é"])
def test_a_bad_topic_is_refused_when_the_backend_is_made(base_url, topic):
    with pytest.raises(InvalidOption, match="unsubscribe_topic"):
        SESBackend(unsubscribe_topic=topic)


def test_a_topic_without_a_base_url_is_refused_when_the_backend_is_made(settings):
    settings.SEACUCUMBER_BASE_URL = None
    with pytest.raises(InvalidOption, match="unsubscribe_topic.*SEACUCUMBER_BASE_URL"):
        SESBackend(unsubscribe_topic="newsletter")
    settings.SEACUCUMBER_BASE_URL = "/ses/"
    with pytest.raises(InvalidOption, match="not an absolute"):
        SESBackend(unsubscribe_topic="newsletter")


def test_a_base_url_removed_after_the_backend_was_made_fails_at_send_messages(settings):
    settings.SEACUCUMBER_BASE_URL = BASE
    connection = SESBackend(unsubscribe_topic="newsletter")
    settings.SEACUCUMBER_BASE_URL = None
    with pytest.raises(InvalidMessage, match="SEACUCUMBER_BASE_URL"):
        connection.send_messages([EmailMessage("News", "Body", SENDER, ["a@example.com"])])


def test_per_message_override_sets_or_clears_the_topic(base_url):
    plain = MailerOptions.parse({})
    message = EmailMessage("News", "Body", SENDER, ["a@example.com", "b@example.com"])
    message.seacucumber_options = {"unsubscribe_topic": "offers"}
    sends = build_sends(message, plain)
    assert [(s.recipients, s.options["unsubscribe_topic"]) for s in sends] == [
        (("a@example.com",), "offers"), (("b@example.com",), "offers")]
    receipt = EmailMessage("Receipt", "Body", SENDER, ["a@example.com", "b@example.com"])
    receipt.seacucumber_options = {"unsubscribe_topic": None}
    (send,) = build_sends(receipt, MailerOptions.parse({"unsubscribe_topic": "newsletter"}))
    assert "List-Unsubscribe" not in headers(send) and "unsubscribe_topic" not in send.options
    message.seacucumber_options = {"unsubscribe_topic": "bad topic"}
    with pytest.raises(InvalidMessage, match="seacucumber_options.*unsubscribe_topic"):
        build_sends(message, plain)


def test_a_message_with_its_own_list_unsubscribe_and_a_topic_is_refused(base_url):
    with pytest.raises(InvalidMessage, match="List-Unsubscribe"):
        topic_sends(["a@example.com"],
                    headers={"List-Unsubscribe": "<https://elsewhere.example/u>"})


def test_link_longer_than_a_header_line_may_be_is_refused(settings):
    settings.SEACUCUMBER_BASE_URL = "https://example.com/" + "x" * 1000 + "/"
    with pytest.raises(InvalidMessage, match="998"):
        topic_sends(["a@example.com"])


# --- tokens ------------------------------------------------------------------------------------

def legacy_token(address: str, topic: str) -> str:
    """A token of the form links had before they were encrypted: the address signed."""
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign_object([address, topic])


def encrypted(plain: bytes) -> str:
    """``plain`` sealed as a token is, with the test settings' key."""
    import base64

    from seacucumber import payload

    sealed = payload._token_cipher(b"tests-only").encrypt(plain, [payload._TOKEN_FORMAT])
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()


def test_token_round_trip_and_refusals(settings):
    settings.SECRET_KEY = "tests-only"  # noqa: S105
    token = unsubscribe_token("a@example.com", "newsletter")
    assert read_unsubscribe_token(token) == ("a@example.com", "newsletter")
    assert ":" not in token and "/" not in token and "=" not in token
    middle = len(token) // 2
    tampered = [
        token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:],
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        token[:20], token + "AAAA", "nonsense", "", "!!!!", "A" * 2000,
        encrypted(b'{"a": "a@example.com"}'),  # ours, but not an address and a topic
        encrypted(b"not json"),
        signing.Signer(salt="another.salt").sign_object(["a@example.com", "newsletter"]),
        signing.dumps(["a@example.com", "newsletter"]),  # Django's default salt
        legacy_token("a@example.com", "newsletter")[:-1] + "x",
        signing.Signer(salt=UNSUBSCRIBE_SALT).sign_object({"a": "a@example.com"}),
    ]
    for bad in tampered:
        with pytest.raises(InvalidUnsubscribeToken):
            read_unsubscribe_token(bad)


@pytest.mark.parametrize("address", ["jane.doe@example.com", "someone@b.example", "x" * 64 +
                                     "@example.com", "\"odd local\"@example.com"])
def test_a_token_does_not_carry_the_address_readably(address, base_url):
    """The finding: the token was the address in base64 beside its signature, so the page's
    masking hid nothing from whoever saw the link. Now no decoding of any part of the link
    shows the address (or its local part)."""
    import base64

    (send,) = topic_sends([address])
    link = link_of(send)
    token = link[len(BASE + "unsubscribe/"):-1]
    assert read_unsubscribe_token(token) == (address, "newsletter")
    local = address.rpartition("@")[0].strip('"')
    readings = [link]
    for start in range(4):  # base64 of any alignment, either alphabet
        piece = token[start:]
        piece = piece[:len(piece) - len(piece) % 4]
        for decode in (base64.urlsafe_b64decode, base64.b64decode):
            try:
                readings.append(decode(piece).decode("latin-1"))
            except ValueError:
                pass
    assert len(readings) > 1
    for text in readings:
        assert local not in text and "newsletter" not in text
    assert unsubscribe_token(address, "newsletter") == token  # deterministic: SIV


def test_links_of_the_older_signed_form_keep_working(settings):
    settings.SECRET_KEY = "old-key"  # noqa: S105
    old = legacy_token("a@example.com", "newsletter")
    settings.SECRET_KEY = "tests-only"  # noqa: S105
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    assert read_unsubscribe_token(old) == ("a@example.com", "newsletter")
    settings.SEACUCUMBER_UNSUBSCRIBE_LEGACY_TOKENS = False
    with pytest.raises(InvalidUnsubscribeToken, match="LEGACY_TOKENS is off"):
        read_unsubscribe_token(old)
    settings.SEACUCUMBER_UNSUBSCRIBE_LEGACY_TOKENS = True
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(InvalidUnsubscribeToken, match="signature does not match"):
        read_unsubscribe_token(old)


def test_tokens_follow_key_rotation(settings):
    settings.SECRET_KEY = "old-key"  # noqa: S105
    old = unsubscribe_token("a@example.com", "newsletter")
    settings.SECRET_KEY = "new-key"  # noqa: S105
    settings.SECRET_KEY_FALLBACKS = ["old-key"]
    assert read_unsubscribe_token(old) == ("a@example.com", "newsletter")
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(InvalidUnsubscribeToken):
        read_unsubscribe_token(old)


# --- the view ----------------------------------------------------------------------------------

def unsubscribe_path(address="a@example.com", topic="newsletter") -> str:
    return f"/ses/unsubscribe/{unsubscribe_token(address, topic)}/"


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)  # as a real request: no CSRF token is sent


@pytest.fixture
def heard():
    found = []

    def receiver(sender, **kwargs):
        found.append((kwargs["address"], kwargs["topic"], kwargs["source"]))

    signals.unsubscribed.connect(receiver)
    yield found
    signals.unsubscribed.disconnect(receiver)


def rows():
    return sorted(TopicSuppression.objects.values_list("address", "topic", "source"))


@pytest.mark.django_db
def test_one_click_post_suppresses_for_the_topic_once(client, heard, base_url):
    (send,) = topic_sends(["Reader@Example.com"])
    for _ in range(2):
        response = client.post(path_of(link_of(send)), ONE_CLICK,
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
        assert b"Unsubscribed" in response.content
    assert rows() == [("reader@example.com", "newsletter", "one-click")]
    assert heard == [("reader@example.com", "newsletter", "one-click")]
    assert not SuppressedAddress.objects.exists()  # only the topic, not every mail


@pytest.mark.django_db
def test_one_click_post_as_multipart_form_data(client, heard):
    # RFC 8058 allows either encoding; the test client's default is multipart
    response = client.post(unsubscribe_path(), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert rows() == [("a@example.com", "newsletter", "one-click")]


@pytest.mark.django_db
def test_get_shows_a_confirmation_page_and_changes_nothing(client, heard):
    response = client.get(unsubscribe_path("jane.doe@example.com"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "j\u2022\u2022\u2022@example.com" in page and "jane.doe" not in page
    assert "newsletter" in page
    assert 'method="post"' in page and 'name="List-Unsubscribe" value="One-Click"' in page
    assert response["Referrer-Policy"] == "no-referrer"
    assert client.head(unsubscribe_path()).status_code == 200
    assert rows() == [] and heard == []


@pytest.mark.django_db
def test_bad_tokens_answer_400_and_change_nothing(client, heard, settings):
    good = unsubscribe_token("a@example.com", "newsletter")
    settings.SECRET_KEY = "rotated-away"  # noqa: S105
    retired = unsubscribe_token("b@example.com", "newsletter")
    settings.SECRET_KEY = "tests-only"  # noqa: S105
    bad = [
        good[:-2] + ("xx" if not good.endswith("xx") else "yy"),
        signing.Signer(salt="seacucumber.other").sign_object(["a@example.com", "newsletter"]),
        retired,
        "garbage",
    ]
    for token in bad:
        path = f"/ses/unsubscribe/{token}/"
        assert client.get(path).status_code == 400, token
        response = client.post(path, ONE_CLICK, content_type="application/x-www-form-urlencoded")
        assert response.status_code == 400, token
        assert b"not valid" in response.content
    assert rows() == [] and heard == []


@pytest.mark.django_db
def test_one_click_post_with_a_link_of_the_older_form_already_in_inboxes(client, heard,
                                                                        settings):
    path = f"/ses/unsubscribe/{legacy_token('reader@example.com', 'newsletter')}/"
    page = client.get(path)
    assert page.status_code == 200 and "r\u2022\u2022\u2022@example.com" in page.content.decode()
    response = client.post(path, ONE_CLICK, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert rows() == [("reader@example.com", "newsletter", "one-click")]
    settings.SEACUCUMBER_UNSUBSCRIBE_LEGACY_TOKENS = False
    assert client.post(path, ONE_CLICK,
                       content_type="application/x-www-form-urlencoded").status_code == 400


@pytest.mark.django_db
def test_a_refused_token_is_logged_without_its_signature(client, caplog):
    """The finding: the log line quoted Django's "Signature ... does not match", the
    signature nearly whole. Now at most the token's first 6 characters."""
    value, signature = legacy_token("a@example.com", "newsletter").rsplit(":", 1)
    forged = value + ":" + signature[::-1]
    altered = unsubscribe_token("a@example.com", "newsletter")[:-4] + "AAAA"
    with caplog.at_level("WARNING", logger="seacucumber.events.unsubscribe"):
        for token in (forged, altered):
            assert client.get(f"/ses/unsubscribe/{token}/").status_code == 400
    lines = [r.getMessage() for r in caplog.records
             if r.name == "seacucumber.events.unsubscribe"]
    assert len(lines) == 2
    assert f"{forged[:6]!r}..." in lines[0] and "signature does not match" in lines[0]
    assert f"{altered[:6]!r}..." in lines[1]
    for line, token in zip(lines, (forged, altered), strict=True):
        assert signature[::-1][:8] not in line and token[6:14] not in line


@pytest.mark.django_db
def test_a_post_without_the_one_click_body_changes_nothing(client, heard):
    for body in ("", "List-Unsubscribe=Yes", "other=One-Click"):
        response = client.post(unsubscribe_path(), body,
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code == 400
    broken = client.post(unsubscribe_path(), "--x\r\n",
                         content_type="multipart/form-data; boundary=")
    assert broken.status_code == 400
    assert client.put(unsubscribe_path()).status_code == 405
    assert rows() == [] and heard == []


@pytest.mark.django_db
def test_no_login_needed_and_a_logged_in_user_changes_nothing_else(client):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    assert client.post(unsubscribe_path(), ONE_CLICK,
                       content_type="application/x-www-form-urlencoded").status_code == 200
    assert rows() == [("a@example.com", "newsletter", "one-click")]


# --- the worker's screen -----------------------------------------------------------------------

def outbound(recipients, topic=None):
    options = {"unsubscribe_topic": topic} if topic else {}
    return OutboundSend("m1", SENDER, tuple(recipients), b"raw", 0.0, options)


@pytest.mark.django_db
def test_screen_drops_a_topic_leaver_only_from_that_topic(settings, django_assert_num_queries):
    settings.SEACUCUMBER_SUPPRESSION_LIST = False
    suppression.unsubscribe("Left@example.com", "newsletter", "one-click")
    with django_assert_num_queries(1):
        assert screen.by_suppression_lists(outbound(["left@example.com"], "newsletter")) is None
    with django_assert_num_queries(1):
        kept = screen.by_suppression_lists(outbound(["LEFT@example.com"], "offers"))
    assert kept is not None and kept.recipients == ("LEFT@example.com",)
    with django_assert_num_queries(0):  # no topic, list off: nothing to look up
        assert screen.by_suppression_lists(outbound(["left@example.com"])) is not None


@pytest.mark.django_db
def test_screen_checks_both_lists_in_one_query(settings, django_assert_num_queries):
    settings.SEACUCUMBER_SUPPRESSION_LIST = True
    suppression.add(["bounced@example.com"], "bounce")
    suppression.unsubscribe("left@example.com", "newsletter", "one-click")
    dropped = []

    def receiver(sender, **kwargs):
        dropped.append(kwargs["suppressed"])

    signals.message_suppressed.connect(receiver)
    try:
        with django_assert_num_queries(1):
            assert screen.by_suppression_lists(outbound(
                ["bounced@example.com", "left@example.com"], "newsletter")) is None
        with django_assert_num_queries(1):
            kept = screen.by_suppression_lists(
                outbound(["bounced@example.com", "left@example.com"]))
    finally:
        signals.message_suppressed.disconnect(receiver)
    assert kept is not None and kept.recipients == ("left@example.com",)
    assert dropped == [["bounced@example.com", "left@example.com"], ["bounced@example.com"]]


# --- command, admin, check ---------------------------------------------------------------------

def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_suppression_command_with_topics(heard):
    assert run("ses_suppression", "add", "A@example.com", "b@example.com",
               "--topic", "newsletter") == "added 2 address(es) to topic newsletter\n"
    assert run("ses_suppression", "add", "a@example.com", "--topic", "newsletter") == (
        "added 0 address(es) to topic newsletter\n")
    run("ses_suppression", "add", "a@example.com", "--topic", "offers")
    assert heard == [("a@example.com", "newsletter", "manual"),
                     ("b@example.com", "newsletter", "manual"),
                     ("a@example.com", "offers", "manual")]
    listed = json.loads(run("ses_suppression", "list", "--topic", "newsletter", "--json"))
    assert [(e["address"], e["topic"], e["source"]) for e in listed] == [
        ("a@example.com", "newsletter", "manual"), ("b@example.com", "newsletter", "manual")]
    every = run("ses_suppression", "list", "--topics").splitlines()
    assert [line.split("\t")[:2] for line in every] == [
        ["a@example.com", "newsletter"], ["b@example.com", "newsletter"],
        ["a@example.com", "offers"]]
    assert run("ses_suppression", "list") == ""  # the every-mail list is untouched
    assert run("ses_suppression", "remove", "A@EXAMPLE.com", "--topic", "newsletter") == (
        "removed 1 address(es) from topic newsletter\n")
    assert rows() == [("a@example.com", "offers", "manual"),
                      ("b@example.com", "newsletter", "manual")]
    with pytest.raises(CommandError, match="topic name"):
        run("ses_suppression", "add", "a@example.com", "--topic", "no spaces")


@pytest.mark.django_db
def test_topic_suppressions_in_the_admin(client):
    suppression.unsubscribe("left@example.com", "newsletter", "one-click")
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    page = client.get("/admin/seacucumber/topicsuppression/")
    assert page.status_code == 200
    assert b"left@example.com" in page.content and b"newsletter" in page.content
    assert client.get("/admin/seacucumber/topicsuppression/?topic=newsletter").status_code == 200


def base_url_checks():
    return sorted(m.id for m in run_checks() if m.id.startswith("seacucumber.") and
                  m.id[-3:-1] == "03")


def test_system_check_on_the_base_url(settings):
    settings.SEACUCUMBER_BASE_URL = None
    assert base_url_checks() == []
    settings.SEACUCUMBER_BASE_URL = BASE
    assert base_url_checks() == []
    settings.SEACUCUMBER_BASE_URL = "http://localhost:8000/ses/"
    settings.DEBUG = False
    assert base_url_checks() == ["seacucumber.E031"]
    settings.DEBUG = True
    assert base_url_checks() == ["seacucumber.W030"]
    settings.SEACUCUMBER_BASE_URL = "mail.example.com/ses/"
    assert base_url_checks() == ["seacucumber.E030"]


def signed_headers(raw: bytes) -> str:
    return str(message_from_bytes(raw, policy=policy.SMTP)["DKIM-Signature"])


def test_dkim_signs_both_list_headers(settings, base_url, dkim_key):
    """RFC 8058 section 4: the signature covers List-Unsubscribe and List-Unsubscribe-Post
    even though DKIM_HEADERS does not name them; changing the URL breaks it."""
    import dkim as dkimpy

    from seacucumber import dkim

    settings.DKIM_DOMAIN = "example.com"
    settings.DKIM_PRIVATE_KEY = dkim_key.pem
    settings.DKIM_HEADERS = ("From", "To", "Subject")
    (send,) = topic_sends(["a@example.com"])
    signed = dkim.sign(send.raw)
    tags = "".join(signed_headers(signed).split()).lower()
    assert "h=from:to:subject:list-unsubscribe:list-unsubscribe-post;" in tags
    dns = dkim_key.dnsfunc(b"ses._domainkey.example.com.")
    assert dkimpy.verify(signed, dnsfunc=dns)
    other = unsubscribe_token("b@example.com", "newsletter")
    token = link_of(send).rstrip("/").rsplit("/", 1)[1]
    assert not dkimpy.verify(signed.replace(token.encode(), other.encode()), dnsfunc=dns)
    assert not dkimpy.verify(signed.replace(b"One-Click", b"One-Clock"), dnsfunc=dns)
    plain = build_sends(EmailMessage("Hi", "Body", SENDER, ["a@example.com"]))[0]
    assert "list-unsubscribe" not in signed_headers(dkim.sign(plain.raw)).lower()
