"""Rate buckets: one shared send rate and quota per SES account and region.

SES gives each account a quota and a send rate per region, so a mailer that sends with
another ``region``, ``endpoint_url`` or ``profile`` (a task payload's client options) sends
against another quota. Each such (account, region) is a *bucket*: its own rate keys in the
shared state, its own quota learned from its own ``GetSendQuota``/``GetAccount``, its own
throttling slow-down and daily-quota hold (``quota``, ``ratelimit``, ``attempt``).

How a bucket is told apart without an AWS call per send: from the client a send uses, as
the worker resolves it once per process (``Bucket.of``): the effective region (the boto3
client's own ``region_name``), the SES endpoint and the credentials profile. The settings'
own client is the ``default`` bucket, whose keys keep the names they had before buckets
existed (``store.bucket_key``), so a rolling deploy's old and new workers share it. STS
``GetCallerIdentity`` (the account number) was not chosen: one more IAM permission and AWS
call per process and profile, for the rare case it would change the answer (two profiles of
one account in one region, which share a quota SES-side but get a bucket each here: give
such mailers the same profile).

Each non-default bucket a process sends through is registered in a shared hash (``known``),
so ``ses_usage``, the dashboard and the metrics show a row per bucket.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..conf import conf
from ..ses.clients import client as ses_client
from ..ses.clients import endpoint_url
from . import store

logger = logging.getLogger(__name__)

DEFAULT = store.DEFAULT_BUCKET  #: the bucket of the settings' own SES client

_resolved: dict[tuple[str | None, str | None, str | None], Bucket] = {}
_registered: set[tuple[str, str]] = set()  # (Redis URL, bucket id) this process registered


@dataclass(frozen=True)
class Bucket:
    """One SES account and region: ``id`` names its keys; ``region``, ``endpoint_url`` and
    ``profile`` are the client options that reach it (None: the settings' own)."""

    id: str
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None

    @property
    def is_default(self) -> bool:
        return self.id == DEFAULT

    def client(self, service: str | None = None) -> Any:
        """The SES client of this bucket (``ses.clients.client``)."""
        return ses_client(service, region=self.region, endpoint=self.endpoint_url,
                          profile=self.profile)

    def options(self) -> dict[str, str]:
        """The client options that reach it, for display (the unset ones left out)."""
        found = {"region": self.region, "endpoint_url": self.endpoint_url,
                 "profile": self.profile}
        return {name: value for name, value in found.items() if value}

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Bucket:
        """The bucket of a send with these payload ``options`` (``region``,
        ``endpoint_url``, ``profile``), resolved once per process and options."""
        wanted = (options.get("region") or None, options.get("endpoint_url") or None,
                  options.get("profile") or None)
        found = _resolved.get(wanted)
        if found is None:
            found = _resolved[wanted] = _resolve(*wanted)
        return found


def default() -> Bucket:
    """The settings' own bucket."""
    return Bucket(DEFAULT)


def _identity(region: str | None, endpoint: str | None, profile: str | None
              ) -> tuple[str, str, str]:
    """What tells buckets apart: the effective region, endpoint and profile."""
    made = ses_client(region=region, endpoint=endpoint, profile=profile)
    return (str(made.meta.region_name or ""), (endpoint or endpoint_url() or "").rstrip("/"),
            str(profile or conf.AWS_SESSION_PROFILE or ""))


def _resolve(region: str | None, endpoint: str | None, profile: str | None) -> Bucket:
    if region is endpoint is profile is None:
        return default()
    found = _identity(region, endpoint, profile)
    if found == _identity(None, None, None):
        return default()
    account = "" if found[1:] == _identity(None, None, None)[1:] else \
        "." + hashlib.sha256("|".join(found[1:]).encode()).hexdigest()[:8]
    return Bucket(f"{found[0] or 'region'}{account}", region, endpoint, profile)


def _known_key() -> str:
    return store.key("buckets")


def register(bucket: Bucket) -> None:
    """Note ``bucket`` in the shared registry (once per process and Redis), so reports list
    it. A Redis error is left to the caller (the send's own round trip reports it)."""
    if bucket.is_default:
        return
    url = store.redis_url() or ""
    if (url, bucket.id) in _registered:
        return
    store.redis_client().hset(_known_key(), bucket.id, json.dumps(bucket.options()))
    _registered.add((url, bucket.id))


def known() -> list[Bucket]:
    """Every bucket workers have sent through, the default first."""
    found = [default()]
    raw = store.redis_client().hgetall(_known_key())
    for name, options in sorted(raw.items()):
        given = json.loads(options)
        found.append(Bucket(name.decode() if isinstance(name, bytes) else name,
                            given.get("region"), given.get("endpoint_url"), given.get("profile")))
    return found


def forget() -> None:
    """Drop this process's copies (tests, and after changing settings)."""
    _resolved.clear()
    _registered.clear()
