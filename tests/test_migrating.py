"""docs/migrating.rst's worked examples, run: each example's code (read from the guide, never
copied here) sends through the old library (django-ses, django-anymail's SES backend,
django-celery-email before django-ses) pointed at the project's SES emulator, then through
Sea Cucumber with only the guide's settings changed, and the SES parameters that arrive
(configuration set, tags, return path, sender, recipients, the headers anymail adds) must be
the same, but for the differences the guide states.

A block is marked by the comment before it: ``.. migrating-test: EXAMPLE ROLE``, ROLE one of
``old-settings``, ``new-settings`` (Python assignments: the mail settings before and after)
and ``code``. What the test adds is only what points each library at the emulator: its own
endpoint setting (credentials come from boto3's environment, as conftest sets it).
"""

from __future__ import annotations

import os
import re
import uuid
from email import message_from_bytes
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage

from seacucumber.testing.emulator import SESEmulator
from seacucumber.testing.emulator.state import Accepted
from tests.conftest import point_app_at, point_at_emulator

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "migrating.rst"
MARK = re.compile(r"^\.\. migrating-test: (\S+) (old-settings|new-settings|code)\s*$")


def guide_blocks() -> dict[tuple[str, str], str]:
    """(example, role) -> the literal block after its mark."""
    lines = GUIDE.read_text().splitlines()
    found = {}
    for number, line in enumerate(lines):
        if (mark := MARK.match(line)) is None:
            continue
        opener = next(i for i in range(number + 1, len(lines)) if lines[i].endswith("::"))
        body = []
        for text in lines[opener + 1:]:
            if text.strip() and not text.startswith("    "):
                break
            body.append(text[4:])
        found[(mark[1], mark[2])] = "\n".join(body).strip() + "\n"
    return found


BLOCKS = guide_blocks()


def test_every_example_has_its_three_blocks():
    examples = {example for example, _ in BLOCKS}
    assert examples == {"django-ses", "anymail", "django-celery-email"}
    assert len(BLOCKS) == 9


