"""Every Sea Cucumber setting, read lazily from ``django.conf.settings``.

Each setting is declared once in ``SETTINGS`` with its default, the older names it
also answers to (django-ses and Sea Cucumber 1.x), and what it means. Values are read
on every access, so ``override_settings`` works in tests. Use it as::

    from seacucumber.conf import conf
    conf.USE_SES_V2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings as django_settings

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
    # --- queueing -------------------------------------------------------------------------
    Setting("SEACUCUMBER_QUEUE", None,
            "Celery queue for mail tasks. Unset: Celery's routing (task_routes, or the "
            "default queue).", ("CUCUMBER_ROUTE_QUEUE",)),
    Setting("SEACUCUMBER_ENQUEUE_TIMEOUT", 5.0,
            "Seconds send_messages may spend reaching the broker before it raises."),
    Setting("SEACUCUMBER_OUTBOX", None,
            "Record each queued send in the shared-state Redis until a worker settles it, and "
            "queue again a task the broker lost (kombu's Redis transport loses one a worker "
            "is killed while taking). Unset: on when the broker is Redis."),
    Setting("SEACUCUMBER_OUTBOX_GRACE", 30.0,
            "Seconds a worker may hold a task it took off the queue before starting it "
            "(prefetched; a retry's countdown comes on top); also the clock skew allowed "
            "between hosts. A task not started this long after the queue moved past it is queued "
            "again."),
    Setting("SEACUCUMBER_OUTBOX_SWEEP_INTERVAL", 10.0,
            "Seconds between a worker's looks for tasks the broker lost (outbox on)."),
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
            "Redis for the shared rate and send records. Unset: the broker URL when it is "
            "Redis."),
    Setting("SEACUCUMBER_REDIS_PREFIX", "seacucumber",
            "Prefix of every Redis key Sea Cucumber writes."),
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
            "Largest received mail, in bytes, fetched from S3; a larger one is refused (413) "
            "and left in the bucket."),
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


class LazySettings:
    """Attribute access to every setting in ``SETTINGS``, read at access time."""

    def __getattr__(self, name: str) -> Any:
        return self.lookup(name)[1]

    def lookup(self, name: str) -> tuple[str, Any]:
        """(the name the value was found under: the setting's or an older one, the value);
        the default under the setting's own name when none is set."""
        try:
            setting = _BY_NAME[name]
        except KeyError:
            raise AttributeError(f"{name!r} is not a Sea Cucumber setting") from None
        for candidate in (setting.name, *setting.aliases):
            value = getattr(django_settings, candidate, _MISSING)
            if value is not _MISSING:
                return candidate, value
        return setting.name, setting.default

    def __dir__(self) -> list[str]:
        return sorted(_BY_NAME)


conf = LazySettings()


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
