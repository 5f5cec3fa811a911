"""The package's shape: one exception hierarchy, listed in one module, no two alike."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import seacucumber
from seacucumber.exceptions import SeaCucumberError


def package_modules() -> list[str]:
    """Every module the package ships, but its test tools (``seacucumber.testing``: their
    errors answer HTTP inside the emulator and never reach a caller)."""
    return [info.name for info in pkgutil.walk_packages(seacucumber.__path__, "seacucumber.")
            if not info.name.startswith(("seacucumber.testing", "seacucumber.migrations"))]


def test_every_exception_the_package_raises_is_a_seacucumber_error_in_exceptions_py():
    found: dict[str, list[str]] = {}
    for name in package_modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == name:
                found.setdefault(cls_name, []).append(name)
    # a private class (``tasks._DeadlinePassed``) is control flow caught in its own module
    public = {cls_name: where for cls_name, where in found.items()
              if not cls_name.startswith("_")}
    assert public, "no exception classes found: the walk is broken"
    assert {cls_name: where for cls_name, where in public.items()
            if where != ["seacucumber.exceptions"]} == {}
    for cls_name in public:
        assert issubclass(getattr(seacucumber.exceptions, cls_name), SeaCucumberError), cls_name


def test_the_exceptions_module_lists_every_class_it_defines():
    doc = seacucumber.exceptions.__doc__ or ""
    defined = [cls_name for cls_name, cls in inspect.getmembers(seacucumber.exceptions,
                                                                  inspect.isclass)
               if issubclass(cls, BaseException) and cls.__module__ == "seacucumber.exceptions"]
    assert len(defined) >= 10
    assert [cls_name for cls_name in defined if cls_name not in doc] == []


def test_send_messages_publishes_without_importing_the_worker_module(tmp_path):
    """The web side puts send tasks on the broker by the task's name (``send.publish``): a
    process that only sends mail never imports ``seacucumber.tasks`` (nor the webhook's)."""
    import os
    import subprocess
    import sys

    program = (
        "import sys, django\n"
        "django.setup()\n"
        "from django.core import mail\n"
        "from django.core.mail import EmailMessage\n"
        "from kombu import Connection\n"
        "from tests.proj.celery import app\n"
        "app.conf.broker_url = 'memory://'\n"
        "sent = mail.get_connection().send_messages(\n"
        "    [EmailMessage('s', 'b', 'sender@example.com', ['a@example.com'])])\n"
        "with Connection('memory://') as conn:\n"
        "    queued = conn.default_channel.queue_declare(app.conf.task_default_queue,\n"
        "                                                passive=True).message_count\n"
        "print(sent, queued, sorted(m for m in sys.modules if m in (\n"
        "    'seacucumber.tasks', 'seacucumber.events.handlers')))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env.pop("SEACUCUMBER_TRACK_STATUS", None)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          env=env, timeout=120, check=False,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "1 1 []"
