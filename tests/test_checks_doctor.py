"""The deploy-time system checks ``ses_doctor`` shares: Celery's fallback app in this process
(seacucumber.E040) and ``MAILERS`` entries that cannot be built (seacucumber.E041). Real
processes for the first: one that never imports the project's Celery app, one that does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import run_checks

from seacucumber.checks import check_mailers

ROOT = Path(__file__).resolve().parent.parent
BACKEND = "seacucumber.backend.SESBackend"


def ids(messages) -> list[str]:
    return [message.id for message in messages]


def django_check(*code: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    """``manage.py check`` in a process of its own, after ``code`` (imports, say)."""
    script = "\n".join([*code, "import django", "django.setup()",
                        "from django.core.management import call_command",
                        "call_command('check')"])
    done = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env})
    print(done.stdout, done.stderr)
    return done


def test_a_process_that_never_imports_the_project_app_is_an_error_naming_the_import():
    done = django_check()
    assert done.returncode == 1
    assert "(seacucumber.E040) this process's Celery app is Celery's fallback" in done.stderr
    assert "add `from .celery import app as celery_app` to tests/__init__.py" in done.stderr


def test_a_process_that_imports_the_project_app_passes():
    """As the project's ``__init__.py`` does with the import (tests/proj/__init__.py)."""
    done = django_check("import tests.proj")
    assert done.returncode == 0
    assert "E040" not in done.stdout + done.stderr


def test_the_test_project_and_this_process_are_clean():
    assert [i for i in ids(run_checks()) if i in ("seacucumber.E040", "seacucumber.E041")] == []


def test_the_example_project_is_clean(tmp_path):
    """The example project as README sets it up, its own manage.py: no E040, no E041."""
    example = ROOT / "example"
    done = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "manage.py", "check"], cwd=example, capture_output=True, text=True,
        timeout=120, env={**os.environ, "DJANGO_SETTINGS_MODULE": "exampleproject.settings",
                          "EXAMPLE_DB_PATH": str(tmp_path / "example.sqlite3"),
                          "CELERY_CONFIG_MODULE": ""})
    print(done.stdout, done.stderr)
    assert done.returncode == 0
    assert "E040" not in done.stderr and "E041" not in done.stderr


def test_mailers_with_bad_or_unknown_options_are_errors_naming_alias_and_option(settings):
    settings.MAILERS = {
        "default": {"BACKEND": BACKEND},
        "newsletter": {"BACKEND": BACKEND, "OPTIONS": {"lane": "bulk", "regoin": "eu-west-1"}},
        "eu": {"BACKEND": BACKEND, "OPTIONS": {"region": "eu west 1"}},
        "nolane": {"BACKEND": BACKEND, "OPTIONS": {"lane": "promotions"}},
        "console": {"BACKEND": "django.core.mail.backends.console.EmailBackend",
                    "OPTIONS": {"anything": 1}},
    }
    found = check_mailers()
    for message in found:
        print(message)
    assert ids(found) == ["seacucumber.E041"] * 3
    newsletter, eu, nolane = (message.msg for message in found)
    assert newsletter == "MAILERS['newsletter'] has unknown option(s) 'regoin'"
    assert eu.startswith("MAILERS['eu'] cannot be built: ")
    assert "region='eu west 1'" in eu
    assert nolane.startswith("MAILERS['nolane'] cannot be built: ")
    assert "'promotions': no such lane" in nolane


def test_valid_mailers_pass(settings):
    settings.MAILERS = {
        "default": {"BACKEND": BACKEND},
        "newsletter": {"BACKEND": BACKEND,
                       "OPTIONS": {"lane": "bulk", "configuration_set": "newsletter",
                                   "region": "eu-west-1", "tags": {"kind": "news"},
                                   "fail_silently": True}},
    }
    assert check_mailers() == []


@pytest.mark.parametrize("mailers", [None, {}, "not a dict"])
def test_no_mailers_no_errors(settings, mailers):
    settings.MAILERS = mailers
    assert check_mailers() == []
