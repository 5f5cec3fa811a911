"""Every Sea Cucumber setting, read lazily from ``django.conf.settings``.

Each setting is declared once in ``SETTINGS`` with its default, the older names it
also answers to (django-ses and Sea Cucumber 1.x), and what it means. Use it as::

    from seacucumber.conf import conf
    conf.USE_SES_V2

Outside ``conf.held()`` a value is read from Django at each access. Inside it
(``send_messages``, a task's run) each setting, and each value made from settings alone
(``conf.kept``), is read once per process and kept until Django's ``setting_changed`` signal
(which ``override_settings`` and pytest-django's ``settings`` fixture send) clears them all,
as Django's own cached settings are: a setting assigned to ``django.conf.settings`` directly
at run time, without that signal, is not seen there (Django documents that settings must not
be altered at run time); a new layer of settings (``override_settings`` entered or left,
even with nothing to signal) clears them too. A worker process reads each once for good
(``conf.freeze()``).
Values that also depend on Celery's configuration (the broker URL) are not kept so: their
holders key them on what they depend on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from django.conf import Settings, UserSettingsHolder
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

_MISSING = object()


@dataclass(frozen=True)
class Setting:
    """One setting: its name, default, older names it also answers to, and its meaning."""

    name: str
    default: Any
    doc: str
    aliases: tuple[str, ...] = field(default=())


SETTINGS: tuple[Setting, ...] = (
    # --- AWS client ---------------------------------------------------------------
    Setting("AWS_SES_REGION_NAME", None,
            "SES region. Unset: boto3's own resolution (AWS_DEFAULT_REGION, profile)."),
    Setting("SEACUCUMBER_ENDPOINT_URL", None,
            "SES endpoint URL. Unset: AWS_SES_REGION_ENDPOINT (django-ses, a host name), "
            "else boto3's own (AWS_ENDPOINT_URL_SES / AWS_ENDPOINT_URL environment)."),
    Setting("AWS_SES_REGION_ENDPOINT", None,
            "django-ses name: SES endpoint host (https assumed) or URL."),
    Setting("AWS_SES_ACCESS_KEY_ID", None,
            "Access key. Unset: boto3's credential chain.", ("AWS_ACCESS_KEY_ID",)),
    Setting("AWS_SES_SECRET_ACCESS_KEY", None,
            "Secret key. Unset: boto3's credential chain.", ("AWS_SECRET_ACCESS_KEY",)),
    Setting("AWS_SES_SESSION_TOKEN", None,
            "Session token. Unset: boto3's credential chain.", ("AWS_SESSION_TOKEN",)),
    Setting("USE_SES_V2", False,
            "Send with the SES v2 API (SendEmail, raw content; 40 MB) instead of v1 "
            "SendRawEmail (10 MB)."),
    Setting("AWS_SESSION_PROFILE", None,
            "django-ses name: the AWS credentials profile (~/.aws) SES clients use. Unset: "
            "boto3's credential chain."),
    Setting("AWS_SES_CONFIG", None,
            "django-ses name: a botocore.config.Config merged over Sea Cucumber's own for SES "
            "clients (proxies, timeouts, pool size); what it sets wins, retries included."),
    Setting("SEACUCUMBER_TRUSTED_REGIONS", (),
            "Worker: regions a task's payload may name (a mailer's region option given to "
            "get_connection at run time) besides AWS_SES_REGION_NAME and MAILERS' own; a task "
            "naming another fails (UntrustedClientOptions)."),
    Setting("SEACUCUMBER_TRUSTED_ENDPOINT_URLS", (),
            "Worker: SES endpoint URLs a task's payload may name besides the settings' own "
            "and MAILERS'; a task naming another fails (UntrustedClientOptions)."),
    Setting("SEACUCUMBER_TRUSTED_PROFILES", (),
            "Worker: AWS profiles a task's payload may name besides AWS_SESSION_PROFILE and "
            "MAILERS'; a task naming another fails (UntrustedClientOptions)."),
    Setting("SEACUCUMBER_CONNECT_TIMEOUT", 5.0, "Seconds to connect to SES."),
    Setting("SEACUCUMBER_READ_TIMEOUT", 30.0, "Seconds to wait for an SES answer."),
    # --- per-message options ------------------------------------------------------------
    Setting("AWS_SES_CONFIGURATION_SET", None,
            "Configuration set name, or a callable (message, dkim_domain, dkim_key, "
            "dkim_selector, dkim_headers) returning one, resolved at send_messages."),
    Setting("AWS_SES_RETURN_PATH", None,
            "Envelope sender (bounce address) for every message; unset: the From address. "
            "v2: also FeedbackForwardingEmailAddress."),
    Setting("AWS_SES_SOURCE_ARN", None,
            "v1 SourceArn (sending authorization); v2 FromEmailAddressIdentityArn when "
            "AWS_SES_FROM_ARN is unset."),
    Setting("AWS_SES_FROM_ARN", None, "v1 FromArn / v2 FromEmailAddressIdentityArn."),
    Setting("AWS_SES_RETURN_PATH_ARN", None,
            "v1 ReturnPathArn / v2 FeedbackForwardingEmailAddressIdentityArn."),
    Setting("AWS_SES_GLOBAL_ENDPOINT_ID", None,
            "v2 multi-region endpoint id (EndpointId); needs awscrt (pip install "
            "'botocore[crt]'), else sends fail at once naming it."),
    Setting("SEACUCUMBER_IGNORE_UNSUPPORTED_FEATURES", None,
            "django-anymail message attributes Sea Cucumber cannot honour (template_id, "
            "merge_data, track_clicks without a configuration set...) are dropped instead of "
            "refused at send_messages (UnsupportedFeature). Unset: anymail's own "
            "IGNORE_UNSUPPORTED_FEATURES in the ANYMAIL dict (or the older name), else off.",
            ("ANYMAIL_IGNORE_UNSUPPORTED_FEATURES",)),
    # --- queueing -------------------------------------------------------------------------
    Setting("SEACUCUMBER_QUEUE", None,
            "Celery queue for mail tasks. Unset: Celery's routing (task_routes, or the "
            "default queue).", ("CUCUMBER_ROUTE_QUEUE",)),
    Setting("SEACUCUMBER_LANES",
            {"transactional": {}, "bulk": {"queue": "seacucumber-bulk", "min_share": 0.1}},
            "Lanes under the shared rate, highest priority first (docs/rate.rst): name -> "
            "{queue, min_share, lookahead}. Mail that names no lane takes the first; its queue "
            "unset: SEACUCUMBER_QUEUE or Celery's routing. A lower lane gets what the higher "
            "leave, at least min_share of the rate while it has mail, and books at most "
            "lookahead seconds (0.2) ahead."),
    Setting("SEACUCUMBER_ENQUEUE_TIMEOUT", 5.0,
            "Seconds send_messages may spend reaching the broker before it raises."),
    Setting("SEACUCUMBER_OUTBOX", None,
            "Record each queued send in the shared-state Redis until a worker settles it, and "
            "queue again a task the broker lost (kombu's Redis transport loses one a worker "
            "is killed while taking), or a dead worker process held (``SEACUCUMBER_HOLDER_TTL``). "
            "Unset: on when the broker is Redis or SQS (brokers that hand a dead worker's tasks "
            "back only after their visibility timeout)."),
    Setting("SEACUCUMBER_OUTBOX_GRACE", 10.0,
            "Seconds a task taken off the queue may go unclaimed by a live worker process "
            "(one stamps what it prefetched within a heartbeat; a retry's countdown comes on "
            "top); also the clock skew allowed between hosts. A task not started this long "
            "after the queue moved past it, and held by no live worker, is queued again."),
    Setting("SEACUCUMBER_OUTBOX_SWEEP_INTERVAL", 2.0,
            "Seconds between a worker's looks for tasks the broker lost (outbox on): a task "
            "a killed worker was taking comes back two looks after the queue moved past it. "
            "Each look reads the head of each mail queue (SQS: one GetQueueAttributes)."),
    Setting("SEACUCUMBER_HOLDER_TTL", 5.0,
            "Seconds after its last heartbeat a worker process counts as dead: the sends it "
            "held (reserved or running) are queued again (outbox on) and their send-log claim "
            "is taken over. Each worker process beats every fifth of this."),
    Setting("SEACUCUMBER_MAX_COUNTDOWN", None,
            "Longest countdown, in seconds, one retry or re-queue is published with; a longer "
            "wait is taken in hops of at most this (a task back early re-queues itself "
            "without working). Unset: from the broker: SQS the lesser of 900 s (DelaySeconds) "
            "and half broker_transport_options' visibility_timeout (default 1800); Redis half "
            "its visibility_timeout (default 3600); others no limit."),
    Setting("SEACUCUMBER_CLAIM_CHECK_STORE", None,
            "Where payloads over SEACUCUMBER_CLAIM_CHECK_THRESHOLD are stored while queued, "
            "the task carrying a reference and a sha256: 's3' (in "
            "SEACUCUMBER_CLAIM_CHECK_BUCKET), 'redis' (the shared-state Redis) or 'off'. "
            "Unset: 's3' when a bucket is set, else 'redis' when there is a shared-state "
            "Redis, else off."),
    Setting("SEACUCUMBER_CLAIM_CHECK_THRESHOLD", 96 * 1024,
            "Raw message size, in bytes, above which a send's message is claim-checked. "
            "The default keeps a task within SQS's 256 KiB after three rounds of base64 (the "
            "payload's, kombu's body encoding, the SQS transport's) and Celery's envelope."),
    Setting("SEACUCUMBER_CLAIM_CHECK_BUCKET", None,
            "S3 bucket for claim-checked payloads (store 's3'); objects under "
            "'<SEACUCUMBER_REDIS_PREFIX>/claim/'. Give it a lifecycle rule as a backstop."),
    Setting("SEACUCUMBER_CLAIM_CHECK_TTL", None,
            "Seconds a claim-checked payload is kept in Redis if no worker settles its send. "
            "Unset: SEACUCUMBER_MESSAGE_LIFETIME plus 25 hours (a held daily quota's window "
            "and an hour)."),
    Setting("SEACUCUMBER_MAX_SCHEDULE", 30 * 24 * 3600.0,
            "Furthest ahead, in seconds, a message's send_at may be (scheduled sending); one "
            "further is refused at send_messages (InvalidMessage)."),
    Setting("SEACUCUMBER_ENQUEUE_ON_COMMIT", False,
            "Enqueue inside an atomic block only once the transaction commits (rolled-back "
            "work sends no mail)."),
    # --- retries ----------------------------------------------------------------------------
    Setting("SEACUCUMBER_RETRY_BASE_DELAY", 2.0,
            "First retry delay in seconds for throttling and transient errors; doubles "
            "each attempt, with full jitter."),
    Setting("SEACUCUMBER_RETRY_MAX_DELAY", 300.0,
            "Cap on one retry delay, seconds. Keep it below the broker's visibility timeout."),
    Setting("SEACUCUMBER_MESSAGE_LIFETIME", 24 * 3600.0,
            "Seconds after send_messages past which a message still failing transiently is "
            "failed for good (a mail server's queue lifetime). Applies to every retry; a "
            "message held by the spent daily quota gets 24 hours more."),
    # --- shared state and rate ---------------------------------------------------------------
    Setting("SEACUCUMBER_REDIS_URL", None,
            "Redis for the shared rate and send records: a redis://, rediss:// or sentinel:// "
            "URL (see SEACUCUMBER_REDIS_SENTINEL). Unset: the broker URL when it is Redis."),
    Setting("SEACUCUMBER_REDIS_SENTINEL", None,
            "With a sentinel:// shared-state URL ('sentinel://h1:26379;sentinel://h2:26379/0', "
            "as kombu's Sentinel transport takes): a dict of kombu's Sentinel transport "
            "options, 'master_name' (required), 'sentinel_kwargs' (e.g. the sentinels' "
            "password), 'min_other_sentinels'. Unset: Celery's broker_transport_options when "
            "the shared state is the sentinel:// broker."),
    Setting("SEACUCUMBER_REDIS_PREFIX", "seacucumber",
            "Prefix of every Redis key Sea Cucumber writes."),
    Setting("SEACUCUMBER_REDIS_CLUSTER", False,
            "True: SEACUCUMBER_REDIS_URL is a Redis Cluster (ElastiCache cluster mode), used "
            "through redis-py's RedisCluster; every key shares one hash tag, the prefix."),
    Setting("SEACUCUMBER_SHARED_RATE", True,
            "Hold the account's send rate across all workers (needs the shared-state Redis). "
            "False: no limiter; SES throttling alone paces sends."),
    Setting("SEACUCUMBER_RATE_LIMIT", None,
            "Recipients per second for the whole account: a number, or a rate string "
            "'14/s', '600/m', '3600/h'. Unset: learned from SES (MaxSendRate).",
            ("CUCUMBER_RATE_LIMIT",)),
    Setting("SEACUCUMBER_RATE_SAFETY_FACTOR", 0.98,
            "Share of the SES MaxSendRate to use when the rate is learned (above 0, at most "
            "1). None, or AWS_SES_AUTO_THROTTLE = 0 as in django-ses: the full rate.",
            ("AWS_SES_AUTO_THROTTLE",)),
    Setting("SEACUCUMBER_RATE_BURST", 0.5,
            "Seconds' worth of the rate that may go out at once after a quiet spell."),
    Setting("SEACUCUMBER_RATE_MAX_WAIT", 1.0,
            "Longest wait for the shared rate inside a task, in seconds; a longer one "
            "re-queues the task with a countdown to its reserved slot."),
    Setting("SEACUCUMBER_RATE_HORIZON", 60.0,
            "How far ahead, in seconds, a send may book its slot of the shared rate; a task "
            "finding the rate booked further ahead is re-queued and asks again later."),
    Setting("SEACUCUMBER_RATE_FALLBACK", 1.0,
            "Recipients per second when SES will not give the quota (no IAM permission for "
            "GetSendQuota/GetAccount, or no read has succeeded yet) and "
            "SEACUCUMBER_RATE_LIMIT is unset."),
    Setting("SEACUCUMBER_QUOTA_REFRESH", 300.0,
            "Seconds between reads of the SES quota (one process reads, all share it). A "
            "read that fails other than for permission keeps the last rate and is tried "
            "again within 30 s."),
    Setting("SEACUCUMBER_QUOTA_HOLD", 600.0,
            "Seconds all sends are held once SES says the daily quota is used up."),
    # --- reputation guard (docs/deliverability.rst) ---------------------------------------------
    Setting("SEACUCUMBER_REPUTATION_GUARD", True,
            "Count bounce and complaint rates per lane in the shared-state Redis and hold a "
            "guarded lane whose rate crosses its threshold (needs the shared-state Redis)."),
    Setting("SEACUCUMBER_REPUTATION_GUARD_LANES", ("bulk",),
            "Lanes the reputation guard may hold; transactional mail is never held."),
    Setting("SEACUCUMBER_REPUTATION_WINDOW", 24 * 3600.0,
            "Seconds of the rolling window the rates are counted over (whole hours)."),
    Setting("SEACUCUMBER_REPUTATION_BOUNCE_THRESHOLD", 0.04,
            "Permanent bounce rate above which a guarded lane is held (SES reviews an "
            "account at 0.05)."),
    Setting("SEACUCUMBER_REPUTATION_COMPLAINT_THRESHOLD", 0.0008,
            "Complaint rate above which a guarded lane is held (SES reviews an account at "
            "0.001)."),
    Setting("SEACUCUMBER_REPUTATION_MIN_SENDS", 200,
            "Recipients a lane must have sent in the window before its bounce rate is "
            "judged."),
    Setting("SEACUCUMBER_REPUTATION_MIN_COMPLAINT_SENDS", 1250,
            "Recipients a lane must have sent in the window before its complaint rate is "
            "judged (the default: one complaint alone cannot cross 0.08%)."),
    Setting("SEACUCUMBER_REPUTATION_RETRY", 60.0,
            "Seconds a held send waits before it looks again (plus up to half as much "
            "jitter); a held send never expires."),
    # --- DKIM ---------------------------------------------------------------------------------
    Setting("DKIM_DOMAIN", None, "Domain to sign for (d=). Signing is on when this and "
            "DKIM_PRIVATE_KEY are set."),
    Setting("DKIM_PRIVATE_KEY", None,
            "PEM private key (str or bytes): RSA (rsa-sha256) or Ed25519 (ed25519-sha256, RFC "
            "8463; also as dknewkey's base64 seed)."),
    Setting("DKIM_SELECTOR", "ses", "DKIM selector (s=)."),
    Setting("DKIM_HEADERS", ("From", "From", "To", "Cc", "Subject", "Reply-To", "MIME-Version",
                             "Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe",
                             "List-Unsubscribe-Post"),
            "Headers to sign, in h= order; a name listed twice is signed twice (From twice: "
            "a From added later breaks the signature). List-Unsubscribe and "
            "List-Unsubscribe-Post are signed whenever present, listed or not (RFC 8058). Not "
            "Message-ID or Date: SES rewrites them."),
    # --- ops ----------------------------------------------------------------------------------
    Setting("SEACUCUMBER_DKIM_KEYS", None,
            "DKIM keys per sender domain: {domain: {'private_key': PEM, 'selector': ..., "
            "'headers': [...]}}, or a list of such dicts, each with its own selector, for "
            "several signatures (RSA and Ed25519: dual signing). The From domain (or its "
            "closest listed parent) picks the keys; others fall back to DKIM_DOMAIN."),
    # --- events ---------------------------------------------------------------------------------
    Setting("SEACUCUMBER_EVENT_TOPIC_ARNS", (),
            "SNS topic ARNs the event webhook accepts. Empty: every post is refused (403) and "
            "a system check warns while the webhook URL is installed."),
    Setting("SEACUCUMBER_VERIFY_EVENT_SIGNATURES", True,
            "Verify SNS signatures on the event webhook. Turn off only in tests.",
            ("AWS_SES_VERIFY_EVENT_SIGNATURES",)),
    Setting("SEACUCUMBER_SNS_CERTIFICATES", {},
            "{SigningCertURL: PEM} certificates trusted without fetching (an emulator's, in "
            "tests); a value may be a pathlib.Path to a PEM file, read when used. The URL must "
            "still pass the SNS host rule."),
    Setting("SEACUCUMBER_SNS_CERT_TIMEOUT", 5.0,
            "Seconds to fetch an SNS signing certificate or confirm a subscription."),
    Setting("SEACUCUMBER_SNS_ENDPOINT_URL", None,
            "Testing only: fetch SNS certificates and subscription confirmations from this "
            "base URL (scheme and host) instead of the SNS host, once the URL passed the host "
            "rule."),
    Setting("SEACUCUMBER_CONFIRM_SUBSCRIPTIONS", True,
            "Confirm SNS subscriptions to allowed topics automatically."),
    Setting("SEACUCUMBER_SNS_MAX_AGE", 3600,
            "Seconds: an SNS message whose signed Timestamp is older is refused (400), a "
            "replay, since SNS retries a delivery for an hour at most. Seen SNS ids are kept "
            "at least this long plus SEACUCUMBER_SNS_CLOCK_SKEW, whatever ses_cleanup's "
            "--days. None: no age limit (replays pass once their seen id is pruned)."),
    Setting("SEACUCUMBER_SNS_CLOCK_SKEW", 300,
            "Seconds an SNS Timestamp may be ahead of this server's clock; further ahead is "
            "refused (400)."),
    Setting("SEACUCUMBER_TRACK_STATUS", False,
            "Keep one status record per send (queued, sent, delivered, bounced, ...)."),
    Setting("SEACUCUMBER_STATUS_RETENTION_DAYS", 30,
            "Days ses_cleanup keeps status records and seen SNS message ids by default."),
    Setting("SEACUCUMBER_SUPPRESS_ON_BOUNCE", False,
            "Add permanently bounced addresses to the suppression list.",
            ("AWS_SES_ADD_BOUNCE_TO_BLACKLIST",)),
    Setting("SEACUCUMBER_SUPPRESS_ON_COMPLAINT", False,
            "Add complaining addresses to the suppression list.",
            ("AWS_SES_ADD_COMPLAINT_TO_BLACKLIST",)),
    Setting("SEACUCUMBER_SUPPRESSION_LIST", None,
            "Drop suppressed recipients in the worker before each send. Unset: on when "
            "SEACUCUMBER_SUPPRESS_ON_BOUNCE or SEACUCUMBER_SUPPRESS_ON_COMPLAINT is on.",
            ("AWS_SES_USE_BLACKLIST",)),
    Setting("SEACUCUMBER_BASE_URL", None,
            "Absolute URL at which seacucumber.urls are served (https://example.com/ses/): "
            "the base of one-click unsubscribe links. Needed by the unsubscribe_topic option; "
            "a system check wants https."),
    Setting("SEACUCUMBER_UNSUBSCRIBE_LEGACY_TOKENS", True,
            "Accept unsubscribe links made before links were encrypted (the address signed, "
            "readable in the link) for as long as the key that signed them is SECRET_KEY or "
            "in SECRET_KEY_FALLBACKS. Turn off once no mail with such links is in inboxes."),
    # --- safe staging (docs/deliverability.rst) -----------------------------------------------
    Setting("SEACUCUMBER_RECIPIENT_ALLOWLIST", None,
            "Staging: only these recipients are mailed; a list of addresses, domains "
            "('example.com' or '@example.com') and fnmatch patterns (``*@example.com``). "
            "Others are dropped in the worker (or redirected), logged and counted. Unset: "
            "everyone."),
    Setting("SEACUCUMBER_RECIPIENT_REDIRECT", None,
            "With SEACUCUMBER_RECIPIENT_ALLOWLIST: one address that gets the mail meant for "
            "recipients not allowed, instead of dropping them."),
    # --- inbound mail (SES receipt rules; docs/inbound.rst) ---------------------------------
    Setting("SEACUCUMBER_INBOUND_DROP_SPAM", False,
            "Drop received mail whose SES spam verdict is FAIL: answered 200, no "
            "inbound_received signal."),
    Setting("SEACUCUMBER_INBOUND_DROP_VIRUS", True,
            "Drop received mail whose SES virus verdict is FAIL: answered 200, no "
            "inbound_received signal."),
    Setting("SEACUCUMBER_INBOUND_MAX_BYTES", 40 * 1024 * 1024,
            "Largest received mail, in bytes (inline or from S3); a larger one is refused, "
            "its record kept with the reason and the mail left where SES put it."),
    Setting("SEACUCUMBER_INBOUND_MAX_PARTS", 500,
            "Most MIME parts (the mail itself included) a received mail may have; past it the "
            "mail is refused with the reason recorded. Parsing costs per part, not per byte."),
    Setting("SEACUCUMBER_INBOUND_MAX_DEPTH", 32,
            "Deepest nesting of MIME parts in a received mail (1: no parts); deeper is "
            "refused. Python's email package recurses per level (at most 100)."),
    Setting("SEACUCUMBER_INBOUND_MAX_HEADER_BYTES", 32 * 1024,
            "Longest header field (name and folded value) in any part of a received mail; "
            "longer is refused. Decoding a header costs more than linear time in its length."),
    Setting("SEACUCUMBER_INBOUND_S3_BUCKETS", (),
            "The S3 buckets received mail is fetched from, each 'bucket' or 'bucket/prefix'; a "
            "receipt naming another is refused unread. Empty: no S3 action accepted. Never "
            "the claim-check bucket."),
    Setting("SEACUCUMBER_S3_ENDPOINT_URL", None,
            "S3 endpoint URL for fetching received mail (tests: moto's server). Unset: "
            "boto3's own (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL environment)."),
    Setting("SEACUCUMBER_S3_REGION_NAME", None,
            "Region of the bucket SES stores received mail in, when it is not the SES "
            "region. Unset: AWS_SES_REGION_NAME."),
    # --- dashboard and metrics -------------------------------------------------------------------
    Setting("SEACUCUMBER_METRICS_TOKEN", None,
            "Bearer token Prometheus must send to ses/metrics/ (Authorization: Bearer ...). "
            "Unset: the endpoint answers 403 to everyone."),
)

_BY_NAME = {s.name: s for s in SETTINGS}

#: What a lower lane books ahead of now when its entry does not say (``Lane.lookahead``).
DEFAULT_LOOKAHEAD = 0.2
_LANE_KEYS = frozenset({"queue", "min_share", "lookahead"})
_LANE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Lane:
    """One lane of ``SEACUCUMBER_LANES``: its name, its priority (``rank`` 0 is served
    first), its broker queue (None: ``SEACUCUMBER_QUEUE`` or Celery's routing), the least
    share of the account's rate it gets while it has mail (``min_share``: 0 for the first
    lane, which needs none), and how far ahead of now it may book (``lookahead``; None for the
    first lane, which books up to ``SEACUCUMBER_RATE_HORIZON``)."""

    name: str
    rank: int
    queue: str | None = None
    min_share: float = 0.0
    lookahead: float | None = None


def lanes() -> tuple[Lane, ...]:
    """The lanes ``SEACUCUMBER_LANES`` declares, highest priority first; ``ImproperlyConfigured``
    naming the fault for a malformed entry (the system check ``seacucumber.E012`` reports it
    at start-up)."""
    value = conf.SEACUCUMBER_LANES
    cached = _lanes_cache.get(id(value))
    if cached is not None and cached[0] is value:
        return cached[1]
    found = _parse_lanes(value)
    _lanes_cache.clear()  # one entry: the setting in force
    _lanes_cache[id(value)] = (value, found)
    return found


#: The last ``SEACUCUMBER_LANES`` value read and its lanes: the backend asks for every
#: message, and settings are not changed in place (``override_settings`` replaces them).
_lanes_cache: dict[int, tuple[Any, tuple[Lane, ...]]] = {}


def _parse_lanes(value: Any) -> tuple[Lane, ...]:
    if not value:
        return (Lane("transactional", 0),)
    if not isinstance(value, dict):
        raise ImproperlyConfigured("SEACUCUMBER_LANES must be a dict: lane name -> options")
    found = []
    for rank, (name, options) in enumerate(value.items()):
        where = f"SEACUCUMBER_LANES[{name!r}]"
        if not isinstance(name, str) or not _LANE_NAME.fullmatch(name):
            raise ImproperlyConfigured(f"{where}: a lane name is letters, digits, _ and - "
                                       "(at most 64), as SES message tags take them")
        if not isinstance(options, dict) or not set(options) <= _LANE_KEYS:
            raise ImproperlyConfigured(f"{where} must be a dict with keys among "
                                       f"{', '.join(sorted(_LANE_KEYS))}")
        queue = options.get("queue")
        if queue is not None and (not isinstance(queue, str) or not queue.strip()):
            raise ImproperlyConfigured(f"{where}['queue'] must be a queue name")
        share = options.get("min_share", 0.0 if rank == 0 else 0.05)
        lookahead = options.get("lookahead", None if rank == 0 else DEFAULT_LOOKAHEAD)
        if rank == 0 and (options.get("min_share") or options.get("lookahead") is not None):
            raise ImproperlyConfigured(f"{where}: the first lane is served first; min_share "
                                       "and lookahead are for the lanes below it")
        if not isinstance(share, int | float) or isinstance(share, bool) or not 0 <= share < 1:
            raise ImproperlyConfigured(f"{where}['min_share'] must be a share from 0 to "
                                       "below 1")
        if lookahead is not None and (not isinstance(lookahead, int | float)
                                      or isinstance(lookahead, bool) or lookahead < 0):
            raise ImproperlyConfigured(f"{where}['lookahead'] must be seconds, 0 or more")
        found.append(Lane(name, rank, queue, float(share),
                          None if lookahead is None else float(lookahead)))
    if sum(lane.min_share for lane in found) >= 1:
        raise ImproperlyConfigured("SEACUCUMBER_LANES: the lanes' min_share add up to 1 or "
                                   "more, leaving nothing for the first lane")
    return tuple(found)


def lane(name: str | None = None) -> Lane:
    """The lane called ``name`` (None: the first, which mail naming no lane takes);
    ``KeyError`` for a lane ``SEACUCUMBER_LANES`` does not declare."""
    declared = lanes()
    if name is None:
        return declared[0]
    for found in declared:
        if found.name == name:
            return found
    raise KeyError(name)


_T = TypeVar("_T")

#: Values made inside ``LazySettings.held()`` (``derived``), once per block: None outside it.
_held: ContextVar[dict[str, Any] | None] = ContextVar("seacucumber_settings_held", default=None)
#: Settings and values made from settings alone (``kept``) read inside ``held()``, for the
#: whole process until Django's ``setting_changed`` (``_forget``).
_kept: dict[str, Any] = {}
#: The layer of Django's settings (``settings._wrapped``: ``override_settings`` adds one)
#: ``_kept`` was read from.
_kept_layer: Any = None
#: Values read since ``LazySettings.freeze()`` (a worker process): None before it.
_frozen: dict[str, Any] | None = None


def _forget(**_: Any) -> None:
    """Django's ``setting_changed`` receiver: every kept value is read again."""
    _kept.clear()


