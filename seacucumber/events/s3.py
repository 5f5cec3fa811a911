"""Fetching a received mail that an SES receipt rule's S3 action stored.

The client is boto3's, made once per process (``seacucumber.clients``) with the SES
credentials (``AWS_SES_ACCESS_KEY_ID`` ..., else boto3's chain), the bucket's region
(``SEACUCUMBER_S3_REGION_NAME``, else ``AWS_SES_REGION_NAME``) and, for tests,
``SEACUCUMBER_S3_ENDPOINT_URL``. The object is streamed into the parser in chunks, never read
whole. boto3's own retries are off: the worker's task retries (``inbound_task``).

A receipt notification names its bucket and key, and the client reads with the server's own
credentials: only the buckets (and key prefixes) ``SEACUCUMBER_INBOUND_S3_BUCKETS`` names are
read (``refusal``), and never the claim-check bucket, where outbound mail waits.

What S3 did decides what comes of the mail: the object or bucket is not there
(``MailObjectGone``: recorded as gone, since no retry brings it back); anything else, S3
unreachable, a timeout, 5xx, throttling or a refusal (``MailStoreUnavailable``: retried; the
mail stays in the bucket). S3 answers AccessDenied, not NoSuchKey, for a missing key when the
caller lacks ``s3:ListBucket``: that too is retried, and logged for the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..conf import conf
from ..exceptions import (
    InboundTooLarge,
    InvalidNotification,
    MailObjectGone,
    MailStoreUnavailable,
)
from ..ses import clients as ses_clients
from ..ses.errors import error_info
from .inbound import CHUNK, InboundMessage, Limits, parse_stream

logger = logging.getLogger(__name__)

GONE_CODES = frozenset({"NoSuchKey", "NoSuchBucket"})


#: The process's shared S3 client (``ses.clients.s3_client``: the claim check uses it too).
client = ses_clients.s3_client


def allowed_locations() -> list[tuple[str, str]]:
    """(bucket, key prefix) for each entry of ``SEACUCUMBER_INBOUND_S3_BUCKETS`` ("bucket" or
    "bucket/prefix"; one string is one entry, never its characters)."""
    entries = conf.SEACUCUMBER_INBOUND_S3_BUCKETS or ()
    if isinstance(entries, str):
        entries = (entries,)
    locations = []
    for entry in entries:
        bucket, _, prefix = str(entry).partition("/")
        if bucket:
            locations.append((bucket, prefix))
    return locations


def refusal(bucket: str, key: str) -> str | None:
    """Why the mail at ``bucket``/``key`` may not be read, or None when it may: its bucket
    (and key prefix) must be listed in ``SEACUCUMBER_INBOUND_S3_BUCKETS``, and never be the
    claim-check bucket, even if listed."""
    where = f"s3://{bucket}/{key}"
    if bucket == conf.SEACUCUMBER_CLAIM_CHECK_BUCKET:
        return (f"{where} is in the claim-check bucket (SEACUCUMBER_CLAIM_CHECK_BUCKET), "
                "which holds outbound mail: never read as received mail")
    if any(bucket == allowed and key.startswith(prefix)
           for allowed, prefix in allowed_locations()):
        return None
    return f"{where} is not in a bucket (and prefix) SEACUCUMBER_INBOUND_S3_BUCKETS allows"


def fetch_message(bucket: str, key: str, limits: Limits | None = None) -> InboundMessage:
    """The mail stored at ``bucket``/``key``, parsed as it streams in, within ``limits``
    (None: the settings'). Raises ``InvalidNotification`` for a location not allowed
    (nothing is fetched), ``MailObjectGone``, ``MailStoreUnavailable`` or
    ``InboundTooLarge``."""
    refused = refusal(bucket, key)
    if refused:
        raise InvalidNotification(refused)
    limits = limits or Limits.from_settings()
    limit = limits.max_bytes
    where = f"s3://{bucket}/{key}"
    try:
        response = client().get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        info = error_info(exc)
        if info.code in GONE_CODES or info.status == 404:
            raise MailObjectGone(f"{where}: {info.code}") from None
        hint = (" (allow s3:GetObject on the bucket, and s3:ListBucket so that a missing "
                "object reads as missing)") if info.access_denied else ""
        raise MailStoreUnavailable(
            f"{where}: S3 answered {info.code} (HTTP {info.status}){hint}") from None
    except BotoCoreError as exc:
        raise MailStoreUnavailable(f"{where}: {exc}") from None
    body = response["Body"]
    try:
        size = int(response.get("ContentLength") or 0)
        if size > limit:
            raise InboundTooLarge(f"{where} is {size} bytes, over "
                                  f"SEACUCUMBER_INBOUND_MAX_BYTES ({limit})")
        return parse_stream(_chunks(body, where), limits)
    finally:
        body.close()


def _chunks(body: Any, where: str) -> Iterator[bytes]:
    """The object's bytes in chunks (``parse_stream`` counts them against the limit); a
    broken download is ``MailStoreUnavailable``."""
    while True:
        try:
            chunk = body.read(CHUNK)
        except (BotoCoreError, OSError) as exc:
            raise MailStoreUnavailable(f"{where}: download broke off: {exc}") from None
        if not chunk:
            return
        yield chunk
