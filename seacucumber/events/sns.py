"""SNS message authenticity: the host rule for SNS URLs, the string SNS signs, the signature.

Signatures are checked with ``cryptography`` (X.509 parsing and RSA PKCS#1 v1.5 verification
are not things to write by hand). A ``SigningCertURL`` is only ever fetched once it passed
``check_sns_url``: https, no user info, no port, a host ``sns.<region>.amazonaws.com`` (or
``.amazonaws.com.cn``) and nothing else, so neither an S3 bucket nor any other
``*.amazonaws.com`` host can supply a certificate. Certificates are fetched with a timeout,
without following redirects, and kept per process (bounded).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import os
import re
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..conf import conf

logger = logging.getLogger(__name__)

#: sns.<region>.amazonaws.com[.cn]; a region is letters-words-digit (us-east-1, us-gov-west-1,
#: cn-north-1), which keeps out hosts such as sns.s3.amazonaws.com (a bucket named "sns").
_SNS_HOST = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-\d{1,2}\.amazonaws\.com(?:\.cn)?")
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_KEYS = (
    "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
)
MAX_CERT_BYTES = 64 * 1024
CACHE_SIZE = 32

_cache: OrderedDict[str, x509.Certificate] = OrderedDict()
_cache_lock = threading.Lock()


class InvalidMessage(Exception):
    """The post is not an SNS message we accept: answer ``status`` (4xx), change nothing."""

    status = 400


class NotAuthentic(InvalidMessage):
    """Not signed by SNS, or from a topic or certificate host we do not trust."""

    status = 403


class SNSUnavailable(Exception):
    """SNS could not be reached right now (network, timeout): answer 503 so SNS retries."""


def check_sns_url(url: Any, what: str = "SigningCertURL") -> str:
    """``url`` when it is https on an SNS host, with no user info, port, query or fragment
    trickery; ``InvalidMessage`` otherwise. Nothing is fetched."""
    if not isinstance(url, str) or not url:
        raise InvalidMessage(f"{what} is missing")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise NotAuthentic(f"{what} {url!r} is not a URL") from None
    host = parts.hostname or ""
    if (
        parts.scheme != "https"
        or port is not None
        or parts.username is not None
        or parts.netloc.lower() != host
        or not _SNS_HOST.fullmatch(host)
        or parts.fragment
        or "\\" in url
    ):
        raise NotAuthentic(f"{what} {url!r} is not https on an SNS host")
    return url


def check_cert_url(url: Any) -> str:
    """``check_sns_url`` plus: a ``.pem`` path and no query."""
    check_sns_url(url)
    parts = urlsplit(url)
    if parts.query or not parts.path.endswith(".pem"):
        raise NotAuthentic(f"SigningCertURL {url!r} is not a certificate path")
    return url


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed: ``Name\\nvalue\\n`` for each signed key present, in order."""
    kind = message.get("Type")
    keys = _NOTIFICATION_KEYS if kind == "Notification" else _CONFIRMATION_KEYS
    lines = []
    for key in keys:
        value = message.get(key)
        if value is None:
            if key == "Subject":
                continue
            raise InvalidMessage(f"{key} is missing")
        if not isinstance(value, str):
            raise InvalidMessage(f"{key} is not a string")
        lines.append(f"{key}\n{value}\n")
    return "".join(lines).encode("utf-8")


def fetch_url(url: str, max_bytes: int) -> bytes:
    """GET ``url`` (already checked) with the configured timeout, no redirects, at most
    ``max_bytes``. ``SEACUCUMBER_SNS_ENDPOINT_URL`` (testing) replaces scheme and host."""
    base = conf.SEACUCUMBER_SNS_ENDPOINT_URL
    if base:
        target, parts = urlsplit(base), urlsplit(url)
        url = urlunsplit((target.scheme, target.netloc, parts.path, parts.query, ""))
    opener = urllib.request.build_opener(_NoRedirect)
    timeout = float(conf.SEACUCUMBER_SNS_CERT_TIMEOUT)
    try:
        with opener.open(url, timeout=timeout) as response:  # noqa: S310 - URL checked
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise InvalidMessage(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SNSUnavailable(f"could not fetch {url}: {exc}") from None
    if len(body) > max_bytes:
        raise InvalidMessage(f"{url} sent more than {max_bytes} bytes")
    return body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect becomes an HTTPError: never follow one off the SNS host


def certificate(url: str) -> x509.Certificate:
    """The certificate at ``url``: pinned (``SEACUCUMBER_SNS_CERTIFICATES``), cached, or
    fetched. The URL must pass the host rule in every case."""
    check_cert_url(url)
    pinned = (conf.SEACUCUMBER_SNS_CERTIFICATES or {}).get(url)
    if isinstance(pinned, os.PathLike):  # a file, read now: its writer may start after us
        try:
            pinned = Path(pinned).read_bytes()
        except OSError as exc:
            raise NotAuthentic(f"pinned certificate file for {url}: {exc}") from None
    if pinned is not None:
        return _load(pinned.encode() if isinstance(pinned, str) else pinned, url)
    with _cache_lock:
        found = _cache.get(url)
        if found is not None:
            _cache.move_to_end(url)
            return found
    cert = _load(fetch_url(url, MAX_CERT_BYTES), url)
    with _cache_lock:
        _cache[url] = cert
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    logger.info("SNS signing certificate fetched from %s", url)
    return cert


def _load(pem: bytes, url: str) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise NotAuthentic(f"{url} is not a PEM certificate") from None
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise NotAuthentic(f"{url} is not an RSA certificate")
    return cert


def clear_cache() -> None:
    """Forget fetched certificates (tests)."""
    with _cache_lock:
        _cache.clear()


def verify(message: Mapping[str, Any]) -> None:
    """Check an SNS message's signature; ``InvalidMessage`` if it is not SNS's."""
    version = message.get("SignatureVersion")
    algorithm = _HASHES.get(version) if isinstance(version, str) else None
    if algorithm is None:
        raise NotAuthentic(f"SignatureVersion {version!r} is not 1 or 2")
    signature = message.get("Signature")
    if not isinstance(signature, str) or not signature:
        raise NotAuthentic("Signature is missing")
    try:
        signature_bytes = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise NotAuthentic("Signature is not base64") from None
    data = string_to_sign(message)
    cert = certificate(message.get("SigningCertURL"))
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise NotAuthentic("the signing certificate is expired or not yet valid")
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    try:
        public_key.verify(signature_bytes, data, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise NotAuthentic("the signature does not match") from None
