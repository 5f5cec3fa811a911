"""SNS message authenticity: the host rule for SNS URLs, the string SNS signs, the signature.

Signatures are checked with ``cryptography`` (X.509 parsing and RSA PKCS#1 v1.5 verification
are not things to write by hand). A ``SigningCertURL`` is only ever fetched once it passed
``check_sns_url``: https, no user info, no port, a host ``sns.<region>.amazonaws.com`` (or
``.amazonaws.com.cn``) for a region where SNS really runs, and nothing else, so neither an S3
bucket, nor any other ``*.amazonaws.com`` host, nor a made-up region can supply a certificate.
Certificates are fetched with a timeout, without following redirects, and kept per process
(bounded). The SNS host answering 5xx, or not at all, is ``SNSUnavailable`` (the webhook answers
503 and SNS retries); answering 4xx is ``InvalidNotification``.

Replays: a signed message stays valid forever, so its ``Timestamp`` (signed too) must be
recent (``check_fresh``: at most ``SEACUCUMBER_SNS_MAX_AGE`` old, at most
``SEACUCUMBER_SNS_CLOCK_SKEW`` ahead), and within that window its ``MessageId`` is refused a
second time (``SeenNotification``, written by ``handlers``). ``forget_seen`` prunes seen ids
but never inside the window, so between them a message is applied once, however old.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import http.client
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
from django.utils import timezone

from ..conf import conf
from ..exceptions import InvalidNotification, NotAuthentic, SNSUnavailable

logger = logging.getLogger(__name__)

#: The AWS partitions whose SNS hosts may sign (sns.<region>.<DNS suffix>): commercial,
#: GovCloud (amazonaws.com) and China (amazonaws.com.cn).
SNS_PARTITIONS = ("aws", "aws-us-gov", "aws-cn")
#: A region name as it appears in a topic ARN (us-east-1, us-gov-west-1, cn-north-1).
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_KEYS = (
    "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
)
MAX_CERT_BYTES = 64 * 1024
CACHE_SIZE = 32

_cache: OrderedDict[str, x509.Certificate] = OrderedDict()
_cache_lock = threading.Lock()


@functools.cache
def _endpoint_data() -> dict[str, Any]:
    """botocore's bundled endpoint data, read once per process without a boto3 session (so
    neither AWS credentials nor a profile are needed, and a bad ``AWS_PROFILE`` does not
    matter)."""
    from botocore.loaders import create_loader

    return create_loader().load_data("endpoints")


def _dns_suffixes() -> dict[str, str]:
    """Partition name -> its DNS suffix, for ``SNS_PARTITIONS``."""
    return {partition["partition"]: partition["dnsSuffix"]
            for partition in _endpoint_data()["partitions"]
            if partition["partition"] in SNS_PARTITIONS}


@functools.cache
def known_sns_hosts() -> frozenset[str]:
    """``sns.<region>.<suffix>`` for every region botocore's bundled endpoint data lists SNS in,
    in ``SNS_PARTITIONS``."""
    from botocore.regions import EndpointResolver

    resolver = EndpointResolver(_endpoint_data())
    return frozenset(f"sns.{region}.{suffix}"
                     for name, suffix in _dns_suffixes().items()
                     for region in resolver.get_available_endpoints("sns", name))


def _topic_hosts() -> set[str]:
    """The SNS hosts of the regions of the allowed topics (``SEACUCUMBER_EVENT_TOPIC_ARNS``):
    a region the operator created a topic in is real even when the installed botocore is
    older than the region."""
    suffixes = _dns_suffixes()
    allowed = conf.SEACUCUMBER_EVENT_TOPIC_ARNS or ()
    hosts = set()
    for arn in (allowed,) if isinstance(allowed, str) else allowed:
        parts = arn.split(":") if isinstance(arn, str) else []
        if (len(parts) >= 6 and parts[0] == "arn" and parts[2] == "sns"
                and parts[1] in suffixes and _REGION.fullmatch(parts[3])):
            hosts.add(f"sns.{parts[3]}.{suffixes[parts[1]]}")
    return hosts


def is_sns_host(host: str) -> bool:
    """Whether ``host`` is the SNS endpoint of a real region (see ``known_sns_hosts``)."""
    return host in known_sns_hosts() or host in _topic_hosts()


def check_sns_url(url: Any, what: str = "SigningCertURL") -> str:
    """``url`` when it is https on the SNS host of a real region (``is_sns_host``), with no
    user info, port, query or fragment trickery; ``NotAuthentic`` otherwise. Nothing is
    fetched."""
    if not isinstance(url, str) or not url:
        raise InvalidNotification(f"{what} is missing")
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
        or not is_sns_host(host)
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
            raise InvalidNotification(f"{key} is missing")
        if not isinstance(value, str):
            raise InvalidNotification(f"{key} is not a string")
        lines.append(f"{key}\n{value}\n")
    return "".join(lines).encode("utf-8")


def fetch_url(url: str, max_bytes: int) -> bytes:
    """GET ``url`` (already checked) with the configured timeout, no redirects, at most
    ``max_bytes``. ``SEACUCUMBER_SNS_ENDPOINT_URL`` (testing) replaces scheme and host.

    ``SNSUnavailable`` (SNS retries) when the host cannot be reached, times out, breaks the
    answer off or answers 5xx / 429; ``InvalidNotification`` when it answers any other error
    (4xx, or a redirect, never followed) or too much."""
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
        if exc.code >= 500 or exc.code == 429:  # SNS's trouble, not the message's: retry
            raise SNSUnavailable(f"{url} answered HTTP {exc.code}") from None
        raise InvalidNotification(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise SNSUnavailable(f"could not fetch {url}: {exc}") from None
    if len(body) > max_bytes:
        raise InvalidNotification(f"{url} sent more than {max_bytes} bytes")
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
    """Check an SNS message's signature; ``InvalidNotification`` if it is not SNS's."""
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
    cert = certificate(check_cert_url(message.get("SigningCertURL")))
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise NotAuthentic("the signing certificate is expired or not yet valid")
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    try:
        public_key.verify(signature_bytes, data, padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise NotAuthentic("the signature does not match") from None


# --- replays ------------------------------------------------------------------------------------

def published(timestamp: Any) -> datetime.datetime | None:
    """An SNS ``Timestamp`` (when SNS published the message) as an aware datetime; None when
    it is not an ISO 8601 time with a zone."""
    try:
        value = datetime.datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo is not None else None


def _max_age() -> float | None:
    value = conf.SEACUCUMBER_SNS_MAX_AGE
    return None if value is None else float(value)


def replay_window() -> float | None:
    """Seconds after its arrival a message could still pass ``check_fresh`` (max age plus
    clock skew): how long its seen id must be kept. None: no age limit."""
    max_age = _max_age()
    return None if max_age is None else max_age + float(conf.SEACUCUMBER_SNS_CLOCK_SKEW)


def check_fresh(message: Mapping[str, Any], now: datetime.datetime | None = None) -> None:
    """``InvalidNotification`` (400) unless the message's ``Timestamp`` is at most
    ``SEACUCUMBER_SNS_MAX_AGE`` seconds old and at most ``SEACUCUMBER_SNS_CLOCK_SKEW`` ahead.
    SNS retries a delivery for an hour at most: an older message is a replay."""
    stamp = message.get("Timestamp")
    when = published(stamp)
    shown = repr(stamp)[:40]
    if when is None:
        raise InvalidNotification(f"Timestamp {shown} is not an ISO 8601 time with a zone")
    age = ((now or datetime.datetime.now(datetime.UTC)) - when).total_seconds()
    max_age = _max_age()
    if max_age is not None and age > max_age:
        raise InvalidNotification(f"Timestamp {shown} is {age:.0f} s old, over "
                                  f"SEACUCUMBER_SNS_MAX_AGE ({max_age:g} s): a replay")
    skew = float(conf.SEACUCUMBER_SNS_CLOCK_SKEW)
    if -age > skew:
        raise InvalidNotification(f"Timestamp {shown} is {-age:.0f} s ahead of this clock, "
                                  f"over SEACUCUMBER_SNS_CLOCK_SKEW ({skew:g} s)")


def forget_seen(days: float) -> int:
    """Delete the seen SNS ids received more than ``days`` ago, except those received inside
    the replay window (``replay_window``), whose message would pass ``check_fresh`` again;
    returns how many."""
    # imported here: the SES emulator signs with this module in processes without Django apps
    from ..models import SeenNotification

    keep = datetime.timedelta(days=days)
    window = replay_window()
    if window is not None:
        keep = max(keep, datetime.timedelta(seconds=window))
    deleted, _ = SeenNotification.objects.filter(
        received_at__lt=timezone.now() - keep).delete()
    return deleted
