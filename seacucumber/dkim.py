"""DKIM signing with dkimpy, in the worker, just before the SES call.

Signing is on when ``DKIM_DOMAIN`` and ``DKIM_PRIVATE_KEY`` are set (``d=`` that domain,
``s=`` ``DKIM_SELECTOR``, ``h=`` ``DKIM_HEADERS``), and/or per sender domain with
``SEACUCUMBER_DKIM_KEYS``: the key of the From address's domain (or its closest listed parent
domain) signs, else the ``DKIM_DOMAIN`` key, else nothing. dkimpy is the reference Python DKIM
implementation (RFC 6376, also used by verifiers), so we do not hand-roll canonicalisation.

Keys are read and checked once per process (cached by the setting's value, so
``override_settings`` works): ``cryptography`` loads any PEM form (PKCS#1 or PKCS#8, CRLF or
LF) and the key is handed to dkimpy as the PKCS#1 PEM bytes it parses. ``check_settings`` runs
at start-up (``SeaCucumberConfig.ready``) and raises ``ImproperlyConfigured`` naming the
problem, so a bad key stops the process instead of failing every message. Canonicalisation is
relaxed/relaxed: SES adds headers and rewrites Message-ID and Date, which are not signed.
"""

from __future__ import annotations

import base64
import functools
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from typing import Any

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import DomainNameValidator

from .conf import conf
from .exceptions import SigningError

#: Headers SES's manual-signing guide says not to sign: SES sets or rewrites them.
SES_REWRITES = frozenset({"message-id", "date", "return-path", "bounces-to"})
MIN_KEY_BITS = 1024  # dkimpy's verifiers refuse shorter keys; use 2048
_SELECTOR = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*$"
)
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII, no colon
_validate_domain = DomainNameValidator(accept_idna=False)


#: RFC 8058 section 4: one-click unsubscribe counts only when the signature covers both
#: headers, so they are signed whenever a message has them, whatever the headers setting says.
LIST_HEADERS = (b"List-Unsubscribe", b"List-Unsubscribe-Post")


def _with_list_headers(headers: tuple[bytes, ...], raw: bytes) -> list[bytes]:
    """``headers`` and the RFC 8058 list headers ``raw`` has (and ``headers`` lacks)."""
    head = b"\r\n" + raw.split(b"\r\n\r\n", 1)[0].lower()
    named = {h.lower() for h in headers}
    return [*headers, *(h for h in LIST_HEADERS
                        if h.lower() not in named and b"\r\n" + h.lower() + b":" in head)]


@dataclass(frozen=True)
class Signer:
    """One DKIM identity: domain, selector, key (PKCS#1 PEM) and headers, all bytes."""

    domain: bytes
    selector: bytes
    key: bytes
    headers: tuple[bytes, ...]

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with a DKIM-Signature header in front."""
        try:
            header = dkimpy.sign(
                raw, self.selector, self.domain, self.key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=_with_list_headers(self.headers, raw),
                linesep=b"\r\n",
            )
        except dkimpy.DKIMException as exc:
            raise SigningError(f"DKIM signing for {self.domain.decode()} failed: {exc}") from None
        return header + raw


@dataclass(frozen=True)
class Signers:
    """The signers the settings give: per sender domain, and the default."""

    by_domain: dict[str, Signer]
    default: Signer | None

    def for_domain(self, domain: str) -> Signer | None:
        """The signer of ``domain`` or of its closest listed parent domain, else default."""
        labels = domain.lower().rstrip(".").split(".")
        for start in range(len(labels) - 1):
            found = self.by_domain.get(".".join(labels[start:]))
            if found is not None:
                return found
        return self.default


def load_key(value: Any, setting: str) -> bytes:
    """The PKCS#1 PEM bytes dkimpy takes, from a PEM private key (str or bytes, PKCS#1 or
    PKCS#8). ``ImproperlyConfigured`` naming ``setting`` when it is not a usable RSA key."""
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    if not isinstance(value, bytes):
        raise ImproperlyConfigured(f"{setting} must be a PEM private key (str or bytes), "
                                   f"not {type(value).__name__}")
    return _load_key(value.strip(), setting)


