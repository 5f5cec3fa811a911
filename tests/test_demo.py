"""`make demo` keeps working: run it as the Makefile does and read its summary."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_demo(tmp_path, **env_extra):
    env = {**os.environ, "SEACUCUMBER_DEMO_DIR": str(tmp_path),
           "SEACUCUMBER_DEMO_MESSAGES": "40", **env_extra}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-m", "demo"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def row(output: str, name: str) -> str:
    found = re.search(rf"^{name}\s{{2,}}(.+)$", output, re.MULTILINE)
    assert found, f"no {name!r} row in:\n{output}"
    return found.group(1)


@pytest.mark.parametrize("broker", ["filesystem", "redis"])
def test_demo_prints_the_summary(tmp_path, broker, redis_url):
    extra = ({"SEACUCUMBER_DEMO_BROKER": "filesystem"} if broker == "filesystem"
             else {"REDIS_URL": f"{redis_url}/7"})
    output = run_demo(tmp_path, **extra)
    assert row(output, "accepted by send_messages") == "41 messages"
    # 40 messages, one in four to 3 recipients; the stranger's message is refused by SES
    assert row(output, "sent \\(accepted by SES\\)") == "40 messages, 60 recipients"
    assert row(output, "bounced").startswith("4 ")
    assert row(output, "complained").startswith("4 ")
    assert row(output, "delivered") == "32"
    assert row(output, "failed") == "1"
    assert "someone@unverified.example: MessageRejected: Email address is not verified" in output
    assert re.search(r"steady rate\s+\d+\.\d recipients/s = \d\.\d\d × the account's 50/s",
                     output)
    assert "41/41 settled" in output
