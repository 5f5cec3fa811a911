"""The account-level suppression list in the emulator: what ``manage.py ses_suppression sync``
calls (SES v2, REST + JSON under ``/v2/email/suppression/addresses``).

``ListSuppressedDestinations`` (GET; ``Reason`` filters, ``PageSize``, ``NextToken``; pages
capped at the account's ``suppression_page_size``, so tests see pagination with a few
entries), ``PutSuppressedDestination`` (PUT; adds or updates), ``GetSuppressedDestination``
and ``DeleteSuppressedDestination`` (GET / DELETE ``.../addresses/<address>``). As SES does,
addresses are kept lower case, a reason must be ``BOUNCE`` or ``COMPLAINT``, and
``LastUpdateTime`` is epoch seconds in the JSON.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from . import protocol

PATH = "/v2/email/suppression/addresses"
REASONS = ("BOUNCE", "COMPLAINT")


@dataclass
class Entry:
    address: str
    reason: str
    updated: float

    def summary(self) -> dict[str, object]:
        return {"EmailAddress": self.address, "Reason": self.reason,
                "LastUpdateTime": self.updated}


class SuppressionList:
    """The account's list, shared by the HTTP threads; kept across ``reset`` (like
    identities): tests seed it through the API."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, Entry] = {}
        self.list_calls = 0
        self.put_calls = 0

    def call(self, method: str, path: str, query: str, body: bytes,
             page_cap: int) -> protocol.Response:
        address = unquote(path[len(PATH):].strip("/")).lower()
        if method == "GET" and not address:
            return self._list(parse_qs(query), page_cap)
        if method == "PUT" and not address:
            return self._put(body)
        with self.lock:
            found = self.entries.get(address)
            if found is None:
                return protocol.v2_error(404, "NotFoundException",
                                         f"Email address {address} does not exist on your "
                                         "suppression list.")
            if method == "DELETE":
                del self.entries[address]
                return protocol.v2_result({})
        if method == "GET":
            return protocol.v2_result({"SuppressedDestination": {
                **found.summary(), "Attributes": {}}})
        return protocol.v2_error(405, "BadRequestException", f"{method} {path}")

    def _list(self, params: dict[str, list[str]], page_cap: int) -> protocol.Response:
        reasons = {r.upper() for r in params.get("Reason", [])}
        try:
            start = int(params.get("NextToken", ["0"])[0])
            size = int(params.get("PageSize", ["1000"])[0])
        except ValueError:
            return protocol.v2_error(400, "BadRequestException", "bad NextToken or PageSize")
        size = max(1, min(size, page_cap, 1000))
        with self.lock:
            self.list_calls += 1
            chosen = [e for _, e in sorted(self.entries.items())
                      if not reasons or e.reason in reasons]
        answer: dict[str, object] = {
            "SuppressedDestinationSummaries": [e.summary() for e in chosen[start:start + size]]}
        if start + size < len(chosen):
            answer["NextToken"] = str(start + size)
        return protocol.v2_result(answer)

    def _put(self, body: bytes) -> protocol.Response:
        try:
            data = json.loads(body or b"{}")
            address, reason = str(data["EmailAddress"]).strip().lower(), str(data["Reason"])
        except (ValueError, KeyError, TypeError):
            return protocol.v2_error(400, "BadRequestException",
                                     "EmailAddress and Reason are required")
        if reason not in REASONS or "@" not in address:
            return protocol.v2_error(400, "BadRequestException",
                                     f"Reason must be one of {REASONS}; an address is needed")
        with self.lock:
            self.put_calls += 1
            self.entries[address] = Entry(address, reason, time.time())
        return protocol.v2_result({})
