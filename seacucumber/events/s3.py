"""Fetching a received mail that an SES receipt rule's S3 action stored.

The client is boto3's, made once per process (``seacucumber.clients``) with the SES
credentials (``AWS_SES_ACCESS_KEY_ID`` ..., else boto3's chain), the bucket's region
(``SEACUCUMBER_S3_REGION_NAME``, else ``AWS_SES_REGION_NAME``) and, for tests,
``SEACUCUMBER_S3_ENDPOINT_URL``. The object is streamed into the parser in chunks, never read
whole. boto3's own retries are off: SNS delivers the notification again after a 503.

What the webhook answers follows from what S3 did: the object or bucket is not there
(``MailObjectGone``: logged, 200, since no retry brings it back); anything else, S3 unreachable,
a timeout, 5xx, throttling or a refusal (``MailStoreUnavailable``: 503, SNS retries; the mail
stays in the bucket). S3 answers AccessDenied, not NoSuchKey, for a missing key when the
caller lacks ``s3:ListBucket``: that too is retried, and logged for the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..conf import conf
from ..exceptions import InboundTooLarge, MailObjectGone, MailStoreUnavailable
from ..ses import clients as ses_clients
from ..ses.errors import error_info
from .inbound import CHUNK, InboundMessage, parse_stream

logger = logging.getLogger(__name__)

GONE_CODES = frozenset({"NoSuchKey", "NoSuchBucket"})


#: The process's shared S3 client (``ses.clients.s3_client``: the claim check uses it too).
client = ses_clients.s3_client


def fetch_message(bucket: str, key: str) -> InboundMessage:
    """The mail stored at ``bucket``/``key``, parsed as it streams in. Raises
    ``MailObjectGone``, ``MailStoreUnavailable`` or ``InboundTooLarge``."""
    limit = int(conf.SEACUCUMBER_INBOUND_MAX_BYTES)
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
        return parse_stream(_chunks(body, where, limit))
    finally:
        body.close()


def _chunks(body: Any, where: str, limit: int) -> Iterator[bytes]:
    """The object's bytes in chunks; a broken download is ``MailStoreUnavailable``."""
    read = 0
    while True:
        try:
            chunk = body.read(CHUNK)
        except (BotoCoreError, OSError) as exc:
            raise MailStoreUnavailable(f"{where}: download broke off: {exc}") from None
        if not chunk:
            return
        read += len(chunk)
        if read > limit:
            raise InboundTooLarge(f"{where} is over SEACUCUMBER_INBOUND_MAX_BYTES ({limit})")
        yield chunk
