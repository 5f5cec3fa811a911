"""README.rst's "Set up", followed as a new user would: a fresh ``django-admin startproject``,
the README's own blocks applied (read from README.rst, never copied here), the worker started
with the README's command, and mail sent with the README's code, to the project's SES
emulator over HTTP. Run on every Django of the CI matrix, each taking the blocks its version
names.

A block is marked by the comment before it: ``.. readme-test: ACTION [PATH] [DJANGO SPEC]``,
ACTION one of ``append`` / ``write`` (a file of the project), ``run`` (a command), ``worker``
(the worker command, left running) and ``shell`` (code for ``manage.py shell``).

What the test environment adds is only what a user's machine has: AWS credentials, region and
endpoint in boto3's own environment variables (the endpoint is the emulator), and the
broker's URL in ``CELERY_BROKER_URL`` (a private redis-server, never a user's).
"""

from __future__ import annotations

import email
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import django
import pytest
from packaging.specifiers import SpecifierSet

from seacucumber.testing.emulator import SESEmulator
from seacucumber.testing.processes import RedisServer
from tests.conftest import service_missing

pytestmark = pytest.mark.worker

README = Path(__file__).resolve().parent.parent / "README.rst"
BIN = Path(sys.executable).parent
MARK = re.compile(r"^\s*\.\. readme-test: (\w+)(?: (\S+))?(?: (django\S+))?\s*$")


@dataclass(frozen=True)
class Step:
    action: str
    path: str | None
    text: str


def _block_after(lines: list[str], start: int) -> str:
    """The literal block opened by the first line ending in ``::`` after ``start``."""
    opener = next(i for i in range(start + 1, len(lines)) if lines[i].rstrip().endswith("::"))
    indent = len(lines[opener]) - len(lines[opener].lstrip())
    body: list[str] = []
    for line in lines[opener + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    return textwrap.dedent("\n".join(body)).strip("\n") + "\n"


def readme_steps(version: str = django.__version__) -> list[Step]:
    """The README's set-up steps for this Django ``version``, in order."""
    lines = README.read_text().splitlines()
    steps = []
    for number, line in enumerate(lines):
        found = MARK.match(line)
        if not found:
            continue
        action, path, spec = found.groups()
        if path and path.startswith("django"):
            path, spec = None, path
        if spec and not SpecifierSet(spec.removeprefix("django")).contains(version):
            continue
        steps.append(Step(action, path, _block_after(lines, number)))
    return steps


@pytest.mark.parametrize("version", ["5.2.9", "6.0.1", "6.1.3"])
def test_every_django_version_gets_a_whole_setup(version):
    steps = readme_steps(version)
    actions = [step.action for step in steps]
    assert actions.count("append") == 1 and actions.count("shell") == 1, actions
    assert actions.count("worker") == 1, actions
    settings = next(step.text for step in steps if step.action == "append")
    if version.startswith("6.1"):
        assert "MAILERS" in settings and "EMAIL_BACKEND" not in settings
    else:
        assert "EMAIL_BACKEND" in settings and "MAILERS" not in settings
    written = {step.path for step in steps if step.action == "write"}
    assert written == {"yourproject/celery.py", "yourproject/__init__.py"}


def _env(broker: str, emulator_url: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("SEACUCUMBER_", "CELERY_", "DJANGO_", "AWS_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106
        AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=emulator_url,
        CELERY_BROKER_URL=broker, PYTHONUNBUFFERED="1",
    )
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, input=stdin, capture_output=True,  # noqa: S603
                          text=True, timeout=180)
    assert done.returncode == 0, (
        f"{shlex.join(command)} exited {done.returncode}\n{done.stdout[-4000:]}\n"
        f"{done.stderr[-4000:]}")
    return done.stdout + done.stderr


def _wait_ready(worker: subprocess.Popen[str], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if " ready." in log.read_text():
            return
        if worker.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"the README's worker did not start:\n{log.read_text()[-4000:]}")


def test_the_readme_setup_delivers_every_lane(tmp_path):
    if not RedisServer.available():
        service_missing("redis-server")
    if shutil.which("django-admin", path=str(BIN)) is None:
        pytest.fail(f"django-admin is not in {BIN}")
    redis_server = RedisServer().start()
    emulator = SESEmulator().start()
    env = _env(f"{redis_server.url}/0", emulator.url)
    worker: subprocess.Popen[str] | None = None
    log = tmp_path / "worker.log"
    try:
        _run([str(BIN / "django-admin"), "startproject", "yourproject"], tmp_path, env)
        project = tmp_path / "yourproject"
        outputs = []
        for step in readme_steps():
            if step.action == "append":
                with (project / step.path).open("a") as found:
                    found.write("\n" + step.text)
            elif step.action == "write":
                (project / step.path).write_text(step.text)
            elif step.action == "run":
                for line in step.text.splitlines():
                    outputs.append(_run(shlex.split(line), project, env))
                    print(f"$ {line}\n{outputs[-1]}")
            elif step.action == "worker":
                worker = subprocess.Popen(  # noqa: S603
                    shlex.split(step.text.strip()), cwd=project, env=env, text=True,
                    stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
                _wait_ready(worker, log)
            elif step.action == "shell":
                _run(["python", "manage.py", "shell"], project, env, stdin=step.text)
            else:
                pytest.fail(f"unknown README step {step.action!r}")
        accepted = emulator.wait_for(3, timeout=60)
        by_subject = {email.message_from_bytes(m.raw)["Subject"]: m for m in accepted}
        assert set(by_subject) == {"Reset your password", "Spring news", "Your report"}, \
            log.read_text()[-4000:]
        assert by_subject["Spring news"].tags.get("seacucumber-lane") == "bulk"
        assert by_subject["Reset your password"].tags.get("seacucumber-lane") != "bulk"
        report = email.message_from_bytes(by_subject["Your report"].raw)
        attached = [part for part in report.walk() if part.get_filename() == "report.csv"]
        content = attached[0].get_payload(decode=True) if attached else b""
        assert content.replace(b"\r\n", b"\n") == b"day,sent\n2026-12-07,3\n"  # text: CRLF
        assert all(m.source == "you@example.com" for m in accepted)
        text = log.read_text()
        assert "seacucumber-bulk" in text  # the worker said it consumes the bulk lane's queue
        assert "does not consume" not in text
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        emulator.stop()
        redis_server.stop()
