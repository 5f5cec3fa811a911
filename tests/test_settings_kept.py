"""Settings kept for the process inside ``conf.held()`` (``send_messages``), as Django keeps
its own cached settings: read once, read again after Django's ``setting_changed`` signal,
which ``override_settings`` and pytest-django's ``settings`` fixture send."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.mail import EmailMessage
from django.core.signals import setting_changed
from django.test import override_settings

from seacucumber import backend
from seacucumber.backend import SESBackend
from seacucumber.conf import conf
from tests.conftest import SENDER


def held_queue() -> Any:
    with conf.held():
        return conf.SEACUCUMBER_QUEUE


def test_a_kept_setting_follows_override_settings_in_and_out(settings):
    settings.SEACUCUMBER_QUEUE = "first"
    assert held_queue() == "first"
    with override_settings(SEACUCUMBER_QUEUE="second"):
        assert held_queue() == "second"
    assert held_queue() == "first"
    del settings.SEACUCUMBER_QUEUE
    assert held_queue() is None


def test_a_direct_assignment_is_seen_only_after_setting_changed(settings):
    """The documented rule (conf's docstring, README's Settings): as Django's own cached
    settings, a setting assigned to ``django.conf.settings`` without the signal is not seen
    inside ``held()``; outside it every read is fresh."""
    settings.SEACUCUMBER_QUEUE = "before"
    assert held_queue() == "before"
    django_settings.SEACUCUMBER_QUEUE = "after"  # the fixture's own holder: undone with it
    assert held_queue() == "before"
    assert conf.SEACUCUMBER_QUEUE == "after"  # outside held(): read at each access
    setting_changed.send(sender=None, setting="SEACUCUMBER_QUEUE", value="after", enter=True)
    assert held_queue() == "after"


def test_a_kept_value_is_made_once_until_a_setting_changes(settings):
    made: list[Any] = []

    def build() -> Any:
        made.append(conf.SEACUCUMBER_REDIS_PREFIX)
        return made[-1]

    settings.SEACUCUMBER_REDIS_PREFIX = "one"
    assert conf.kept("test:prefix", build) == "one"  # outside held(): made at each call
    assert conf.kept("test:prefix", build) == "one" and len(made) == 2
    with conf.held():
        assert conf.kept("test:prefix", build) == "one"
    with conf.held():
        assert conf.kept("test:prefix", build) == "one"
    assert len(made) == 3
    settings.SEACUCUMBER_REDIS_PREFIX = "two"
    with conf.held():
        assert conf.kept("test:prefix", build) == "two"
    assert made == ["one", "one", "one", "two"]


def test_a_changed_setting_takes_effect_at_the_next_send_messages(settings, monkeypatch):
    """Through the backend: the queue a message goes to (``SEACUCUMBER_QUEUE``) and the
    enqueue timeout, each changed between two calls."""
    calls: list[tuple[list[str | None], float]] = []

    def enqueue(batches: Any, deadline: float, record: bool = False) -> None:
        calls.append(([queue for _, queue in batches], float(conf.SEACUCUMBER_ENQUEUE_TIMEOUT)))

    monkeypatch.setattr(backend, "enqueue", enqueue)
    connection = SESBackend()

    def send() -> tuple[list[str | None], float]:
        message = EmailMessage("Kept", "Body", SENDER, ["to@example.com"])
        assert connection.send_messages([message]) == 1
        return calls[-1]

    settings.SEACUCUMBER_QUEUE = "mail-a"
    settings.SEACUCUMBER_ENQUEUE_TIMEOUT = 3.0
    assert send() == (["mail-a"], 3.0)
    settings.SEACUCUMBER_QUEUE = "mail-b"
    assert send() == (["mail-b"], 3.0)
    with override_settings(SEACUCUMBER_QUEUE="mail-c", SEACUCUMBER_ENQUEUE_TIMEOUT=1.5):
        assert send() == (["mail-c"], 1.5)
    assert send() == (["mail-b"], 3.0)


@pytest.mark.parametrize("name", ["AWS_SES_CONFIGURATION_SET", "CUCUMBER_ROUTE_QUEUE"])
def test_an_older_name_or_an_option_setting_changed_is_seen_too(settings, monkeypatch, name):
    """A setting read under an older name, and one read while building the payload."""
    from seacucumber.payload import build_sends

    message = EmailMessage("Kept", "Body", SENDER, ["to@example.com"])
    setattr(settings, name, "first")
    with conf.held():
        before = (build_sends(message)[0].options.get("configuration_set"),
                  conf.SEACUCUMBER_QUEUE)
    setattr(settings, name, "second")
    with conf.held():
        after = (build_sends(message)[0].options.get("configuration_set"),
                 conf.SEACUCUMBER_QUEUE)
    index = 0 if name == "AWS_SES_CONFIGURATION_SET" else 1
    assert before[index] == "first" and after[index] == "second"
