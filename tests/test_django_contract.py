"""Django's own contract for email backends, on every Django of the support matrix: lazy
strings, ``BadHeaderError``, ``fail_silently``, options as keyword arguments (Django 6.1's
``MAILERS`` ``OPTIONS``, ``get_connection(**options)`` before it), unknown options as
Django's own backends take them on each version (a likely typo of ours warns), the
``EmailBackend`` name, the system check for senders SES refuses, and django-ses's settings."""

from __future__ import annotations

import json
import warnings

import pytest
from botocore.config import Config
from django.core import checks, mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import BadHeaderError, EmailMessage
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy

from seacucumber import clients
from seacucumber.backend import SESBackend
from seacucumber.conf import conf
from seacucumber.exceptions import InvalidMessage, InvalidOption
from seacucumber.payload import OutboundSend, build_sends
from seacucumber.ses.clients import client
from tests.conftest import SENDER

HAS_MAILERS = hasattr(mail, "mailers")  # Django 6.1
BACKEND = "seacucumber.backend.SESBackend"
lazy_text = lazy(str, str)


def mailer(settings, alias: str = "default", **options):
    """The backend as a project on this Django makes it: a ``MAILERS`` alias on 6.1, else
    ``get_connection(BACKEND, **options)``."""
    if HAS_MAILERS:
        settings.MAILERS = {alias: {"BACKEND": BACKEND, "OPTIONS": options}}
        return mail.mailers[alias]
    return mail.get_connection(BACKEND, **options)


@pytest.fixture
def captured(monkeypatch):
    """Every task the backend publishes, as (payload, queue), without a broker."""
    from seacucumber.send import publish

    seen: list[tuple[dict, str | None]] = []
    monkeypatch.setattr(publish, "publish", lambda payload, task_id, queue, retry_policy=None:
                        seen.append((json.loads(json.dumps(payload)), queue)))
    return seen


# --- lazy strings ------------------------------------------------------------------------------

def test_lazy_strings_are_taken_wherever_django_takes_them(settings, captured):
    settings.DEFAULT_FROM_EMAIL = gettext_lazy("Sender <sender@example.com>")
    message = EmailMessage(
        subject=gettext_lazy("Password reset"), body=gettext_lazy("Body"),
        from_email=gettext_lazy("Sender <sender@example.com>"),
        to=[gettext_lazy("To <to@example.com>")], cc=[lazy_text("cc@example.com")],
        bcc=[lazy_text("bcc@example.com")], reply_to=[lazy_text("Reply <r@example.com>")],
    )
    assert SESBackend().send_messages([message]) == 1
    [(payload, _)] = captured
    sent = OutboundSend.from_json(payload)
    assert sent.sender == "sender@example.com"
    assert sent.recipients == ("to@example.com", "cc@example.com", "bcc@example.com")
    assert b"Subject: Password reset" in sent.raw


def test_an_iterator_of_messages_is_taken(captured):
    messages = (EmailMessage("Hi", "B", SENDER, [f"{n}@example.com"]) for n in range(3))
    assert SESBackend().send_messages(messages) == 3
    assert len(captured) == 3


# --- header injection ------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"subject": "Hi\nBcc: victim@example.com"},
    {"subject": "Hi\rthere"},
    {"headers": {"X-Tag": "a\r\nBcc: victim@example.com"}},
    {"to": ["a@example.com\nBcc: victim@example.com"]},
    {"from_email": "s@example.com\r\nBcc: victim@example.com"},
])
def test_header_injection_is_both_bad_header_error_and_invalid_message(fields, captured):
    base = {"subject": "Hi", "body": "B", "from_email": SENDER, "to": ["a@example.com"]}
    message = EmailMessage(**{**base, **fields})
    with pytest.raises(BadHeaderError) as caught:  # what Django's docs have views catch
        SESBackend().send_messages([message])
    assert isinstance(caught.value, InvalidMessage)
    assert "line break" in str(caught.value)
    assert captured == []


def test_a_view_written_for_djangos_backends_catches_it(settings, captured):
    settings.EMAIL_BACKEND = BACKEND

    def contact_view(subject: str) -> str:  # the pattern in Django's email documentation
        try:
            mail.send_mail(subject, "Body", SENDER, ["admin@example.com"])
        except BadHeaderError:
            return "Invalid header found."
        return "sent"

    assert contact_view("Hello\nBcc: spam@example.com") == "Invalid header found."
    assert contact_view("Hello") == "sent"
    assert len(captured) == 1


