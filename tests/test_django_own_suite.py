"""Django's own email-backend tests, from the source release of the installed Django, run
against this backend: ``BaseEmailBackendTests`` (Django 5.2 and 6.0, ``tests/mail/tests.py``)
or ``SharedEmailBackendTests`` (6.1, ``tests/mail/test_backends.py``), subclassed as Django's
own backends' tests subclass them. Sent mail is read back from the project's SES emulator; the
send task runs eagerly, as in the other backend-level tests.

The source release is fetched once with pip (``pip download --no-binary :all:``) into
``.cache/django-src/`` (git-ignored): a later run needs no network. A failed download skips
on a developer's machine and fails under ``CI=true``.

Every Django test must pass except the SES-inherent ones in ``SES_INHERENT``, each with its
reason; they must keep failing for that reason (``xfail``), or the list is out of date. One
test is overridden, as Django's own console, file and SMTP backend tests override it: 6.1's
``test_fail_silently_arg_accepted`` expects ``fail_silently`` deprecated, and this backend
keeps it, as those backends do.
"""

from __future__ import annotations

import email.errors
import fcntl
import importlib
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import unittest
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import django
import pytest
from django.core import mail
from django.test import SimpleTestCase

from seacucumber.backend import EmailBackend
from seacucumber.testing.emulator import SESEmulator
from tests.conftest import service_missing

HAS_MAILERS = hasattr(mail, "mailers")  # Django 6.1
#: Django's module holding the shared backend tests, and the class of them.
SUITE_MODULE, SUITE_CLASS = (("test_backends", "SharedEmailBackendTests") if HAS_MAILERS
                             else ("tests", "BaseEmailBackendTests"))
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "django-src"
#: The package name Django's ``tests/mail`` is imported under: not ``django.``, which
#: Django's deprecation helpers take for Django's own code, and not ours.
PACKAGE = "djangos_own_mail_tests"

_NO_DOMAIN = ("SES takes only full addresses (local@domain): 'tester' and 'django', which "
              "Django's backends pass through unchecked, are refused at send_messages "
              "(InvalidMessage) before anything is queued")
#: Django's tests this backend fails by SES's nature, with the reason, per Django test class.
#: Django 6.1's SharedEmailBackendTests has none (its address tests went to SendMailTests and
#: EmailMessageTests, which test Django's message and send_mail, not a backend).
SES_INHERENT: dict[str, dict[str, str]] = {
    "BaseEmailBackendTests": {
        "test_recipient_without_domain": _NO_DOMAIN,
        "test_lazy_addresses": _NO_DOMAIN + " (its lazy addresses are 'tester', 'to1', ...)",
    },
    "SharedEmailBackendTests": {},
}
#: How many tests each class has (Django 5.2.20, 6.1.3): a floor, so none go unnoticed.
DJANGO_TEST_COUNT = {"BaseEmailBackendTests": 18, "SharedEmailBackendTests": 11}
#: What a SES-inherent failure's traceback shows: our refusal, not some other breakage.
SES_INHERENT_ERROR = ("seacucumber.exceptions.InvalidMessage", "full address")


# --- Django's source release ------------------------------------------------------------------

def _sdist(version: str) -> Path | None:
    found = [path for path in CACHE.glob("*.tar.gz")
             if path.name.lower() == f"django-{version}.tar.gz"]
    return found[0] if found else None


def _fetch(version: str) -> Path:
    """The sdist of Django ``version``, downloaded by pip into the cache unless it is there."""
    cached = _sdist(version)
    if cached is not None:
        return cached
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "--quiet", f"Django=={version}", "-d", str(CACHE)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=240,
                              check=False)  # within pytest's timeout (300 s)
    except subprocess.TimeoutExpired:
        service_missing(f"Django {version}'s source release (pip download timed out)")
    fetched = _sdist(version)
    if done.returncode or fetched is None:
        service_missing(f"Django {version}'s source release (pip download: "
                        f"{(done.stderr or done.stdout).strip()[-600:]})")
    assert fetched is not None  # service_missing never returns
    return fetched


def _extract_mail_tests(sdist: Path, version: str) -> Path:
    """``tests/mail`` of the sdist, extracted once beside it; returns the folder."""
    target = CACHE / f"django-{version}"
    mail_dir = target / "tests" / "mail"
    if (mail_dir / f"{SUITE_MODULE}.py").exists():
        return mail_dir
    partial = CACHE / f"django-{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted run left
    with tarfile.open(sdist) as archive:
        members = [member for member in archive.getmembers()
                   if member.name.split("/")[1:3] == ["tests", "mail"]]
        for member in members:  # strip the top folder (django-<version>/)
            member.name = member.name.split("/", 1)[1]
        archive.extractall(partial, members=members, filter="data")
    partial.rename(target)  # whole or not at all: an interrupted run leaves only .partial
    return mail_dir


