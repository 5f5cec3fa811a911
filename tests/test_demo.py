"""`make demo` keeps working: run it as the Makefile does and read what it prints."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_demo_sends_and_prints_ses_message_ids(tmp_path, broker, redis_url):
    env = {**os.environ, "SEACUCUMBER_DEMO_DIR": str(tmp_path), "SEACUCUMBER_DEMO_MESSAGES": "5"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if broker == "filesystem":
        env["SEACUCUMBER_DEMO_BROKER"] = "filesystem"
    else:
        env["REDIS_URL"] = f"{redis_url}/7"
    done = subprocess.run(
        [sys.executable, "-m", "demo"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = re.findall(r"^reader\d+@example\.com\s+(\S+)$", done.stdout, re.MULTILINE)
    assert len(set(rows)) == 5
    assert "5 messages sent through SES" in done.stdout
