"""docker-compose.yml cannot run here (no Docker in CI), so its parts are checked one by one:
every service's command names a module, app, file or flag that exists, its environment
variables are ones the code reads, and the Celery app the services run has celeryconfig.py's
settings, every one of them."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import types
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


def worker_queues() -> list[str]:
    """The queues the compose worker consumes (its ``-Q``)."""
    command = SERVICES["worker"]["command"]
    return command[command.index("-Q") + 1].split(",")


def test_worker_consumes_the_queue_mail_is_routed_to():
    import celeryconfig

    queue = celeryconfig.task_routes["seacucumber.send_email"]["queue"]
    assert queue == worker_queues()[0]
    example = (ROOT / "example/exampleproject/settings.py").read_text()
    assert f'"seacucumber.send_email": {{"queue": "{queue}"}}' in example


#: Run in the example folder, as the compose services are: load the Celery app the way
#: ``celery -A exampleproject`` does and compare its configuration with celeryconfig.py's.
APP_CONF = r"""
import json, sys, types

import celeryconfig
from celery.app.defaults import SETTING_KEYS
from celery.app.utils import find_app

app = find_app("exampleproject")
if sys.argv[1] == "celeryconfig":  # every setting celeryconfig.py makes
    keys = [k for k, v in vars(celeryconfig).items()
            if not k.startswith("_") and not isinstance(v, types.ModuleType)]
else:  # every CELERY_ setting of the example's settings.py, under Celery's name
    from django.conf import settings
    keys = [n.removeprefix("CELERY_").lower() for n in dir(settings) if n.startswith("CELERY_")]
print(json.dumps({
    "keys": sorted(keys),
    "unknown": sorted(k for k in keys if k not in SETTING_KEYS),
    "different": {k: [repr(getattr(celeryconfig, k, "<not in celeryconfig.py>")),
                      repr(app.conf[k])]
                  for k in keys if getattr(celeryconfig, k, object()) != app.conf[k]},
}))
"""


#: The broker queue of every lane the example's settings declare, as its backend sends it:
#: the lane's queue, else SEACUCUMBER_QUEUE, else the Celery app's routing.
LANE_QUEUES = r"""
import json

import django
from celery.app.utils import find_app

find_app("exampleproject").set_current()
django.setup()
from seacucumber.conf import conf, lanes
from seacucumber.shared.workers import routed_queue

print(json.dumps({lane.name: lane.queue or conf.SEACUCUMBER_QUEUE or routed_queue()
                  for lane in lanes()}))
"""


def example_app_conf(keys: str, **env_extra: str) -> dict:
    """The example's Celery app as a compose service loads it (``APP_CONF``)."""
    return run_in_example(APP_CONF, keys, **env_extra)


def run_in_example(script: str, *args: str, **env_extra: str) -> dict:
    """Run ``script`` as a compose service runs: the compose environment (and nothing of
    ours), /app on PYTHONPATH as the Dockerfile sets, the example folder as working
    directory; its last line of output is JSON."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("CELERY_", "SEACUCUMBER_", "DJANGO_", "EXAMPLE_"))}
    env.update({name: str(value) for name, value in COMPOSE["x-app-env"].items()})
    env.update(PYTHONPATH=str(ROOT), **env_extra)
    done = subprocess.run([sys.executable, "-c", script, *args],
                          cwd=local_path(SERVICES["worker"]["working_dir"]), env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_compose_services_run_with_celeryconfig():
    """Every setting of celeryconfig.py is what the worker (and web, and flower) app ends up
    with under docker-compose.yml's environment; none is a name Celery does not know."""
    import celeryconfig

    conf = example_app_conf("celeryconfig")
    expected = {name for name, value in vars(celeryconfig).items()
                if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert set(conf["keys"]) == expected
    assert {"worker_cancel_long_running_tasks_on_connection_loss", "worker_prefetch_multiplier",
            "broker_connection_timeout", "broker_connection_retry_on_startup",
            "result_accept_content", "task_routes", "broker_url"} <= expected
    assert conf["unknown"] == [], "celeryconfig.py names settings Celery does not have"
    assert conf["different"] == {}, "celeryconfig.py vs the compose app: " + repr(
        conf["different"])
    for name in ("worker", "web", "flower"):
        assert SERVICES[name]["environment"]["CELERY_CONFIG_MODULE"] == "celeryconfig"
    assert (ROOT / "celeryconfig.py").exists()
    assert "celeryconfig.py" in (ROOT / "Dockerfile").read_text()  # copied to /app


def test_example_django_celery_settings_agree_with_celeryconfig():
    """Without CELERY_CONFIG_MODULE (README's "Set up", tests/test_example.py) the example's
    Django CELERY_ settings configure the app: they are celeryconfig.py's settings, all of
    them and no others, with the same values."""
    import celeryconfig

    conf = example_app_conf("django", CELERY_CONFIG_MODULE="")
    assert set(conf["keys"]) == {name for name, value in vars(celeryconfig).items()
                                 if not name.startswith("_")
                                 and not isinstance(value, types.ModuleType)}
    assert conf["unknown"] == []
    assert conf["different"] == {}, "settings.py vs celeryconfig.py: " + repr(conf["different"])


@pytest.mark.parametrize("config", ["celeryconfig", "django"])
def test_worker_consumes_every_lane_queue(config):
    """Each lane has its own broker queue (docs/rate.rst): the compose worker consumes the
    queue of every lane the example's settings declare, as the example routes them, with
    the compose configuration (celeryconfig.py) and with the example's Django CELERY_ settings;
    otherwise that lane's mail would wait in its queue forever."""
    extra = {} if config == "celeryconfig" else {"CELERY_CONFIG_MODULE": ""}
    queues = run_in_example(LANE_QUEUES, **extra)
    assert list(queues) == ["transactional", "bulk"], queues
    assert queues["transactional"] != queues["bulk"], queues  # bulk mail has its own queue
    missing = {lane: queue for lane, queue in queues.items() if queue not in worker_queues()}
    assert not missing, f"the compose worker (-Q {','.join(worker_queues())}) does not " \
                        f"consume the queues of lanes {missing}"


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


def test_workers_are_started_again_when_they_end():
    """docs/reliability.rst: kombu's Redis transport can end a worker on a broker restart."""
    assert SERVICES["worker"]["restart"] == "unless-stopped"


def test_the_systemd_unit_starts_the_worker_again_whenever_it_ends():
    """contrib/systemd's unit, the other stack docs/reliability.rst names: restarted on any
    exit (an "Unrecoverable error" exits 1, a kill by signal too), without a start limit."""
    import configparser

    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read_string((ROOT / "contrib" / "systemd" / "seacucumber-worker.service").read_text())
    assert unit["Service"]["Restart"] == "always"
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"
    assert unit["Service"]["KillSignal"] == "SIGTERM"  # warm shutdown: sends finish
    assert " worker " in unit["Service"]["ExecStart"] + " "