def _import_as_package(mail_dir: Path) -> ModuleType:
    """Django's ``tests/mail`` imported as the package ``PACKAGE`` (its modules import each
    other relatively); returns the module holding the shared backend tests."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, mail_dir / "__init__.py", submodule_search_locations=[str(mail_dir)])
        assert spec is not None and spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    with _header_write_error():
        return importlib.import_module(f"{PACKAGE}.{SUITE_MODULE}")


@contextmanager
def _header_write_error() -> Iterator[None]:
    """Django 6.1's ``test_backends`` imports ``email.errors.HeaderWriteError`` (CPython
    3.12.5 and 3.13 on) for its SMTP backend's tests alone, which are not run here; on an
    earlier 3.12 (CI's 3.12.1) a stand-in is there for that import only."""
    if hasattr(email.errors, "HeaderWriteError"):
        yield
        return
    email.errors.HeaderWriteError = type(  # type: ignore[attr-defined]
        "HeaderWriteError", (email.errors.MessageError,), {})
    try:
        yield
    finally:
        del email.errors.HeaderWriteError  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def djangos_mail_tests() -> ModuleType:
    """Django's own mail tests of the installed version, from its source release (cached;
    a lock keeps parallel test processes from fetching or extracting it twice)."""
    version = django.__version__
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mail_dir = _extract_mail_tests(_fetch(version), version)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return _import_as_package(mail_dir)


# --- Django's tests, subclassed for this backend ------------------------------------------------

def backend_tests(module: ModuleType, emulator: SESEmulator) -> type[SimpleTestCase]:
    """Django's shared backend tests for ``seacucumber.backend.EmailBackend``, as Django's own
    backends' test classes make them: the mailbox is what the SES emulator accepted."""
    shared = getattr(module, SUITE_CLASS)

    class SESBackendTests(shared, SimpleTestCase):  # type: ignore[misc,valid-type]
        backend_class = EmailBackend  # Django 6.1
        email_backend = "seacucumber.backend.EmailBackend"  # Django 5.2, 6.0

        def setUp(self) -> None:
            super().setUp()
            self.flush_mailbox()

        def get_mailbox_content(self) -> list:
            """What SES accepted, its CRLF line ends (SMTP's, which SES's raw message has too)
            made LF, as Django's SMTP backend tests read theirs."""
            return [module.message_from_bytes(message.raw.replace(b"\r\n", b"\n"))
                    for message in emulator.messages()]

        def flush_mailbox(self) -> None:
            emulator.reset()

        if HAS_MAILERS:
            def test_fail_silently_arg_accepted(self) -> None:
                """Kept, as Django 6.1's console, file and SMTP backends keep it (their tests
                override this one so): with an alias and without one, and no warning."""
                for alias in ("test_alias", None):
                    for value in (True, False):
                        with self.subTest(alias=alias, fail_silently=value), \
                                warnings.catch_warnings():
                            warnings.simplefilter("error")
                            backend = self.create_backend(alias=alias, fail_silently=value)
                            self.assertIs(backend.fail_silently, value)

    return SESBackendTests


def run(case: type[SimpleTestCase], names: list[str]) -> unittest.TestResult:
    result = unittest.TestResult()
    unittest.TestSuite(case(name) for name in names).run(result)
    return result


def report(problems: list[tuple[unittest.TestCase, str]]) -> str:
    """Each failed Django test (a sub-test with its parameters) and its traceback."""
    return "\n".join(f"--- {test}\n{text}" for test, text in problems)


@pytest.fixture
def suite(djangos_mail_tests, ses_emulator, eager) -> type[SimpleTestCase]:
    """Django's tests for this backend; mail sent through the SES emulator, tasks eager."""
    return backend_tests(djangos_mail_tests, ses_emulator)


def test_djangos_own_backend_tests_pass(suite):
    names = unittest.TestLoader().getTestCaseNames(suite)
    inherent = SES_INHERENT[SUITE_CLASS]
    assert set(inherent) <= set(names), "a listed SES-inherent test is gone from Django's"
    expected = [name for name in names if name not in inherent]
    result = run(suite, expected)
    assert not result.errors and not result.failures, report(result.errors + result.failures)
    assert result.skipped == [], report(result.skipped)
    assert result.expectedFailures == [] and result.unexpectedSuccesses == []
    assert result.testsRun == len(expected)
    assert len(names) >= DJANGO_TEST_COUNT[SUITE_CLASS], "Django's tests were not all found"


if SES_INHERENT[SUITE_CLASS]:  # Django 6.1's SharedEmailBackendTests has none
    @pytest.mark.parametrize("name", sorted(SES_INHERENT[SUITE_CLASS]))
    def test_ses_inherent_failures_fail_for_their_reason(suite, name):
        result = run(suite, [name])
        problems = result.errors + result.failures
        assert problems, f"{name} now passes: take it off SES_INHERENT"
        for _, text in problems:
            assert all(part in text for part in SES_INHERENT_ERROR), report(problems)
        pytest.xfail(SES_INHERENT[SUITE_CLASS][name])


def test_a_failed_django_test_is_reported_not_lost(suite):
    """The runner above really fails: a Django test that breaks shows up as a failure."""

    class Broken(suite):  # type: ignore[misc,valid-type]
        def get_mailbox_content(self) -> list:
            return []  # as if nothing had been sent

    result = run(Broken, ["test_send"])
    assert [test.id().rsplit(".", 1)[-1] for test, _ in result.failures] == ["test_send"]
    assert "Expected exactly one message, got 0" in result.failures[0][1]
