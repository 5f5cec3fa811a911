"""SES identities (addresses and domains): verify, list, delete, with SES v1 or v2.

The logic behind ``manage.py ses_address``. Clients come from ``clients.client``, so the
credentials, region and endpoint are the backend's. SES errors come out as
``OperatorError``; input that is neither an address nor a domain as
``InvalidIdentity``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from django.core.exceptions import ValidationError
from django.core.validators import DomainNameValidator, validate_email

from ..conf import conf
from ..exceptions import InvalidIdentity, OperatorError
from .clients import client as ses_client
from .errors import error_code, ses_call

ADDRESS = "address"
DOMAIN = "domain"
_V1_ATTRIBUTES_BATCH = 100  # GetIdentityVerificationAttributes takes at most 100 identities
_validate_domain = DomainNameValidator(accept_idna=True)


@dataclass(frozen=True)
class DnsRecord:
    """A DNS record the operator publishes for SES to verify a domain."""

    name: str
    type: str
    value: str
    purpose: str


@dataclass(frozen=True)
class Identity:
    """An SES identity and its verification status (lower case: success, pending, failed,
    temporary_failure, not_started)."""

    name: str
    kind: str
    status: str


@dataclass(frozen=True)
class Verification:
    """What ``verify`` did: the identity, its status if SES gave one, records to publish."""

    name: str
    kind: str
    status: str | None = None
    records: list[DnsRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_identity(text: str) -> tuple[str, str]:
    """``(kind, identity)`` for ``text``: a bare email address, or a domain (IDN domains in
    punycode, lower case). ``InvalidIdentity`` for anything else."""
    text = text.strip()
    if "@" in text:
        try:
            validate_email(text)
        except ValidationError:
            raise InvalidIdentity(
                f"{text!r} is not an email address (give a bare address: name@example.com)"
            ) from None
        local, _, domain = text.rpartition("@")
        return ADDRESS, f"{local}@{_ascii_domain(domain)}"
    domain = text.rstrip(".")
    try:
        _validate_domain(domain)
    except ValidationError:
        raise InvalidIdentity(
            f"{text!r} is neither an email address nor a domain name (example.com)"
        ) from None
    if "." not in domain:
        raise InvalidIdentity(f"{text!r} is not a full domain name (example.com)")
    return DOMAIN, _ascii_domain(domain)


def _ascii_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise InvalidIdentity(f"{domain!r} is not a valid domain name") from None


def _status(value: str | None) -> str:
    """SES's status in one spelling: v1 ``TemporaryFailure`` and v2 ``TEMPORARY_FAILURE``
    both become ``temporary_failure``."""
    if not value:
        return "unknown"
    if "_" in value or value.isupper():
        return value.lower()
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in value).lstrip("_")


def _dkim_records(domain: str, tokens: list[str]) -> list[DnsRecord]:
    return [
        DnsRecord(f"{token}._domainkey.{domain}", "CNAME", f"{token}.dkim.amazonses.com",
                  "Easy DKIM")
        for token in tokens
    ]


def verify(text: str) -> Verification:
    """Ask SES to verify an address (SES mails it a link) or a domain (returns the DNS
    records to publish: the ``_amazonses`` TXT record with v1, Easy DKIM CNAMEs)."""
    kind, name = parse_identity(text)
    with ses_call():
        if conf.USE_SES_V2:
            return _verify_v2(kind, name)
        client = ses_client("ses")
        if kind == ADDRESS:
            client.verify_email_identity(EmailAddress=name)
            return Verification(name, kind, "pending")
        token = client.verify_domain_identity(Domain=name)["VerificationToken"]
        tokens = client.verify_domain_dkim(Domain=name).get("DkimTokens", [])
        records = [DnsRecord(f"_amazonses.{name}", "TXT", token, "domain verification")]
        return Verification(name, kind, "pending", records + _dkim_records(name, tokens))


def _verify_v2(kind: str, name: str) -> Verification:
    client = ses_client("sesv2")
    try:
        answer = client.create_email_identity(EmailIdentity=name)
    except ClientError as exc:
        if error_code(exc) != "AlreadyExistsException":
            raise
        answer = client.get_email_identity(EmailIdentity=name)
    status = answer.get("VerificationStatus")
    if status is None:
        status = "SUCCESS" if answer.get("VerifiedForSendingStatus") else "PENDING"
    tokens = answer.get("DkimAttributes", {}).get("Tokens", []) if kind == DOMAIN else []
    return Verification(name, kind, _status(status), _dkim_records(name, tokens))


def list_identities() -> list[Identity]:
    """Every identity of the account in this region, with its verification status."""
    with ses_call():
        if conf.USE_SES_V2:
            return _list_v2()
        client = ses_client("ses")
        names: list[str] = []
        for page in client.get_paginator("list_identities").paginate():
            names.extend(page.get("Identities", []))
        statuses: dict[str, str] = {}
        for start in range(0, len(names), _V1_ATTRIBUTES_BATCH):
            batch = names[start : start + _V1_ATTRIBUTES_BATCH]
            answer = client.get_identity_verification_attributes(Identities=batch)
            for name, attributes in answer.get("VerificationAttributes", {}).items():
                statuses[name] = _status(attributes.get("VerificationStatus"))
    return sorted(
        (Identity(n, ADDRESS if "@" in n else DOMAIN, statuses.get(n, "unknown")) for n in names),
        key=_sort_key,
    )


def _list_v2() -> list[Identity]:
    client = ses_client("sesv2")
    found: list[Identity] = []
    kwargs: dict[str, Any] = {"PageSize": 1000}
    while True:
        page = client.list_email_identities(**kwargs)
        for item in page.get("EmailIdentities", []):
            name = item["IdentityName"]
            found.append(Identity(name, ADDRESS if "@" in name else DOMAIN,
                                  _status(item.get("VerificationStatus"))))
        if not page.get("NextToken"):
            return sorted(found, key=_sort_key)
        kwargs["NextToken"] = page["NextToken"]


def _sort_key(identity: Identity) -> tuple[str, str]:
    return identity.kind, identity.name


def delete(text: str) -> str:
    """Delete an identity; returns its name. ``OperatorError`` if SES has no such identity
    (SES v1 would answer success for a name it does not know)."""
    _, name = parse_identity(text)
    with ses_call():
        if conf.USE_SES_V2:
            client = ses_client("sesv2")
            try:
                client.get_email_identity(EmailIdentity=name)
            except ClientError as exc:
                if error_code(exc) == "NotFoundException":
                    raise OperatorError(f"no SES identity {name!r} in this region") from None
                raise
            client.delete_email_identity(EmailIdentity=name)
            return name
        client = ses_client("ses")
        known = client.get_identity_verification_attributes(Identities=[name])
        if name not in known.get("VerificationAttributes", {}):
            raise OperatorError(f"no SES identity {name!r} in this region")
        client.delete_identity(Identity=name)
        return name


def region() -> str:
    """The region the commands talk to."""
    return ses_client().meta.region_name
