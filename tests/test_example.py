"""The example project works as README.rst says: a page sends a test message through a real
worker, and lists it with its status; replies received through SES show under it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seacucumber.testing.processes import Worker

pytestmark = pytest.mark.worker

EXAMPLE = Path(__file__).resolve().parent.parent / "example"
SENDER = "example@example.com"
#: What docker-compose.yml's worker consumes: both lanes' queues (example settings' LANES).
QUEUES = "mail,seacucumber-bulk"

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
    worker = Worker(app="exampleproject", env=env, queues=QUEUES, cwd=EXAMPLE)
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


SEND_ONE = """
import time
from django.test import Client
from seacucumber.models import MessageStatus
Client().post("/", {"to": "reader@example.com"})
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    record = MessageStatus.objects.first()
    if record is not None and record.ses_message_id:
        print("SES-ID", record.ses_message_id)
        break
    time.sleep(0.2)
"""


def test_example_page_shows_replies_received_through_ses(tmp_path, redis_url, moto_server):
    """Reply by email, end to end: the page sends a message (real worker, moto's SES); the
    reader's reply comes back through the SES emulator's receipt notifications, once with
    the S3 action (the mail put into moto's S3) and once inline (SNS action), signed and
    posted to the example served by ``runserver``; the page shows both under the message."""
    import urllib.request

    from seacucumber.testing.emulator import SESEmulator
    from seacucumber.testing.emulator.events import DEFAULT_TOPIC_ARN
    from seacucumber.testing.processes import free_port, port_open

    moto_server.reset()
    moto_server.verify(SENDER)
    port = free_port()
    emulator = SESEmulator(rate=0, webhook_url=f"http://127.0.0.1:{port}/ses/events/",
                           s3_endpoint_url=moto_server.url).start()
    cert = tmp_path / "emulator-cert.pem"
    cert.write_bytes(emulator.cert_pem())
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "exampleproject.settings",
        "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1",
        "EXAMPLE_DB_PATH": str(tmp_path / "example.sqlite3"),
        "CELERY_BROKER_URL": f"{redis_url}/10",
        "CELERY_CONFIG_MODULE": "",
        "SEACUCUMBER_ENDPOINT_URL": moto_server.url,
        "SEACUCUMBER_S3_ENDPOINT_URL": moto_server.url,
        "SEACUCUMBER_EVENT_TOPIC_ARNS": DEFAULT_TOPIC_ARN,
        "EXAMPLE_SNS_CERT_FILE": str(cert),
    }
    manage = [sys.executable, "manage.py"]
    done = subprocess.run(manage + ["migrate", "--noinput"], cwd=EXAMPLE, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # the worker sends the message, then takes the replies in (the webhook only queues them)
    worker = Worker(app="exampleproject", env=env, queues=QUEUES, cwd=EXAMPLE)
    worker.start()
    try:
        done = subprocess.run(manage + ["shell", "-c", SEND_ONE], cwd=EXAMPLE, env=env,
                              capture_output=True, text=True, timeout=120)
    except BaseException:
        worker.stop()
        raise
    assert "SES-ID" in done.stdout, done.stdout + done.stderr + worker.log()
    ses_id = done.stdout.split("SES-ID", 1)[1].split()[0]
    server = subprocess.Popen(manage + ["runserver", f"127.0.0.1:{port}", "--noreload"],
                              cwd=EXAMPLE, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline and server.poll() is None, "runserver did not start"
            time.sleep(0.1)
        statuses = []
        for action, words in (("S3", "Got it, thanks!"), ("SNS", "One more thing.")):
            reply = (f"From: Reader <reader@example.com>\r\nTo: replies@example.com\r\n"
                     f"Subject: Re: Sea Cucumber test message\r\n"
                     f"In-Reply-To: <{ses_id}@email.amazonses.com>\r\n"
                     f"References: <{ses_id}@email.amazonses.com>\r\n"
                     f"Content-Type: text/plain; charset=utf-8\r\n\r\n{words}\r\n").encode()
            statuses.append(emulator.receive(reply, action=action, encoding="BASE64").status)
        deadline = time.monotonic() + 60
        while True:  # until the worker has taken both replies in
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
                page = answer.read().decode()
            if page.count("Reply from Reader") == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        worker.stop()
        server.terminate()
        log = server.communicate(timeout=30)[0]
        emulator.stop()
    assert statuses == [200, 200], log
    assert page.count("Reply from Reader &lt;reader@example.com&gt;") == 2, page
    assert "Got it, thanks!" in page and "One more thing." in page
    assert "Other mail received" not in page  # both matched to the message they answer
