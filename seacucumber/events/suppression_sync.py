"""SES's account-level suppression list and the local one, in step: ``manage.py
ses_suppression sync``.

SES keeps its own list (v2 ``ListSuppressedDestinations``): addresses it will not deliver to
however our list looks, filled by its own bounce and complaint handling. Importing it spares
the worker a send SES would drop; exporting our additions (``PutSuppressedDestination``)
makes SES drop them too, for any other sender on the account. SES knows two reasons only,
``BOUNCE`` and ``COMPLAINT``: a local ``complaint`` goes as ``COMPLAINT``, a ``bounce`` or a
``manual`` entry as ``BOUNCE``; an imported ``BOUNCE`` becomes ``bounce``, ``COMPLAINT``
``complaint``. Nothing is removed on either side: a removal is an operator's decision
(``ses_suppression remove``, SES's console).

SES calls go through ``ses_call`` (one-line ``OperatorError``, naming the IAM action when
permission is missing). The list call is paged with ``NextToken``; SES allows about one call
a second, so a ``TooManyRequestsException`` waits and asks again, a few times.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..ses.clients import client as ses_client
from ..ses.errors import error_code, ses_call
from . import suppression

#: local reason -> SES reason, and back
TO_SES = {"bounce": "BOUNCE", "complaint": "COMPLAINT", "manual": "BOUNCE"}
FROM_SES = {"BOUNCE": "bounce", "COMPLAINT": "complaint"}
_THROTTLED = frozenset({"TooManyRequestsException", "Throttling", "ThrottlingException"})
_ATTEMPTS = 5


@dataclass(frozen=True)
class Entry:
    address: str  #: lower case
    reason: str  #: SES's: BOUNCE or COMPLAINT


@dataclass
class Plan:
    """What a sync does: addresses to add locally (from SES) and to put on SES's list."""

    to_import: list[Entry] = field(default_factory=list)
    to_export: list[Entry] = field(default_factory=list)
    ses_count: int = 0  #: entries on SES's list
    local_count: int = 0  #: entries on the local list


def _patiently(call: Callable[[], Any], sleep: Callable[[float], None] = time.sleep) -> Any:
    """``call()``, asked again after a pause when SES says too many requests."""
    for attempt in range(_ATTEMPTS):
        try:
            return call()
        except ClientError as exc:
            if error_code(exc) not in _THROTTLED or attempt == _ATTEMPTS - 1:
                raise
            sleep(1.0 + attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def ses_entries() -> Iterator[Entry]:
    """Every entry of SES's account-level list, page by page."""
    client = ses_client("sesv2")
    token: str | None = None
    while True:
        arguments: dict[str, Any] = {"PageSize": 1000}
        if token:
            arguments["NextToken"] = token
        with ses_call():
            page = _patiently(functools.partial(client.list_suppressed_destinations,
                                                **arguments))
        for item in page.get("SuppressedDestinationSummaries", []):
            yield Entry(suppression.normalize(item["EmailAddress"]), str(item["Reason"]))
        token = page.get("NextToken")
        if not token:
            return


def plan(do_import: bool = True, do_export: bool = True) -> Plan:
    """Compare both lists (reads SES's whole list and ours; changes nothing)."""
    from ..models import SuppressedAddress

    remote = {e.address: e for e in ses_entries()}
    local = dict(SuppressedAddress.objects.values_list("address", "reason"))
    found = Plan(ses_count=len(remote), local_count=len(local))
    if do_import:
        found.to_import = [e for a, e in sorted(remote.items()) if a not in local]
    if do_export:
        found.to_export = [Entry(a, TO_SES.get(r, "BOUNCE")) for a, r in sorted(local.items())
                           if a not in remote and "@" in a]
    return found


def apply(found: Plan) -> tuple[int, int]:
    """Carry out ``found``: (addresses added locally, addresses put on SES's list)."""
    imported = 0
    for local_reason in sorted(set(FROM_SES.values())):
        addresses = [e.address for e in found.to_import
                     if FROM_SES.get(e.reason, "bounce") == local_reason]
        imported += suppression.add(addresses, local_reason,
                                    "imported from SES's account-level suppression list")
    client = ses_client("sesv2")
    for entry in found.to_export:
        with ses_call():
            _patiently(functools.partial(client.put_suppressed_destination,
                                         EmailAddress=entry.address, Reason=entry.reason))
    return imported, len(found.to_export)
