"""DKIM signing with dkimpy, in the worker, just before the SES call.

Signing is on when ``DKIM_DOMAIN`` and ``DKIM_PRIVATE_KEY`` are set (``d=`` that domain,
``s=`` ``DKIM_SELECTOR``, ``h=`` ``DKIM_HEADERS``), and/or per sender domain with
``SEACUCUMBER_DKIM_KEYS``: the keys of the From address's domain (or its closest listed parent
domain) sign, else the ``DKIM_DOMAIN`` key, else nothing. dkimpy is the reference Python DKIM
implementation (RFC 6376, also used by verifiers), so we do not hand-roll canonicalisation.

Keys are RSA (``rsa-sha256``) or Ed25519 (``ed25519-sha256``, RFC 8463; dkimpy signs it with
PyNaCl), the algorithm taken from the key. A domain in ``SEACUCUMBER_DKIM_KEYS`` may list
several keys (``[{...rsa...}, {...ed25519...}]``, each its own selector): each one adds a
DKIM-Signature header over the same message (a dual signature), so a verifier that knows only
RSA still finds one it can check.

Signed headers: ``DKIM_HEADERS`` as given, a name listed twice signed twice (the default lists
From twice: "oversigning", so a second From added on the way breaks the signature). A header
listed but absent is signed as absent (adding one later breaks the signature), except the
list headers ``List-Unsubscribe`` and ``List-Unsubscribe-Post``: signed whenever present,
whatever ``DKIM_HEADERS`` says (RFC 8058 section 4), never as absent (SES's own subscription
management adds them after we sign). The message reaches the signer 7-bit clean
(``payload.build_sends`` converts 8-bit text parts, RFC 6376 section 5.3).

Keys are read and checked once per process (cached by the setting's value, so
``override_settings`` works): ``cryptography`` loads any PEM form (PKCS#1 or PKCS#8, CRLF or
LF; an Ed25519 key also as the base64 seed ``dknewkey`` writes) and the key is handed to dkimpy
in the form it parses. ``check_settings`` runs at start-up (``SeaCucumberConfig.ready``) and
raises ``ImproperlyConfigured`` naming the problem, so a bad key stops the process instead of
failing every message. Canonicalisation is relaxed/relaxed: SES adds headers and rewrites
Message-ID and Date, which are not signed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from typing import Any

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import DomainNameValidator

from .conf import conf
from .exceptions import SigningError

#: Headers SES's manual-signing guide says not to sign: SES sets or rewrites them.
SES_REWRITES = frozenset({"message-id", "date", "return-path", "bounces-to"})
#: Signed whenever present, whatever DKIM_HEADERS says, never as absent (RFC 8058 section 4).
LIST_HEADERS = (b"list-unsubscribe", b"list-unsubscribe-post")
MIN_KEY_BITS = 1024  # dkimpy's verifiers refuse shorter keys; use 2048
RSA, ED25519 = b"rsa-sha256", b"ed25519-sha256"
_SELECTOR = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*$"
)
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 field name: printable ASCII, no colon
_LIST_HEADER = re.compile(rb"^(list-unsubscribe(?:-post)?)[ \t]*:", re.I | re.M)
_validate_domain = DomainNameValidator(accept_idna=False)


@dataclass(frozen=True)
class Key:
    """A private key as dkimpy takes it: PKCS#1 PEM for RSA, the base64 seed for Ed25519."""

    algorithm: bytes  #: ``RSA`` or ``ED25519``
    material: bytes