setting_changed.connect(_forget, dispatch_uid="seacucumber.conf.forget")


class LazySettings:
    """Attribute access to every setting in ``SETTINGS``, read at access time (inside
    ``held()``, once per process until ``setting_changed``: the module's docstring)."""

    def __getattr__(self, name: str) -> Any:
        if _frozen is not None:
            kept = _frozen
        elif _held.get() is None:
            return self.lookup(name)[1]
        else:
            kept = _kept
        try:
            return kept[name]
        except KeyError:
            value = kept[name] = self.lookup(name)[1]
            return value

    def freeze(self) -> None:
        """Read each setting once for the rest of this process: a Celery worker's settings
        do not change while it runs, and the send path reads dozens per send (the worker
        calls this as it starts: ``tasks``)."""
        global _frozen
        if _frozen is None:
            _frozen = {}

    @contextmanager
    def held(self) -> Iterator[None]:
        """Read each setting once, kept for the process until Django's ``setting_changed``
        (the module's docstring), and each ``derived`` value once for the block:
        ``send_messages`` checks a thousand messages against the same settings, and each
        read walks Django's settings and older names (a one-message call read twenty, a
        tenth of its instructions: BENCHMARKS.md, issue 27's fourth round)."""
        global _kept_layer
        layer = django_settings._wrapped  # override_settings' layer, even without a signal
        if layer is not _kept_layer:  # (pytest-django's fixture deletes a setting so)
            _kept.clear()
            _kept_layer = layer
        token = _held.set({} if _held.get() is None else _held.get())
        try:
            yield
        finally:
            _held.reset(token)

    def derived(self, name: str, build: Callable[[], _T]) -> _T:
        """``build()``, a value made from settings (and perhaps Celery's configuration: the
        worker's Redis key names and script arguments), made once per ``held()`` block or
        once frozen, and at each call otherwise. ``name`` says what it is (and the values it
        depends on)."""
        held = _held.get() if _frozen is None else _frozen
        return build() if held is None else _once(held, "derived:" + name, build)

    def kept(self, name: str, build: Callable[[], _T]) -> _T:
        """``build()``, a value made from settings alone (never from Celery's configuration
        or anything else that changes without ``setting_changed``), made once inside
        ``held()`` and kept as the settings are (or frozen), and at each call otherwise.
        ``name`` says what it is."""
        if _frozen is not None:
            return _once(_frozen, "kept:" + name, build)
        return build() if _held.get() is None else _once(_kept, "kept:" + name, build)

    def lookup(self, name: str) -> tuple[str, Any]:
        """(the name the value was found under: the setting's or an older one, the value);
        the default under the setting's own name when none is set."""
        try:
            setting = _BY_NAME[name]
        except KeyError:
            raise AttributeError(f"{name!r} is not a Sea Cucumber setting") from None
        for candidate in (setting.name, *setting.aliases):
            value = _django_setting(candidate)
            if value is not _MISSING:
                return candidate, value
        return setting.name, setting.default

    def __dir__(self) -> list[str]:
        return sorted(_BY_NAME)


