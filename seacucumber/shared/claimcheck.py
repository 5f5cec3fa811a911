"""Claim check: a large raw message waits in a store, not in the broker.

Why: a task carries its message as base64 (and SQS base64-encodes the task once more), so a
10 MB message is about 13.4 MB in a Redis queue, a second copy in the outbox, and does not
fit SQS's 256 KiB at all. A send whose raw message is over ``SEACUCUMBER_CLAIM_CHECK_THRESHOLD``
is stored once, before it is queued (``check_in``, at ``send_messages``), in S3 or in the
shared-state Redis with a TTL; the task (and the outbox record) carries a small version-3
payload with a claim: the store, the key, the sha256 and the size. The worker fetches it
after the send log and the shared rate let it go on (``fetch``: a re-queue or a send made
before never reads it), checks its sha256 and size, and deletes it once the send is settled,
sent or failed for good (``release``), never on a retry.

A store that fails at ``send_messages`` raises ``ClaimCheckError`` (an ``EnqueueError``):
nothing of the call is queued. A stored payload that is gone or differs fails its send for
good (``ClaimCheckFailed``), as does a claim whose key is not its send's own (``key_for`` the
send's id: a task cannot fetch another send's message) and one in a store the worker has
not got; a store that is down is retried like the shared-state Redis.

One stored object per send: a message of more than 50 recipients (several sends) is stored
once per send, so each send's settling deletes only its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import redis
from botocore.exceptions import BotoCoreError, ClientError

from ..conf import conf
from ..exceptions import ClaimCheckError, ClaimCheckFailed, MalformedPayload
from ..payload import OutboundSend, header_block_problem
from ..ses import clients as ses_clients
from ..ses.errors import error_info
from . import store

logger = logging.getLogger(__name__)

#: Errors of a store that is down (not of a payload that is gone): retried.
STORE_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, BotoCoreError, ClientError)

#: S3 error codes that mean the object is not there.
_GONE = frozenset({"NoSuchKey", "NoSuchBucket", "404"})


class Store(Protocol):
    """Where claim-checked payloads wait: Redis or S3."""

    name: str

    def put_many(self, items: Sequence[tuple[str, bytes]], timeout: float) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...


class RedisStore:
    """The shared-state Redis: all of a ``send_messages`` call's payloads in one pipeline,
    each with a TTL (``ttl()``) so a payload whose send never settles does not stay."""

    name = "redis"

    def put_many(self, items: Sequence[tuple[str, bytes]], timeout: float) -> None:
        pipe = store.redis_client(timeout).pipeline(transaction=False)
        for key, data in items:
            pipe.set(key, data, ex=max(1, int(ttl())))
        pipe.execute()

    def get(self, key: str) -> bytes | None:
        try:
            found: Any = store.redis_client().get(key)
        except redis.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):  # not a stored message: no retry mends it
                raise ClaimCheckFailed("ClaimCheckCorrupt", f"{key} in the claim check's "
                                       f"redis store is not a stored message: {exc}") from None
            raise
        return found

    def delete(self, key: str) -> None:
        store.redis_client().delete(key)


class S3Store:
    """An S3 bucket (``SEACUCUMBER_CLAIM_CHECK_BUCKET``), through the process's S3 client;
    one PUT per payload (S3 has no batch upload)."""

    name = "s3"

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put_many(self, items: Sequence[tuple[str, bytes]], timeout: float) -> None:
        client = ses_clients.s3_client()
        for key, data in items:
            client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str) -> bytes | None:
        try:
            answer = ses_clients.s3_client().get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_info(exc).code in _GONE:
                return None
            raise
        data: bytes = answer["Body"].read()
        return data

    def delete(self, key: str) -> None:
        ses_clients.s3_client().delete_object(Bucket=self.bucket, Key=key)


def store_name() -> str | None:
    """The store in force (``SEACUCUMBER_CLAIM_CHECK_STORE``, or the default it describes);
    None when the claim check is off."""
    setting = conf.SEACUCUMBER_CLAIM_CHECK_STORE
    if setting is None:
        if conf.SEACUCUMBER_CLAIM_CHECK_BUCKET:
            return "s3"
        return "redis" if store.redis_url() is not None else None
    if setting in ("off", False):
        return None
    if setting not in ("redis", "s3"):
        raise ClaimCheckError(f"SEACUCUMBER_CLAIM_CHECK_STORE={setting!r}: give 'redis', "
                              "'s3' or 'off'")
    return str(setting)


def get_store(name: str) -> Store:
    """The store called ``name`` ("redis" or "s3") with the current settings;
    ``ClaimCheckError`` when the settings it needs are missing."""
    if name == "s3":
        bucket = conf.SEACUCUMBER_CLAIM_CHECK_BUCKET
        if not bucket:
            raise ClaimCheckError("the claim check's S3 store needs "
                                  "SEACUCUMBER_CLAIM_CHECK_BUCKET")
        return S3Store(str(bucket))
    if store.redis_url() is None:
        raise ClaimCheckError("the claim check's Redis store needs a shared-state Redis: set "
                              "SEACUCUMBER_REDIS_URL, or SEACUCUMBER_CLAIM_CHECK_STORE='s3'")
    return RedisStore()


def ttl() -> float:
    """Seconds a payload is kept in Redis (``SEACUCUMBER_CLAIM_CHECK_TTL``): by default past
    the longest a send may be retried (its lifetime and a held quota's window)."""
    given = conf.SEACUCUMBER_CLAIM_CHECK_TTL
    if given is not None:
        return float(given)
    return float(conf.SEACUCUMBER_MESSAGE_LIFETIME) + 25 * 3600.0


def key_for(name: str, message_id: str) -> str:
    """The key a send's payload is stored under in store ``name``."""
    if name == "s3":
        return f"{conf.SEACUCUMBER_REDIS_PREFIX}/claim/{message_id}"
    return store.key("claim", message_id)


def check_in(checked: list[list[OutboundSend]], timeout: float) -> list[list[OutboundSend]]:
    """``checked`` (sends, grouped by message) with every send over the threshold stored
    and carrying its claim; the rest as they were. All stored at once (Redis: one
    pipeline); ``ClaimCheckError`` when the store fails, before anything is queued."""
    limit = int(conf.SEACUCUMBER_CLAIM_CHECK_THRESHOLD)
    if not any(len(s.raw) > limit for sends in checked for s in sends):
        return checked
    name = store_name()
    if name is None:
        return checked
    target = get_store(name)
    digests: dict[int, str] = {}  # a message's sends share one bytes object: hash it once
    items: list[tuple[str, bytes]] = []

    def claimed(outbound: OutboundSend) -> OutboundSend:
        if len(outbound.raw) <= limit:
            return outbound
        digest = digests.get(id(outbound.raw))
        if digest is None:
            digest = digests[id(outbound.raw)] = hashlib.sha256(outbound.raw).hexdigest()
        key = key_for(name, outbound.message_id)
        items.append((key, outbound.raw))
        return dataclasses.replace(outbound, claim={
            "store": name, "key": key, "sha256": digest, "size": len(outbound.raw)})

    result = [[claimed(outbound) for outbound in sends] for sends in checked]
    try:
        target.put_many(items, timeout)
    except STORE_ERRORS as exc:
        detail = error_info(exc).message if isinstance(exc, ClientError) else str(exc)
        raise ClaimCheckError(f"could not store {len(items)} large message(s) in the claim "
                              f"check's {name} store: {detail}") from exc
    return result


def fetch(outbound: OutboundSend) -> OutboundSend:
    """``outbound`` with its raw message back from the store, checked against the claim's
    size and sha256. ``ClaimCheckFailed`` (permanent) when the claim is not this send's own
    key (``key_for`` its id: a task cannot fetch another send's message), when this worker
    has no such store (``ClaimCheckNoStore``), or when the message is gone, of the wrong
    kind or differs; a store that is down raises one of ``STORE_ERRORS`` (retry)."""
    claim = outbound.claim
    if claim is None:
        return outbound
    if claim["key"] != key_for(claim["store"], outbound.message_id):
        raise ClaimCheckFailed("ClaimCheckCorrupt",
                               f"the claim's key {claim['key']!r} is not send "
                               f"{outbound.message_id}'s own")
    try:
        target = get_store(claim["store"])
    except ClaimCheckError as exc:
        raise ClaimCheckFailed("ClaimCheckNoStore", f"this worker cannot read the claim "
                               f"check's {claim['store']} store: {exc}") from None
    data = target.get(claim["key"])
    if data is None:
        raise ClaimCheckFailed("ClaimCheckMissing",
                               f"the stored message {claim['key']} is not in the claim "
                               f"check's {claim['store']} store (deleted or expired)")
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != claim["size"] or digest != claim["sha256"]:
        raise ClaimCheckFailed("ClaimCheckCorrupt",
                               f"the stored message {claim['key']} is {len(data)} bytes with "
                               f"sha256 {digest}; the task expects {claim['size']} bytes with "
                               f"sha256 {claim['sha256']}")
    if (problem := header_block_problem(data)) is not None:
        raise ClaimCheckFailed("ClaimCheckCorrupt", f"the stored message {claim['key']}: "
                               f"{problem}")
    return dataclasses.replace(outbound, raw=data)


def keep(payload: Any) -> None:
    """The send of ``payload`` waits on (a lane the reputation guard holds, which never
    expires): start its stored message's Redis TTL again, so the message outlives the hold.
    An S3 copy lives by the bucket's lifecycle rule: give it longer than any hold."""
    claim = payload.get("claim") if isinstance(payload, dict) else None
    if not isinstance(claim, dict) or claim.get("store") != "redis":
        return
    if claim.get("key") != key_for("redis", str(payload.get("id"))):
        return
    try:
        store.redis_client().expire(claim["key"], max(1, int(ttl())))
    except redis.RedisError as exc:
        logger.warning("claim check: could not keep %s: %s", claim["key"], exc)


def release(payload: Any) -> None:
    """The send of ``payload`` (a task's JSON payload) is settled: delete its stored message,
    if it has one. Best effort: a payload left behind expires (Redis TTL; S3: the bucket's
    lifecycle rule)."""
    if not isinstance(payload, dict) or "claim" not in payload:
        return
    try:  # only a well-formed claim of one of our keys: a bad payload deletes nothing
        claim = OutboundSend.from_json(payload).claim
    except MalformedPayload:
        return
    if claim is None or claim["key"] != key_for(claim["store"], payload["id"]):
        return
    try:
        get_store(claim["store"]).delete(claim["key"])
    except (redis.RedisError, BotoCoreError, ClientError, ClaimCheckError) as exc:
        logger.warning("claim check: could not delete %s: %s", claim["key"], exc)