@dataclass(frozen=True)
class Signer:
    """One DKIM identity: domain, selector, key and headers (``h=`` names, lower case)."""

    domain: bytes
    selector: bytes
    key: Key
    headers: tuple[bytes, ...]

    def signature(self, raw: bytes) -> bytes:
        """The DKIM-Signature header (ending in CRLF) for ``raw``."""
        include = [h for h in self.headers if h not in LIST_HEADERS]
        include += list_headers_in(raw)
        try:
            return bytes(dkimpy.sign(
                raw, self.selector, self.domain, self.key.material,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=include,
                linesep=b"\r\n",
                signature_algorithm=self.key.algorithm,
            ))
        except dkimpy.DKIMException as exc:
            raise SigningError(f"DKIM signing for {self.domain.decode()} failed: {exc}") from None

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with a DKIM-Signature header in front."""
        return self.signature(raw) + raw


def list_headers_in(raw: bytes) -> list[bytes]:
    """The list headers (``LIST_HEADERS``) in ``raw``'s header block, each as often as it
    occurs (lower case)."""
    end = raw.find(b"\r\n\r\n")
    block = raw if end < 0 else raw[: end + 2]
    return [m.group(1).lower() for m in _LIST_HEADER.finditer(block)]


@dataclass(frozen=True)
class Signers:
    """The signers the settings give: per sender domain, and the default (each a tuple:
    several keys sign the same message, a dual signature)."""

    by_domain: dict[str, tuple[Signer, ...]]
    default: tuple[Signer, ...]

    def for_domain(self, domain: str) -> tuple[Signer, ...]:
        """The signers of ``domain`` or of its closest listed parent domain, else default."""
        labels = domain.lower().rstrip(".").split(".")
        for start in range(len(labels) - 1):
            found = self.by_domain.get(".".join(labels[start:]))
            if found is not None:
                return found
        return self.default


def load_key(value: Any, setting: str) -> Key:
    """The key dkimpy takes, from a PEM private key (str or bytes; RSA as PKCS#1 or PKCS#8,
    Ed25519 as PKCS#8) or an Ed25519 key's base64 seed. ``ImproperlyConfigured`` naming
    ``setting`` when it is not a usable key."""
    if isinstance(value, str):
        value = value.encode("ascii", "replace")
    if not isinstance(value, bytes):
        raise ImproperlyConfigured(f"{setting} must be a PEM private key (str or bytes), "
                                   f"not {type(value).__name__}")
    return _load_key(value.strip(), setting)


def _raw_ed25519(value: bytes) -> ed25519.Ed25519PrivateKey | None:
    """An Ed25519 key from its base64 32-byte seed (``dknewkey --ktype ed25519``), else None."""
    if value.startswith(b"-----"):
        return None
    try:
        seed = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed) if len(seed) == 32 else None


@functools.lru_cache(maxsize=16)
def _load_key(value: bytes, setting: str) -> Key:
    key: Any = _raw_ed25519(value)
    if key is None:
        try:
            key = serialization.load_pem_private_key(value, password=None)
        except TypeError:
            raise ImproperlyConfigured(
                f"{setting} is encrypted: give the key without a passphrase") from None
        except (ValueError, IndexError) as exc:
            raise ImproperlyConfigured(
                f"{setting} is not a PEM private key ({exc.__class__.__name__}: {exc}); "
                "expected -----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY----- (RSA "
                "or Ed25519)") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        return Key(ED25519, base64.b64encode(seed))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured(f"{setting} is neither an RSA nor an Ed25519 key; DKIM "
                                   "signs with rsa-sha256 or ed25519-sha256")
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
    return Key(RSA, pem)


def txt_record(private_key: str | bytes) -> str:
    """The DNS TXT value to publish at ``<selector>._domainkey.<domain>`` for this key
    (``k=rsa`` with the DER public key, or ``k=ed25519`` with the raw 32-byte one)."""
    key = load_key(private_key, "private key")
    if key.algorithm == ED25519:
        seed = base64.b64decode(key.material)
        public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode('ascii')}"
    rsa_public = serialization.load_pem_private_key(key.material, password=None).public_key()
    der = rsa_public.public_bytes(serialization.Encoding.DER,
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
    """The ``h=`` names in order, lower case; a name given twice is kept twice (oversigning)."""
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
    return tuple(name.encode("ascii") for name in names)


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
    value, so keys are parsed once per process; found once while the settings are held);
    ``ImproperlyConfigured`` naming the problem."""
    return conf.derived("dkim:signers", _signers)


def _signers() -> Signers:
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


_ENTRY_KEYS = frozenset({"private_key", "selector", "headers"})


def _domain_signers(name: Any, entries: Any, selector: Any,
                    default_headers: tuple[bytes, ...]) -> tuple[Signer, ...]:
    """The signers of one ``SEACUCUMBER_DKIM_KEYS`` entry: one key (a dict) or several (a
    list of dicts, each with its own selector)."""
    where = f"SEACUCUMBER_DKIM_KEYS[{name!r}]"
    domain = _domain(name, f"{where} domain")
    many = isinstance(entries, list | tuple)
    if many and not entries:
        raise ImproperlyConfigured(f"{where} is an empty list: give one key or more")
    made = []
    for n, entry in enumerate(entries if many else [entries]):
        place = f"{where}[{n}]" if many else where
        if not isinstance(entry, dict) or "private_key" not in entry:
            raise ImproperlyConfigured(f"{place} must be a dict with 'private_key'")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise ImproperlyConfigured(f"{place} has unknown keys: {sorted(unknown)}")
        made.append(Signer(
            domain,
            _selector(entry.get("selector", selector), f"{place}['selector']"),
            load_key(entry["private_key"], f"{place}['private_key']"),
            _headers(entry["headers"], f"{place}['headers']") if "headers" in entry
            else default_headers,
        ))
    selectors = [s.selector for s in made]
    if len(set(selectors)) != len(selectors):
        raise ImproperlyConfigured(f"{where}: each key needs a selector of its own (one DNS "
                                   f"record per key); got {[s.decode() for s in selectors]}")
    return tuple(made)


def _build(domain: Any, key: Any, selector: Any, headers: Any, per_domain: Any) -> Signers:
    if bool(domain) != bool(key):
        missing = "DKIM_PRIVATE_KEY" if domain else "DKIM_DOMAIN"
        given = "DKIM_DOMAIN" if domain else "DKIM_PRIVATE_KEY"
        raise ImproperlyConfigured(f"{given} is set but {missing} is not: DKIM signing needs "
                                   "both")
    default_headers = _headers(headers, "DKIM_HEADERS")
    default: tuple[Signer, ...] = ()
    if domain:
        default = (Signer(_domain(domain, "DKIM_DOMAIN"), _selector(selector, "DKIM_SELECTOR"),
                          load_key(key, "DKIM_PRIVATE_KEY"), default_headers),)
    by_domain: dict[str, tuple[Signer, ...]] = {}
    if per_domain:
        if not isinstance(per_domain, dict):
            raise ImproperlyConfigured("SEACUCUMBER_DKIM_KEYS must be a dict: "
                                       "{domain: {'private_key': ..., 'selector': ...}} (or a "
                                       "list of such dicts per domain, for several keys)")
        for name, entries in per_domain.items():
            found = _domain_signers(name, entries, selector, default_headers)
            by_domain[found[0].domain.decode("ascii")] = found
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
    """``raw`` signed for its From domain (one DKIM-Signature per key of that domain), or
    unchanged when no DKIM key applies. ``SigningError`` when it cannot be signed."""
    try:
        found = signers()
    except ImproperlyConfigured as exc:
        raise SigningError(f"DKIM settings are wrong: {exc}") from None
    if not found.by_domain:
        chosen = found.default
    else:
        domain = from_domain(raw)
        chosen = found.for_domain(domain) if domain else found.default
    if not chosen:
        return raw
    # each signature is over the message alone (DKIM-Signature is never signed), so the
    # order of the headers does not matter to verifiers; the first listed key comes first
    return b"".join(signer.signature(raw) for signer in chosen) + raw
