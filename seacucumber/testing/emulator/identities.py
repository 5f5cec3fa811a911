"""Identities in the emulator: what ``manage.py ses_address verify|list|delete`` calls, in both
APIs, so the command works against the demo's and the compose stack's SES.

v1 (query protocol, XML): ``VerifyEmailIdentity``, ``VerifyDomainIdentity``,
``VerifyDomainDkim``, ``ListIdentities``, ``GetIdentityVerificationAttributes``,
``DeleteIdentity``. v2 (REST, JSON, under ``/v2/email/identities``): ``CreateEmailIdentity``,
``GetEmailIdentity``, ``ListEmailIdentities``, ``DeleteEmailIdentity``.

There is no mailbox to click a link in and no DNS to look up, so an identity is verified
(``Success``) as soon as it is created. As with SES, v1 verify calls are idempotent and v1
``DeleteIdentity`` answers success for a name it does not know; v2 answers
``AlreadyExistsException`` and ``NotFoundException``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

from . import protocol

V2_PATH = "/v2/email/identities"
V2_LIST_PATH = "/v2/email/list-identities"  #: ListEmailIdentities: a POST with a JSON body
V1_ACTIONS = ("VerifyEmailIdentity", "VerifyDomainIdentity", "VerifyDomainDkim",
              "ListIdentities", "GetIdentityVerificationAttributes", "DeleteIdentity")


def _token(name: str, salt: str) -> str:
    """A stable token per identity (the same answer to the same question, as SES gives)."""
    digest = hashlib.sha256(f"{salt}:{name}".encode()).digest()
    return base64.b32encode(digest).decode().lower().rstrip("=")[:32]


@dataclass
class Identity:
    name: str
    dkim_tokens: list[str] = field(default_factory=list)

    @property
    def is_domain(self) -> bool:
        return "@" not in self.name

    @property
    def verification_token(self) -> str:
        return base64.b64encode(hashlib.sha256(self.name.encode()).digest()).decode()

    def v2_type(self) -> str:
        return "DOMAIN" if self.is_domain else "EMAIL_ADDRESS"

    def v2_dkim(self) -> dict[str, object]:
        return {"SigningEnabled": self.is_domain, "Status": "SUCCESS" if self.is_domain
                else "NOT_STARTED", "Tokens": self.dkim_tokens,
                "SigningAttributesOrigin": "AWS_SES"}


class Identities:
    """The account's identities (one region), safe to use from the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, Identity] = {}

    def reset(self) -> None:
        with self._lock:
            self._known.clear()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._known)

    def add(self, name: str, dkim: bool = False) -> tuple[Identity, bool]:
        """The identity (created if new, with Easy DKIM tokens when asked) and whether it
        was new."""
        with self._lock:
            found = self._known.get(name)
            created = found is None
            if found is None:
                found = self._known[name] = Identity(name)
            if dkim and not found.dkim_tokens:
                found.dkim_tokens = [_token(name, str(n)) for n in range(3)]
            return found, created

    def get(self, name: str) -> Identity | None:
        with self._lock:
            return self._known.get(name)

    def delete(self, name: str) -> bool:
        with self._lock:
            return self._known.pop(name, None) is not None

    # --- v1 ------------------------------------------------------------------------------------
    def v1(self, action: str, params: dict[str, str]) -> protocol.Response:
        if action == "VerifyEmailIdentity":
            address = params.get("EmailAddress", "")
            if "@" not in address:
                return protocol.v1_error(400, "InvalidParameterValue",
                                         f"Invalid email address <{address}>.")
            self.add(address)
            return protocol.v1_result(action, "")
        if action in ("VerifyDomainIdentity", "VerifyDomainDkim"):
            domain = params.get("Domain", "")
            if not domain or "@" in domain:
                return protocol.v1_error(400, "InvalidParameterValue",
                                         f"Invalid domain name <{domain}>.")
            identity, _ = self.add(domain, dkim=action == "VerifyDomainDkim")
            if action == "VerifyDomainIdentity":
                return protocol.v1_result(action, f"<VerificationToken>"
                                          f"{identity.verification_token}</VerificationToken>")
            members = "".join(f"<member>{t}</member>" for t in identity.dkim_tokens)
            return protocol.v1_result(action, f"<DkimTokens>{members}</DkimTokens>")
        if action == "ListIdentities":
            wanted = params.get("IdentityType", "")
            names = [n for n in self.names()
                     if not wanted or (wanted == "Domain") == ("@" not in n)]
            members = "".join(f"<member>{escape(n)}</member>" for n in names)
            return protocol.v1_result(action, f"<Identities>{members}</Identities>")
        if action == "GetIdentityVerificationAttributes":
            asked = [v for k, v in params.items() if k.startswith("Identities.member.")]
            entries = []
            for name in asked:
                known = self.get(name)
                if known is None:
                    continue  # SES leaves out names it does not know
                token = (f"<VerificationToken>{known.verification_token}</VerificationToken>"
                         if known.is_domain else "")
                entries.append(f"<entry><key>{escape(name)}</key><value><VerificationStatus>"
                               f"Success</VerificationStatus>{token}</value></entry>")
            return protocol.v1_result(
                action, f"<VerificationAttributes>{''.join(entries)}</VerificationAttributes>")
        if action == "DeleteIdentity":
            self.delete(params.get("Identity", ""))
            return protocol.v1_result(action, "")
        raise ValueError(action)

    # --- v2 ------------------------------------------------------------------------------------
    def v2(self, method: str, path: str, query: str, body: bytes) -> protocol.Response:
        name = "" if path == V2_LIST_PATH else unquote(path[len(V2_PATH):].strip("/"))
        if path == V2_LIST_PATH or (method == "GET" and not name):  # older botocore: a GET
            params: dict[str, object] = {k: v[0] for k, v in parse_qs(query).items()}
            if body:
                try:
                    params.update(json.loads(body))
                except ValueError:
                    return protocol.v2_error(400, "BadRequestException", "body is not JSON")
            return self._v2_list(params)
        if method == "POST" and not name:
            try:
                name = str(json.loads(body or b"{}")["EmailIdentity"])
            except (ValueError, KeyError, TypeError):
                return protocol.v2_error(400, "BadRequestException",
                                         "EmailIdentity is required")
            identity, created = self.add(name, dkim="@" not in name)
            if not created:
                return protocol.v2_error(400, "AlreadyExistsException",
                                         f"Email identity {name} already exist.")
            return protocol.v2_result({"IdentityType": identity.v2_type(),
                                       "VerifiedForSendingStatus": True,
                                       "DkimAttributes": identity.v2_dkim()})
        found = self.get(name)
        if found is None:
            return protocol.v2_error(404, "NotFoundException",
                                     f"Email identity {name} does not exist.")
        if method == "GET":
            return protocol.v2_result({
                "IdentityType": found.v2_type(), "FeedbackForwardingStatus": True,
                "VerifiedForSendingStatus": True, "VerificationStatus": "SUCCESS",
                "DkimAttributes": found.v2_dkim(), "Policies": {}, "Tags": []})
        if method == "DELETE":
            self.delete(name)
            return protocol.v2_result({})
        return protocol.v2_error(405, "BadRequestException", f"{method} {path}")

    def _v2_list(self, params: dict[str, object]) -> protocol.Response:
        names = self.names()
        start = int(str(params.get("NextToken") or 0))
        size = max(1, min(1000, int(str(params.get("PageSize") or 1000))))
        page = names[start:start + size]
        answer: dict[str, object] = {"EmailIdentities": [
            {"IdentityType": "DOMAIN" if "@" not in n else "EMAIL_ADDRESS",
             "IdentityName": n, "SendingEnabled": True, "VerificationStatus": "SUCCESS"}
            for n in page]}
        if start + size < len(names):
            answer["NextToken"] = str(start + size)
        return protocol.v2_result(answer)