@functools.lru_cache(maxsize=16)
def _load_key(value: bytes, setting: str) -> bytes:
    try:
        key = serialization.load_pem_private_key(value, password=None)
    except TypeError:
        raise ImproperlyConfigured(
            f"{setting} is encrypted: give the key without a passphrase") from None
    except (ValueError, IndexError) as exc:
        raise ImproperlyConfigured(
            f"{setting} is not a PEM private key ({exc.__class__.__name__}: {exc}); expected "
            "-----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured(f"{setting} is not an RSA key; DKIM signing here is RSA")
    if key.key_size < MIN_KEY_BITS:
        raise ImproperlyConfigured(
            f"{setting} is a {key.key_size}-bit RSA key; verifiers refuse keys under "
            f"{MIN_KEY_BITS} bits (use 2048)")
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    try:
        dkimpy.crypto.parse_pem_private_key(pem)
    except dkimpy.crypto.UnparsableKeyError as exc:  # pragma: no cover - cryptography's PEM
        raise ImproperlyConfigured(f"{setting}: dkimpy cannot read the key: {exc}") from None
    return pem


def txt_record(private_key: str | bytes) -> str:
    """The DNS TXT value to publish at ``<selector>._domainkey.<domain>`` for this key."""
    pem = load_key(private_key, "private key")
    public = serialization.load_pem_private_key(pem, password=None).public_key()
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def _text(value: Any, setting: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured(f"{setting} must be a non-empty string")
    return value


def _domain(value: Any, setting: str) -> bytes:
    domain = _text(value, setting).strip().rstrip(".").lower()
    try:
        domain = domain.encode("idna").decode("ascii")
        _validate_domain(domain)
    except (UnicodeError, ValidationError):
        raise ImproperlyConfigured(f"{setting} {value!r} is not a domain name") from None
    if "." not in domain:
        raise ImproperlyConfigured(f"{setting} {value!r} is not a full domain name")
    return domain.encode("ascii")


def _selector(value: Any, setting: str) -> bytes:
    selector = _text(value, setting).strip()
    if not _SELECTOR.match(selector):
        raise ImproperlyConfigured(
            f"{setting} {value!r} is not a DKIM selector (DNS labels, e.g. 'ses' or 's2024')")
    return selector.encode("ascii")


def _headers(value: Any, setting: str) -> tuple[bytes, ...]:
    if isinstance(value, str | bytes) or not value:
        raise ImproperlyConfigured(f"{setting} must be a list of header names")
    names = tuple(_text(name, setting).strip().lower() for name in value)
    for name in names:
        if not _FIELD_NAME.match(name):
            raise ImproperlyConfigured(f"{setting}: {name!r} is not a header name")
        if name.encode() in dkimpy.DKIM.SHOULD_NOT:
            raise ImproperlyConfigured(f"{setting}: {name!r} must not be signed (RFC 6376)")
        if name in SES_REWRITES:
            raise ImproperlyConfigured(f"{setting}: {name!r} must not be signed: SES sets or "
                                       "rewrites it, which would break the signature")
    if "from" not in names:
        raise ImproperlyConfigured(f"{setting} must include From (RFC 6376 requires it)")
    return tuple(dict.fromkeys(name.encode("ascii") for name in names))


def _freeze(value: Any) -> Any:
    """A hashable copy of a settings value (dicts and lists included), as a cache key."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(_freeze(v) for v in value)
    return value


_built: dict[Any, Signers] = {}


def signers() -> Signers:
    """The signers for the current settings (built and checked once per distinct settings
    value, so keys are parsed once per process); ``ImproperlyConfigured`` naming the problem."""
    current = (conf.DKIM_DOMAIN, conf.DKIM_PRIVATE_KEY, conf.DKIM_SELECTOR,
               conf.DKIM_HEADERS, conf.SEACUCUMBER_DKIM_KEYS)
    frozen = _freeze(current)
    try:
        found = _built.get(frozen)
    except TypeError:  # an unhashable value inside the settings: build, do not cache
        return _build(*current)
    if found is None:
        found = _build(*current)
        if len(_built) >= 8:
            _built.clear()
        _built[frozen] = found
    return found


def _build(domain: Any, key: Any, selector: Any, headers: Any, per_domain: Any) -> Signers:
    if bool(domain) != bool(key):
        missing = "DKIM_PRIVATE_KEY" if domain else "DKIM_DOMAIN"
        given = "DKIM_DOMAIN" if domain else "DKIM_PRIVATE_KEY"
        raise ImproperlyConfigured(f"{given} is set but {missing} is not: DKIM signing needs "
                                   "both")
    default_headers = _headers(headers, "DKIM_HEADERS")
    default = None
    if domain:
        default = Signer(_domain(domain, "DKIM_DOMAIN"), _selector(selector, "DKIM_SELECTOR"),
                         load_key(key, "DKIM_PRIVATE_KEY"), default_headers)
    by_domain: dict[str, Signer] = {}
    if per_domain:
        if not isinstance(per_domain, dict):
            raise ImproperlyConfigured("SEACUCUMBER_DKIM_KEYS must be a dict: "
                                       "{domain: {'private_key': ..., 'selector': ...}}")
        for name, entry in per_domain.items():
            where = f"SEACUCUMBER_DKIM_KEYS[{name!r}]"
            if not isinstance(entry, dict) or "private_key" not in entry:
                raise ImproperlyConfigured(f"{where} must be a dict with 'private_key'")
            unknown = set(entry) - {"private_key", "selector", "headers"}
            if unknown:
                raise ImproperlyConfigured(f"{where} has unknown keys: {sorted(unknown)}")
            signer = Signer(
                _domain(name, f"{where} domain"),
                _selector(entry.get("selector", selector), f"{where}['selector']"),
                load_key(entry["private_key"], f"{where}['private_key']"),
                _headers(entry["headers"], f"{where}['headers']") if "headers" in entry
                else default_headers,
            )
            by_domain[signer.domain.decode("ascii")] = signer
    return Signers(by_domain, default)


def check_settings() -> None:
    """Build the signers once, so bad DKIM settings fail at start-up with
    ``ImproperlyConfigured`` naming the problem."""
    signers()


def from_domain(raw: bytes) -> str | None:
    """The domain of the From address in ``raw``'s headers, lower case, or ``None``."""
    headers = BytesHeaderParser().parsebytes(raw)
    address = parseaddr(str(headers.get("From", "")))[1]
    domain = address.rpartition("@")[2].strip().rstrip(".").lower()
    if not domain:
        return None
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def sign(raw: bytes) -> bytes:
    """``raw`` signed for its From domain, or unchanged when no DKIM key applies.
    ``SigningError`` when it cannot be signed."""
    try:
        found = signers()
    except ImproperlyConfigured as exc:
        raise SigningError(f"DKIM settings are wrong: {exc}") from None
    if not found.by_domain:
        signer = found.default
    else:
        domain = from_domain(raw)
        signer = found.for_domain(domain) if domain else found.default
    return raw if signer is None else signer.sign(raw)