# --- fail_silently, options ------------------------------------------------------------------

def test_fail_silently_is_the_backends_own(settings, captured):
    quiet = mailer(settings, fail_silently=True)
    loud = mailer(settings, "loud") if HAS_MAILERS else mail.get_connection(BACKEND)
    bad = EmailMessage("Hi", "B", "not an address", ["a@example.com"])
    good = EmailMessage("Hi", "B", SENDER, ["a@example.com"])
    assert "fail_silently" in vars(quiet)  # an attribute of its own, as Django 6.1 asks
    assert quiet.send_messages([bad, good]) == 1
    with pytest.raises(InvalidMessage):
        loud.send_messages([bad, good])
    assert len(captured) == 1


def compatibility_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    """Django 6.1's warnings for unknown options of a backend made without an alias."""
    return [w for w in caught if "does not support" in str(w.message)]


def test_unknown_options_are_handled_as_djangos_own_backends_handle_them(settings):
    """5.2 and 6.0: ignored, silently. 6.1: ignored with Django's RemovedInDjango2028Warning
    when made without an alias (its compatibility mode), attributed to the code that made
    the backend; under a MAILERS alias, Django's InvalidMailer."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = SESBackend(anything=1, fail_silently=True)
    assert backend.fail_silently is True and not hasattr(backend, "anything")
    assert backend.options.values == {}
    if HAS_MAILERS:
        [warned] = compatibility_warnings(caught)
        assert str(warned.message) == (
            "seacucumber.backend.SESBackend.__init__() does not support 'anything'. In Django "
            "2028, BaseEmailBackend will raise a TypeError for unknown keyword arguments.")
        assert warned.category.__name__ == "RemovedInDjango2028Warning"
        assert warned.filename == __file__  # the caller's line, not the backend's
        settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": {"anything": 1}}}
        with pytest.raises(ImproperlyConfigured, match="'anything'") as refused:
            mail.mailers["default"]
        assert type(refused.value) is mail.InvalidMailer
        assert str(refused.value) == "MAILERS['default']: Unknown options 'anything'."
    else:
        assert caught == []
        assert mail.get_connection(BACKEND, anything=1).options.values == {}


@pytest.mark.parametrize("backend", [BACKEND, "seacucumber.backend.EmailBackend"])
def test_what_django_passes_never_raises_nor_warns_about_options(settings, captured, backend):
    """send_mail's auth_user and auth_password (get_connection's username and password), and
    an SMTP project's options: Django's own backends ignore what they do not use."""
    settings.EMAIL_BACKEND = backend
    smtp_options = {"host": "smtp.example.com", "port": 587, "username": "", "password": "",
                    "use_tls": True, "use_ssl": False, "timeout": 10, "ssl_keyfile": None,
                    "ssl_certfile": None, "file_path": "/tmp/mail", "stream": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mail.send_mail("Hi", "B", SENDER, ["a@example.com"], auth_user="u", auth_password="p")
        mail.send_mass_mail([("Hi", "B", SENDER, ["b@example.com"])], auth_user="u",
                            auth_password="")
        with mail.get_connection(username="", password="") as made:  # Django's own tests'
            made.send_messages([EmailMessage("Hi", "B", SENDER, ["c@example.com"])])
        if HAS_MAILERS:  # get_connection(**options) with MAILERS: the options Django ignores
            settings.MAILERS = {"default": {"BACKEND": backend}}
            assert mail.get_connection(**smtp_options, fail_silently=True).fail_silently
        else:
            assert mail.get_connection(**smtp_options).options.values == {}
    assert [p["to"] for p, _ in captured] == [["a@example.com"], ["b@example.com"],
                                              ["c@example.com"]]
    assert compatibility_warnings(caught) == []  # Django made the backend: no warning
    assert [w for w in caught if issubclass(w.category, UserWarning)] == []  # no typo


def test_a_likely_typo_of_one_of_our_options_warns_naming_it(settings):
    with pytest.warns(UserWarning) as caught:
        SESBackend(lnae="bulk", configuration="newsletter", totally_unrelated=1)
    [typo] = [str(w.message) for w in caught if w.category is UserWarning]
    assert typo == ("seacucumber.backend.SESBackend ignores options it does not know: did you "
                    "mean 'lane' for 'lnae', 'configuration_set' for 'configuration'?")
    with pytest.warns(UserWarning, match="'tags' for 'tag'") as caught:
        mail.get_connection(BACKEND, tag={"kind": "digest"})
    assert {w.filename for w in caught if w.category is UserWarning} == {__file__}  # this line
    if HAS_MAILERS:
        settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": {"regoin": "eu-west-1"}}}
        with pytest.raises(mail.InvalidMailer) as refused:
            mail.mailers["default"]
        assert str(refused.value) == ("MAILERS['default']: Unknown options 'regoin'. Did you "
                                      "mean 'region' for 'regoin'?")
        settings.MAILERS = {"default": {"BACKEND": BACKEND}}
        with pytest.warns(UserWarning, match="did you mean 'queue' for 'qeue'"):
            made = mail.get_connection(qeue="bulk-mail")  # ignored, as Django ignores it
        assert made.options.values == {}


def test_email_backend_is_the_same_backend_under_djangos_conventional_name(settings, captured):
    from seacucumber.backend import EmailBackend

    settings.EMAIL_BACKEND = "seacucumber.backend.EmailBackend"
    if HAS_MAILERS:
        settings.MAILERS = {"default": {"BACKEND": "seacucumber.backend.EmailBackend",
                                        "OPTIONS": {"lane": "bulk"}}}
        made = mail.mailers["default"]
    else:
        made = mail.get_connection(lane="bulk")
    assert isinstance(made, EmailBackend) and isinstance(made, SESBackend)
    assert made.send_messages([EmailMessage("Hi", "B", SENDER, ["a@example.com"])]) == 1
    [(payload, queue)] = captured
    assert payload["options"]["lane"] == "bulk" and queue == "seacucumber-bulk"


@pytest.mark.parametrize(("option", "value", "words"), [
    ("configuration_set", "no spaces allowed", "configuration_set"),
    ("region", "Mars", "AWS region"),
    ("endpoint_url", "ftp://example.com", "http"),
    ("source_arn", "not-an-arn", "ARN"),
    ("return_path", "nobody", "return_path"),
    ("queue", "", "queue"),
])
def test_bad_option_values_are_refused_when_the_backend_is_made(option, value, words):
    with pytest.raises(InvalidOption, match=words):
        SESBackend(**{option: value})


def test_two_mailers_with_different_options_send_differently(settings, captured):
    if HAS_MAILERS:
        settings.MAILERS = {
            "default": {"BACKEND": BACKEND, "OPTIONS": {"configuration_set": "transactional"}},
            "bulk": {"BACKEND": BACKEND, "OPTIONS": {
                "configuration_set": "newsletter", "queue": "bulk-mail",
                "region": "eu-west-1", "return_path": "bounces@example.com"}},
        }
        mail.send_mail("Reset", "B", SENDER, ["a@example.com"])
        mail.send_mail("News", "B", SENDER, ["b@example.com"], using="bulk")
        EmailMessage("More news", "B", SENDER, ["c@example.com"]).send(using="bulk")
        assert isinstance(mail.mailers["bulk"], SESBackend)
    else:
        mail.get_connection(BACKEND, configuration_set="transactional").send_messages(
            [EmailMessage("Reset", "B", SENDER, ["a@example.com"])])
        bulk = mail.get_connection(BACKEND, configuration_set="newsletter", queue="bulk-mail",
                                   region="eu-west-1", return_path="bounces@example.com")
        bulk.send_messages([EmailMessage("News", "B", SENDER, ["b@example.com"]),
                            EmailMessage("More news", "B", SENDER, ["c@example.com"])])
    (reset, reset_queue), (news, news_queue), (more, _) = captured
    assert reset["options"] == {"configuration_set": "transactional"}
    assert reset["v"] == 1 and reset_queue is None
    assert news["options"] == {"configuration_set": "newsletter", "region": "eu-west-1"}
    assert news["v"] == 2  # a version-1 worker has no per-mailer region
    assert news["from"] == "bounces@example.com" and news_queue == "bulk-mail"
    assert more["options"] == news["options"]


def test_a_mailers_region_and_endpoint_reach_the_worker_client(settings, ses_emulator):
    """The worker sends a version-2 payload with the client its options name."""
    from seacucumber.ses.send import send

    settings.SEACUCUMBER_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing there
    [outbound] = build_sends(EmailMessage("Hi", "B", SENDER, ["a@example.com"]),
                             SESBackend(region="eu-west-1", endpoint_url=ses_emulator.url).options)
    assert send(outbound)
    [accepted] = ses_emulator.messages()
    assert accepted.destinations == ["a@example.com"]
    assert client(region="eu-west-1", endpoint=ses_emulator.url).meta.region_name == "eu-west-1"


# --- system check: senders SES refuses ---------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "warned"), [
    ("DEFAULT_FROM_EMAIL", "webmaster@localhost", True),
    ("SERVER_EMAIL", "root@localhost", True),
    ("SERVER_EMAIL", "errors", True),
    ("DEFAULT_FROM_EMAIL", "Shop <shop@example.com>", False),
    ("DEFAULT_FROM_EMAIL", gettext_lazy("Shop <shop@example.com>"), False),
])
def test_check_warns_about_senders_ses_refuses(settings, name, value, warned):
    settings.DEFAULT_FROM_EMAIL = "shop@example.com"
    settings.SERVER_EMAIL = "errors@example.com"
    setattr(settings, name, value)
    found = [m for m in checks.run_checks() if m.id == "seacucumber.W008"]
    assert [name in m.msg for m in found] == ([True] if warned else [])


# --- django-ses settings ------------------------------------------------------------------------

def test_django_ses_profile_and_config_shape_the_client(settings, tmp_path, monkeypatch):
    credentials = tmp_path / "credentials"
    credentials.write_text("[mailer]\naws_access_key_id = PROFILEKEY\n"
                           "aws_secret_access_key = profile-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    settings.AWS_SESSION_PROFILE = "mailer"
    settings.AWS_SES_CONFIG = Config(max_pool_connections=7, read_timeout=3)
    clients.clear()
    try:
        made = client("ses")
        assert made._request_signer._credentials.access_key == "PROFILEKEY"
        assert made.meta.config.max_pool_connections == 7
        assert made.meta.config.read_timeout == 3
        assert made.meta.config.retries["total_max_attempts"] == 1  # ours, not overridden
        assert made.meta.config.user_agent_extra == f"seacucumber/{conf_version()}"
    finally:
        clients.clear()


def conf_version() -> str:
    from seacucumber import __version__

    return __version__


def test_django_ses_blacklist_settings_map_onto_suppression(settings):
    del settings.SEACUCUMBER_SUPPRESSION_LIST  # the test project sets it; a django-ses one not
    settings.AWS_SES_ADD_BOUNCE_TO_BLACKLIST = True
    settings.AWS_SES_ADD_COMPLAINT_TO_BLACKLIST = True
    settings.AWS_SES_USE_BLACKLIST = False
    assert conf.SEACUCUMBER_SUPPRESS_ON_BOUNCE is True
    assert conf.SEACUCUMBER_SUPPRESS_ON_COMPLAINT is True
    assert conf.SEACUCUMBER_SUPPRESSION_LIST is False


def test_settings_read_as_django_reads_them_through_every_layer(settings):
    """``conf`` skips Django's exceptions for settings the project does not set, and still
    reads what every layer says: the settings module, ``override_settings`` (the ``settings``
    fixture) set and deleted, an assignment to ``django.conf.settings``, an older name."""
    from django.conf import settings as django_settings
    from django.test import override_settings

    from seacucumber.conf import _BY_NAME, _MISSING, _django_setting

    names = [name for setting in _BY_NAME.values()
             for name in (setting.name, *setting.aliases)]

    def agrees() -> None:
        for name in names:
            assert _django_setting(name) == getattr(django_settings, name, _MISSING), name

    agrees()
    settings.SEACUCUMBER_QUEUE = "mail-q"  # the fixture: override_settings, a layer above
    settings.CUCUMBER_ROUTE_QUEUE = "older"
    assert conf.lookup("SEACUCUMBER_QUEUE") == ("SEACUCUMBER_QUEUE", "mail-q")
    agrees()
    del settings.SEACUCUMBER_QUEUE  # deleted in the top layer, though set below it
    assert conf.lookup("SEACUCUMBER_QUEUE") == ("CUCUMBER_ROUTE_QUEUE", "older")
    agrees()
    with override_settings(SEACUCUMBER_OUTBOX_GRACE=7.5):
        assert conf.SEACUCUMBER_OUTBOX_GRACE == 7.5
        agrees()
        django_settings.SEACUCUMBER_REDIS_PREFIX = "assigned"  # set on the settings object
        assert conf.SEACUCUMBER_REDIS_PREFIX == "assigned"
        del django_settings.SEACUCUMBER_REDIS_PREFIX
        agrees()
    agrees()