def settings_in(example: str, role: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(BLOCKS[(example, role)], namespace)  # noqa: S102 - the guide's own settings block
    return {name: value for name, value in namespace.items() if name.isupper()}


def use(settings, example: str, role: str, **test_only: Any) -> dict[str, Any]:
    """Make the block's settings this process's mail settings (the other block's names
    removed), with ``test_only`` on top."""
    other = "new-settings" if role == "old-settings" else "old-settings"
    values = settings_in(example, role)
    for name in settings_in(example, other):
        if name not in values and hasattr(settings, name):
            delattr(settings, name)
    for name, value in {**values, **test_only}.items():
        setattr(settings, name, value)
    return values


def run_code(example: str) -> None:
    exec(compile(BLOCKS[(example, "code")], str(GUIDE), "exec"), {})  # noqa: S102


def at_ses(accepted: Accepted) -> dict[str, Any]:
    """What SES was asked to do with one message, whichever way the library said it: the
    configuration set as the parameter or django-ses's header, the caller's message tags
    (not Sea Cucumber's own two), the feedback address, the ARNs, the envelope."""
    raw = message_from_bytes(accepted.raw)
    return {
        "subject": raw["Subject"],
        "from": raw["From"],
        "source": parseaddr(accepted.source)[1],
        "destinations": sorted(accepted.destinations),
        "configuration_set": accepted.options.get("ConfigurationSetName")
        or raw["X-SES-CONFIGURATION-SET"],
        "feedback_address": accepted.options.get("FeedbackForwardingEmailAddress"),
        "arns": {k: v for k, v in accepted.options.items() if k.endswith("Arn")},
        "tags": {k: v for k, v in accepted.tags.items() if not k.startswith("seacucumber-")},
        "x_tag": raw.get_all("X-Tag", []),
        "x_metadata": raw.get_all("X-Metadata", []),
    }


def sent(emulator: SESEmulator, count: int) -> list[dict[str, Any]]:
    return sorted((at_ses(m) for m in emulator.wait_for(count, timeout=60)),
                  key=lambda found: found["subject"])


@pytest.fixture(scope="module")
def emulator():
    started = SESEmulator(rate=1000).start()  # django-ses paces by it: 0 would break it
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def fresh(emulator):
    emulator.reset()
    return emulator


def test_from_django_ses(fresh, settings, eager):
    use(settings, "django-ses", "old-settings", AWS_SES_REGION_ENDPOINT_URL=fresh.url)
    run_code("django-ses")
    before = sent(fresh, 2)
    fresh.reset()
    use(settings, "django-ses", "new-settings", SEACUCUMBER_ENDPOINT_URL=fresh.url)
    run_code("django-ses")
    after = sent(fresh, 2)
    # the difference the guide states: with AWS_SES_RETURN_PATH, the envelope sender (v2
    # FromEmailAddress) is the return path; django-ses puts the From address there
    assert [m.pop("source") for m in before] == ["news@example.com", "shop@example.com"]
    assert [m.pop("source") for m in after] == ["bounces@example.com"] * 2
    assert after == before
    assert before[1]["configuration_set"] == "transactional"
    assert before[1]["feedback_address"] == "bounces@example.com"
    assert before[0]["destinations"] == ["bob@example.com", "carol@example.com"]


def test_from_anymail(fresh, settings, eager):
    old = settings_in("anymail", "old-settings")["ANYMAIL"]
    client = {**old["AMAZON_SES_CLIENT_PARAMS"], "endpoint_url": fresh.url}
    use(settings, "anymail", "old-settings",
        ANYMAIL={**old, "AMAZON_SES_CLIENT_PARAMS": client})
    run_code("anymail")
    [before] = sent(fresh, 1)
    fresh.reset()
    use(settings, "anymail", "new-settings", SEACUCUMBER_ENDPOINT_URL=fresh.url)
    run_code("anymail")
    [after] = sent(fresh, 1)
    # the difference the guide states: more message tags (the metadata that fits SES's rules)
    assert before["tags"] == {"campaign": "welcome-2026"}
    assert after.pop("tags") == {**before.pop("tags"), "user_id": "8123", "plan": "team"}
    assert after == before
    assert before["x_tag"] == ["Onboarding"]
    assert before["x_metadata"] == ['{"user_id": "8123", "plan": "team"}']
    assert (before["configuration_set"], before["feedback_address"], before["source"]) == (
        "marketing", "bounces@example.com", "hello@example.com")


def test_from_django_celery_email(fresh, settings, eager, redis_url, start_worker, tmp_path):
    """The old pair runs its task eagerly (it only records what django-ses sent); Sea
    Cucumber's side runs with a real worker, started with the guide's new settings.

    django-celery-email 3.0 (its last release) cannot serialise a message on a Django without
    ``EmailMessage.mixed_subtype`` (6.1): there the old side is its ``CELERY_EMAIL_BACKEND``
    called directly, which is all its task does with the message (docs/migrating.rst says to
    migrate while on Django 5.2)."""
    use(settings, "django-celery-email", "old-settings", AWS_SES_REGION_ENDPOINT_URL=fresh.url)
    if not hasattr(EmailMessage, "mixed_subtype"):
        settings.EMAIL_BACKEND = settings.CELERY_EMAIL_BACKEND
    run_code("django-celery-email")
    [before] = sent(fresh, 1)
    fresh.reset()

    eager.conf.task_always_eager = False
    tag = uuid.uuid4().hex[:8]
    env = point_at_emulator(settings, f"{redis_url}/1", fresh.url, f"{redis_url}/3",
                            f"mig-{tag}", f"sc-mig-{tag}")
    module = f"migrating_settings_{tag}"
    (tmp_path / f"{module}.py").write_text(
        "from tests.settings import *  # noqa: F403\n\n"
        + BLOCKS[("django-celery-email", "new-settings")])
    env.update(DJANGO_SETTINGS_MODULE=module,
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT),
                                           os.environ.get("PYTHONPATH", "")]))
    try:
        start_worker(env, queues=settings.SEACUCUMBER_QUEUE, concurrency=1)
        use(settings, "django-celery-email", "new-settings")
        run_code("django-celery-email")
        [after] = sent(fresh, 1)
    finally:
        point_app_at("memory://", None)
    assert after == before
    assert before["destinations"] == ["audit@example.com", "erin@example.com"]
    assert (before["configuration_set"], before["source"]) == ("transactional",
                                                               "accounts@example.com")
