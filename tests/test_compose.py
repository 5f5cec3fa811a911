"""docker-compose.yml cannot run here (no Docker in CI), so its parts are checked one by one:
every service's command names a module, app, file or flag that exists, its environment
variables are ones the code reads, and the example's Celery settings are celeryconfig.py's."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
#: Where the Dockerfile puts things: /app is the repository root (PYTHONPATH too).
IMAGE_ROOT = "/app"


def local_path(container_path: str) -> Path:
    assert container_path.startswith(IMAGE_ROOT), container_path
    return ROOT / container_path.removeprefix(IMAGE_ROOT).lstrip("/")


def code_text() -> str:
    files = [*ROOT.glob("seacucumber/**/*.py"), *ROOT.glob("example/**/*.py"),
             ROOT / "celeryconfig.py"]
    return "\n".join(f.read_text() for f in files)


def test_every_service_is_there():
    assert {"redis", "ses", "worker", "web"} <= set(SERVICES)
    assert "flower" in SERVICES  # optional, but present


def test_dockerfile_copies_what_exists():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert f"PYTHONPATH={IMAGE_ROOT}" in dockerfile
    assert "flower" in dockerfile  # the flower service's command comes from this install


def test_ses_service_runs_the_emulator_with_flags_it_knows():
    from seacucumber.testing.emulator import command_line

    command = SERVICES["ses"]["command"]
    assert command[:3] == ["python", "-m", "seacucumber.testing.emulator"]
    assert importlib.util.find_spec(command[2]) is not None
    args = command_line().parse_args(command[3:])  # exits (fails) on an unknown flag
    assert args.host == "0.0.0.0"  # noqa: S104 - reachable from the other containers
    port = str(args.port)
    assert f"http://ses:{port}" == COMPOSE["x-app-env"]["SEACUCUMBER_ENDPOINT_URL"]
    assert SERVICES["ses"]["ports"] == [f"{port}:{port}"]
    assert args.webhook_url == "http://web:8000/ses/events/"
    assert args.topic_arn == COMPOSE["x-app-env"]["SEACUCUMBER_EVENT_TOPIC_ARNS"]
    assert args.cert_file == COMPOSE["x-app-env"]["EXAMPLE_SNS_CERT_FILE"]
    assert "certs:/certs" in SERVICES["ses"]["volumes"]
    assert "certs:/certs" in SERVICES["web"]["volumes"]


@pytest.mark.parametrize("name", ["worker", "flower"])
def test_celery_services_name_the_example_app(name):
    service = SERVICES[name]
    command = service["command"]
    assert command[:3] == ["celery", "-A", "exampleproject"]
    app_dir = local_path(service["working_dir"])
    assert (app_dir / "exampleproject" / "celery.py").exists()
    assert "app = Celery(" in (app_dir / "exampleproject" / "celery.py").read_text()


def test_worker_consumes_the_queue_mail_is_routed_to():
    import celeryconfig

    command = SERVICES["worker"]["command"]
    queue = command[command.index("-Q") + 1]
    assert celeryconfig.task_routes["seacucumber.send_email"]["queue"] == queue
    example = (ROOT / "example/exampleproject/settings.py").read_text()
    assert f'"seacucumber.send_email": {{"queue": "{queue}"}}' in example


def test_example_celery_settings_are_celeryconfigs():
    """The compose worker runs the example app, whose CELERY_ settings must be the documented
    worker configuration of celeryconfig.py under Django's names."""
    import celeryconfig

    example = (ROOT / "example/exampleproject/settings.py").read_text()
    expected = {
        "CELERY_TASK_SERIALIZER": repr(celeryconfig.task_serializer).replace("'", '"'),
        "CELERY_ACCEPT_CONTENT": repr(celeryconfig.accept_content).replace("'", '"'),
        "CELERY_TASK_ACKS_LATE": repr(celeryconfig.task_acks_late),
        "CELERY_TASK_REJECT_ON_WORKER_LOST": repr(celeryconfig.task_reject_on_worker_lost),
    }
    for name, value in expected.items():
        assert f"{name} = {value}" in example, name
    visibility = celeryconfig.broker_transport_options["visibility_timeout"]
    assert visibility == 2 * 3600
    assert '"visibility_timeout": 2 * 3600' in example


def test_web_command_uses_files_that_exist():
    service = SERVICES["web"]
    app_dir = local_path(service["working_dir"])
    command = " ".join(service["command"])
    assert "manage.py migrate" in command and "manage.py runserver 0.0.0.0:8000" in command
    assert (app_dir / "manage.py").exists()
    urls = (app_dir / "exampleproject" / "urls.py").read_text()
    assert 'include("seacucumber.urls")' in urls and '"ses/"' in urls
    assert "web" in (app_dir / "exampleproject/settings.py").read_text()  # ALLOWED_HOSTS


def test_environment_variables_are_read_by_the_code():
    """Each variable compose sets is read somewhere: by boto3 (AWS_*), Django, the example
    settings or Sea Cucumber; none is a typo that silently does nothing."""
    text = code_text()
    boto3_reads = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    django_reads = {"DJANGO_SETTINGS_MODULE"}
    for name in COMPOSE["x-app-env"]:
        if name in boto3_reads | django_reads:
            continue
        assert re.search(rf'os\.environ(?:\.get)?[\(\[]"{name}"', text), \
            f"{name} is set by docker-compose.yml but no code reads it"


def test_redis_keeps_its_data():
    command = SERVICES["redis"]["command"]
    assert command[:3] == ["redis-server", "--appendonly", "yes"]
    assert COMPOSE["x-app-env"]["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
