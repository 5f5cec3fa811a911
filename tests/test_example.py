"""The example project works as README.rst says: a page sends a test message through a real
worker, and lists it with its status."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seacucumber.testing.processes import Worker

pytestmark = pytest.mark.worker

EXAMPLE = Path(__file__).resolve().parent.parent / "example"
SENDER = "example@example.com"

SEND_AND_READ = """
import time
from django.test import Client
client = Client()
page = client.get("/")
answer = client.post("/", {"to": "reader@example.com"}, follow=True)
assert "Queued 1 message to reader@example.com" in answer.content.decode(), answer.content
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    page = client.get("/").content.decode()
    if "<td>sent</td>" in page:
        print("SENT-ON-PAGE")
        break
    time.sleep(0.2)
print(page)
"""


@pytest.mark.parametrize("config", ["django", "celeryconfig"])
def test_example_page_sends_through_a_worker_and_shows_status(
    tmp_path, redis_url, moto_server, config
):
    """``django``: the Celery app configured from settings.py's CELERY_ settings, as README's
    "Set up" has it. ``celeryconfig``: as docker-compose.yml runs it, from celeryconfig.py
    (CELERY_CONFIG_MODULE, the repository root on PYTHONPATH as in the image)."""
    moto_server.reset()
    moto_server.verify(SENDER)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "exampleproject.settings",
        "DJANGO_ALLOWED_HOSTS": "testserver",
        "EXAMPLE_DB_PATH": str(tmp_path / "example.sqlite3"),
        "CELERY_BROKER_URL": f"{redis_url}/9",
        "SEACUCUMBER_ENDPOINT_URL": moto_server.url,
        "SEACUCUMBER_EVENT_TOPIC_ARNS": "arn:aws:sns:us-east-1:123456789012:ses-events",
        "CELERY_CONFIG_MODULE": "",
    }
    if config == "celeryconfig":
        env.update(CELERY_CONFIG_MODULE="celeryconfig", PYTHONPATH=str(EXAMPLE.parent))
    manage = [sys.executable, "manage.py"]
    for command in (["check", "--fail-level", "WARNING"], ["migrate", "--noinput"]):
        done = subprocess.run(manage + command, cwd=EXAMPLE, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    worker = Worker(app="exampleproject", env=env, queues="mail", cwd=EXAMPLE)
    worker.start()
    try:
        done = subprocess.run(manage + ["shell", "-c", SEND_AND_READ], cwd=EXAMPLE, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        worker.stop()
    assert done.returncode == 0, done.stdout + done.stderr + worker.log()
    assert "SENT-ON-PAGE" in done.stdout, done.stdout + worker.log()
    [sent] = moto_server.sent()
    assert sent.destinations[0] == "reader@example.com"
    assert sent.id in done.stdout
