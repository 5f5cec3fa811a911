"""Sign SNS messages as SNS does, with a key and self-signed certificate made here.

Used by the SES emulator (its event notifications) and by the webhook tests. The receiving
side pins the certificate with ``SEACUCUMBER_SNS_CERTIFICATES`` instead of fetching it.
"""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from ..events import sns

#: A SigningCertURL that passes the SNS host rule; pin the signer's PEM under it.
DEFAULT_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-emulator.pem"


def make_certificate(key: rsa.RSAPrivateKey, days: int = 30) -> bytes:
    """A self-signed PEM certificate for ``key``, valid from yesterday for ``days`` days."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Signer:
    """Signs SNS messages (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA)."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    pem: bytes = b""

    def __post_init__(self) -> None:
        self.pem = self.pem or make_certificate(self.key)

    def sign(self, message: dict[str, Any], version: str = "2",
             cert_url: str = DEFAULT_CERT_URL) -> dict[str, Any]:
        """A copy of ``message`` with SignatureVersion, SigningCertURL and Signature set."""
        message = {**message, "SignatureVersion": version, "SigningCertURL": cert_url}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1
        signature = self.key.sign(sns.string_to_sign(message), padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode("ascii")
        return message
