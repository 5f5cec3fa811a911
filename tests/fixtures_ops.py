"""Fixtures for the operator tools and DKIM: test RSA and Ed25519 keys made at test time, and a
loopback HTTP endpoint that answers what a test tells it to (for the SES answers moto has
no way to give: AccessDenied, v2 GetAccount). boto3 talks real HTTP to it."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


@dataclass(frozen=True)
class RSAKey:
    """An RSA-2048 key: its PEM (PKCS#8, as ``openssl genpkey`` writes it) and the DKIM TXT
    record of its public key, computed here independently of seacucumber.dkim."""

    pem: str
    txt: bytes

    def dnsfunc(self, expected_name: bytes) -> Callable[..., bytes | None]:
        """A dkimpy ``dnsfunc`` answering ``expected_name`` with the TXT record (no DNS)."""
        def lookup(name: bytes, timeout: int = 5) -> bytes | None:
            return self.txt if name == expected_name else None
        return lookup


def make_key(bits: int = 2048) -> RSAKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return RSAKey(pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der))


@dataclass(frozen=True)
class Ed25519Key(RSAKey):
    """An Ed25519 key (RFC 8463): its PEM (PKCS#8), its base64 seed (as ``dknewkey`` writes
    it) and its DKIM TXT record (``k=ed25519``, the raw 32-byte public key)."""

    seed: str = ""


def make_ed25519_key() -> Ed25519Key:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return Ed25519Key(pem, b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public),
                      base64.b64encode(seed).decode("ascii"))


@pytest.fixture(scope="session")
def ed25519_key() -> Ed25519Key:
    return make_ed25519_key()


@pytest.fixture(scope="session")
def dkim_key() -> RSAKey:
    return make_key()


@pytest.fixture(scope="session")
def other_dkim_key() -> RSAKey:
    return make_key()


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def v1_error(code: str, message: str, status: int = 403) -> Answer:
    """The XML error body SES v1 (query protocol) sends."""
    body = (
        '<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>x</RequestId></ErrorResponse>"
    ).encode()
    return Answer(status, body, {"Content-Type": "text/xml"})


def v2_error(code: str, message: str, status: int = 403) -> Answer:
    """The JSON error SES v2 (rest-json protocol) sends."""
    return Answer(status, json.dumps({"message": message}).encode(),
                  {"Content-Type": "application/json", "x-amzn-ErrorType": code})


def v2_json(data: dict) -> Answer:
    return Answer(200, json.dumps(data).encode(), {"Content-Type": "application/json"})


@dataclass
class FakeEndpoint:
    """A loopback HTTP server. ``routes`` maps a v1 ``Action`` or a v2 ``METHOD /path`` to the
    ``Answer`` to send; anything else gets 404. ``requests`` lists what came in."""

    url: str = ""
    routes: dict[str, Answer] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def fake_endpoint(settings) -> Iterator[FakeEndpoint]:
    """A ``FakeEndpoint`` that the settings point SES at."""
    endpoint = FakeEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            action = parse_qs(body).get("Action", [""])[0]
            key = action or f"{self.command} {self.path.split('?')[0]}"
            endpoint.requests.append(key)
            answer = endpoint.routes.get(key, Answer(404, b'{"message": "no route"}'))
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_DELETE = do_PUT = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.SEACUCUMBER_ENDPOINT_URL = endpoint.url
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
