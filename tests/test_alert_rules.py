"""The alert rules in contrib/prometheus: valid (``promtool check rules``), firing when they
should and not before (``promtool test rules`` on their own test file), and naming only
metrics the endpoint serves, as the Grafana board must."""

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from seacucumber.operations import metrics
from seacucumber.shared import quota
from tests.conftest import service_missing

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "contrib" / "prometheus" / "seacucumber-alerts.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "seacucumber-alerts.test.yml"
BOARD = ROOT / "docs" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bseacucumber_[a-z0-9_]+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        service_missing("promtool (Debian's prometheus package)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=RULES.parent)


def test_the_rules_are_valid():
    found = promtool("check", "rules", RULES.name)
    assert found.returncode == 0, found.stdout + found.stderr


def test_the_rules_pass_their_unit_tests():
    found = promtool("test", "rules", RULE_TESTS.name)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "SUCCESS" in found.stdout


def test_every_alert_has_a_unit_test():
    alerts = set(re.findall(r"^\s+- alert: (\w+)$", RULES.read_text(), re.M))
    tested = set(re.findall(r"^\s+alertname: (\w+)$", RULE_TESTS.read_text(), re.M))
    assert alerts and alerts <= tested, alerts - tested


@pytest.mark.django_db
def test_rules_and_board_name_only_metrics_the_endpoint_serves(settings, redis_url,
                                                                ses_emulator):
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/7"
    settings.SEACUCUMBER_REDIS_PREFIX = f"rules-{uuid.uuid4().hex[:8]}"
    settings.SEACUCUMBER_OUTBOX = True
    settings.SEACUCUMBER_REPUTATION_GUARD = True
    settings.SEACUCUMBER_REPUTATION_GUARD_LANES = ["bulk"]
    quota.forget()
    metrics.count("config_errors", "AccessDenied", "transactional")
    served = {sample.name for family in text_string_to_metric_families(
        metrics.exposition().decode()) for sample in family.samples}
    exprs = [target["expr"] for panel in json.loads(BOARD.read_text())["panels"]
             for target in panel.get("targets", [])]
    named = set(METRIC_NAME.findall(RULES.read_text() + "\n".join(exprs)))
    assert named, "no metric named: the pattern is wrong"
    assert named <= served, sorted(named - served)
