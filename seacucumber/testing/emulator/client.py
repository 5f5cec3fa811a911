"""Reading and steering an SES emulator, in this process or over HTTP.

``EmulatorBase`` is what tests and benchmarks rely on (``stats``, ``messages``,
``configure``, ``reset``, ``wait_for``); ``SESEmulator`` implements it in-process and
``EmulatorClient`` over the ``/_emulator/`` control API of one running elsewhere.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from typing import Any

from .state import Accepted


class EmulatorBase:
    def configure(self, **changes: Any) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        raise NotImplementedError

    def messages(self, since: int = 0) -> list[Accepted]:
        raise NotImplementedError

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Accepted]:
        """Wait until at least ``count`` messages were accepted; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            accepted = self.stats()["accepted"]
            if accepted >= count:
                return self.messages()
            if time.monotonic() > deadline:
                raise AssertionError(f"SES emulator accepted {accepted} messages, "
                                     f"wanted {count}")
            time.sleep(0.05)


class EmulatorClient(EmulatorBase):
    """An emulator running in another process (``python -m seacucumber.testing.emulator``)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"emulator URL must be http(s): {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, name: str, data: Any = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        url = f"{self.url}/_emulator/{name}"  # http(s) only: checked in __init__
        request = urllib.request.Request(url, data=body, method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:  # noqa: S310
            payload = answer.read()
        return json.loads(payload) if name != "cert.pem" else payload

    def configure(self, **changes: Any) -> None:
        self._call("POST", "config", changes)

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def messages(self, since: int = 0) -> list[Accepted]:
        return [Accepted(**{**m, "raw": base64.b64decode(m["raw"])})
                for m in self._call("GET", f"messages?since={since}")]

    def cert_pem(self) -> bytes:
        return self._call("GET", "cert.pem")

    def receive(self, raw: bytes, **options: Any) -> dict[str, Any]:
        """``SESEmulator.receive`` over HTTP: the webhook's ``status``, ``ses_message_id``,
        ``sns_message_id`` and the signed ``notification``."""
        return self._call("POST", "receive",
                          {"raw": base64.b64encode(raw).decode("ascii"), **options})

    def ready(self, timeout: float = 10.0) -> EmulatorClient:
        """Wait until the emulator answers (just started, say); returns self."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.stats()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
