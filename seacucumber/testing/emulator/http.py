"""The emulator's HTTP server: routes SES calls and the ``/_emulator/`` control API.

HTTP/1.1 with keep-alive (boto3 reuses connections), a thread per connection. SES calls:
v1 ``SendRawEmail``, ``GetSendQuota``, ``GetSendStatistics``; v2 ``SendEmail``,
``GetAccount`` and the account-level suppression list (``suppression``); identities in both
(``identities``). Control: ``GET /_emulator/stats``,
``GET /_emulator/messages?since=N``, ``POST /_emulator/config`` (JSON), ``POST
/_emulator/reset``, ``GET /_emulator/cert.pem``, ``POST /_emulator/receive`` (JSON: ``raw``
as base64 and ``SESEmulator.receive``'s options; answers the webhook's status and the ids).
"""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import re
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from . import identities, protocol, suppression
from .state import Verdict

if TYPE_CHECKING:
    from . import SESEmulator

_APP_TOKEN = re.compile(r"(?:^|\s)app/(\S+)")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    emulator: SESEmulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a worker killed mid-call) is no error of the emulator's."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stalls
    server: Server

    # --- plumbing ------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, response: protocol.Response) -> None:
        status, headers, body = response
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        self._answer((status, {"Content-Type": "application/json"}, json.dumps(data).encode()))

    def _drop(self) -> None:
        """Close the connection without a word, as a network failure would."""
        self.close_connection = True

    def _latency(self) -> None:
        latency = self.server.emulator.account.config.latency
        if latency > 0:
            time.sleep(latency)

    # --- routing -------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._body()
        path = urlsplit(self.path).path
        if path.startswith("/_emulator/"):
            return self._control("GET", path)
        if path == protocol.V2_ACCOUNT_PATH:
            return self._quota(v2=True)
        if path.startswith(identities.V2_PATH):
            return self._identities_v2("GET", path)
        if path.startswith(suppression.PATH):
            return self._suppression("GET", path)
        self._answer(protocol.v2_error(404, "NotFoundException", f"no route for GET {path}"))

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        body = self._body()
        path = urlsplit(self.path).path
        if path.startswith(suppression.PATH):
            return self._suppression("PUT", path, body)
        self._answer(protocol.v2_error(404, "NotFoundException", f"no route for PUT {path}"))

    def _suppression(self, method: str, path: str, body: bytes = b"") -> None:
        emulator = self.server.emulator
        self._latency()
        if emulator.account.config.forbid_suppression:
            return self._answer(protocol.access_denied(
                "PutSuppressedDestination" if method == "PUT" else "ListSuppressedDestinations",
                True))
        self._answer(emulator.suppression.call(
            method, path, urlsplit(self.path).query, body,
            emulator.account.config.suppression_page_size))

    def do_DELETE(self) -> None:  # noqa: N802 - http.server's name
        self._body()
        path = urlsplit(self.path).path
        if path.startswith(identities.V2_PATH):
            return self._identities_v2("DELETE", path)
        if path.startswith(suppression.PATH):
            return self._suppression("DELETE", path)
        self._answer(protocol.v2_error(404, "NotFoundException", f"no route for DELETE {path}"))

    def _identities_v2(self, method: str, path: str, body: bytes = b"") -> None:
        self._latency()
        self._answer(self.server.emulator.identities.v2(
            method, path, urlsplit(self.path).query, body))

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self._body()
        path = urlsplit(self.path).path
        if path.startswith("/_emulator/"):
            return self._control("POST", path, body)
        if path == protocol.V2_SEND_PATH:
            return self._send(body, v2=True)
        if path.startswith((identities.V2_PATH, identities.V2_LIST_PATH)):
            return self._identities_v2("POST", path, body)
        if path in ("", "/"):
            return self._v1(body)
        self._answer(protocol.v2_error(404, "NotFoundException", f"no route for POST {path}"))

    def _v1(self, body: bytes) -> None:
        params = protocol.v1_params(body)
        action = params.get("Action", "")
        if action == "SendRawEmail":
            return self._send(body, v2=False, params=params)
        if action == "GetSendQuota":
            return self._quota(v2=False)
        if action == "GetSendStatistics":
            self._latency()
            return self._answer(protocol.statistics_answer(
                self.server.emulator.account.statistics()))
        if action in identities.V1_ACTIONS:
            self._latency()
            return self._answer(self.server.emulator.identities.v1(action, params))
        self._answer(protocol.v1_error(
            400, "InvalidAction", f"The action {action or '(none)'} is not valid for the SES "
            "emulator (it speaks SendRawEmail, GetSendQuota, GetSendStatistics and the "
            "identity calls of ses_address; use moto for the rest)."))

    # --- SES calls -----------------------------------------------------------------------
    def _send(self, body: bytes, v2: bool, params: dict[str, str] | None = None) -> None:
        emulator = self.server.emulator
        try:
            request = (protocol.v2_send_request(body) if v2
                       else protocol.v1_send_request(params or {}))
        except protocol.BadRequest as exc:
            error = protocol.v2_error if v2 else protocol.v1_error
            return self._answer(error(400, exc.code, exc.message))
        match = _APP_TOKEN.search(self.headers.get("User-Agent", ""))
        answer = emulator.account.decide_send(
            request.source, request.destinations, request.raw, app=match.group(1) if match else "",
            tags=request.tags, options=request.options)
        self._latency()
        if answer.verdict in (Verdict.ACCEPT, Verdict.DROP_AFTER_ACCEPT):
            emulator.accepted(answer.message)
        if answer.verdict in (Verdict.DROP, Verdict.DROP_AFTER_ACCEPT):
            return self._drop()
        self._answer(protocol.send_answer(answer, v2, emulator.region))

    def _quota(self, v2: bool) -> None:
        account = self.server.emulator.account
        self._latency()
        if account.config.forbid_quota:
            account.count_denied_quota_call()
            return self._answer(protocol.access_denied(
                "GetAccount" if v2 else "GetSendQuota", v2))
        self._answer(protocol.quota_answer(account.quota(), v2, account.config))

    # --- control API ---------------------------------------------------------------------
    def _control(self, method: str, path: str, body: bytes = b"") -> None:
        emulator = self.server.emulator
        name = path.removeprefix("/_emulator/")
        if method == "GET" and name == "stats":
            return self._json(emulator.stats())
        if method == "GET" and name == "messages":
            query = parse_qs(urlsplit(self.path).query)
            since = int(query.get("since", ["0"])[0])
            return self._json([m.as_json() for m in emulator.account.accepted_since(since)])
        if method == "GET" and name == "cert.pem":
            pem = emulator.cert_pem()
            return self._answer((200, {"Content-Type": "application/x-pem-file"}, pem))
        if method == "POST" and name == "config":
            try:
                emulator.configure(**json.loads(body or b"{}"))
            except (ValueError, TypeError) as exc:
                return self._json({"error": str(exc)}, status=400)
            return self._json(emulator.stats()["config"])
        if method == "POST" and name == "receive":
            return self._receive(body)
        if method == "POST" and name == "reset":
            emulator.reset()
            return self._json({"reset": True})
        self._json({"error": f"no control route {method} {path}"}, status=404)

    def _receive(self, body: bytes) -> None:
        try:
            options = json.loads(body or b"{}")
            raw = base64.b64decode(options.pop("raw"), validate=True)
            received = self.server.emulator.receive(raw, **options)
        except (KeyError, ValueError, TypeError, binascii.Error) as exc:
            return self._json({"error": f"receive: {exc!r}"}, status=400)
        self._json(received.as_json())