conf = LazySettings()


def _once(values: dict[str, Any], key: str, build: Callable[[], _T]) -> _T:
    """``values[key]``, made with ``build()`` the first time (keys not a setting's name:
    those have no ':')."""
    try:
        found: _T = values[key]
    except KeyError:
        found = values[key] = build()
    return found


def _django_setting(name: str) -> Any:
    """``getattr(django.conf.settings, name, _MISSING)``, quicker for a name the project does
    not set. Django's settings layers (``LazySettings``, ``override_settings``'s
    ``UserSettingsHolder``s, ``Settings`` or ``configure()``'s defaults module) answer such a
    name with an ``AttributeError`` raised through each, about 10 µs, and ``send_messages``
    asks for a dozen names most projects never set (a fifth of a one-message call, measured
    for issue 27). So the layers are walked as their own ``__getattr__``s walk them, only to
    find a name none holds; any name found, or any layer not one of those, is read through
    Django as before."""
    holder = getattr(django_settings, "_wrapped", None)
    while isinstance(holder, UserSettingsHolder):
        if name in holder.__dict__:
            return getattr(django_settings, name, _MISSING)
        if name in holder._deleted:
            return _MISSING
        holder = holder.default_settings
    if isinstance(holder, Settings | ModuleType) and name not in vars(holder):
        return _MISSING
    return getattr(django_settings, name, _MISSING)


def _default_text(setting: Setting) -> str:
    if setting.default is None:
        return "unset"
    if isinstance(setting.default, tuple | list):
        return ", ".join(map(str, setting.default)) or "empty"
    if isinstance(setting.default, dict):
        return "empty" if not setting.default else repr(setting.default)
    return f"``{setting.default!r}``"


def settings_table() -> str:
    """The README's settings table (reStructuredText), made from ``SETTINGS``."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 34 14 52",
        "",
        "   * - Setting",
        "     - Default",
        "     - Meaning",
    ]
    for setting in SETTINGS:
        name = f"``{setting.name}``"
        if setting.aliases:
            name += " (also " + ", ".join(f"``{a}``" for a in setting.aliases) + ")"
        lines += [f"   * - {name}", f"     - {_default_text(setting)}", f"     - {setting.doc}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
