"""Every system check of Sea Cucumber (``manage.py check``, and at ``runserver``/``migrate``):
settings that would fail sends, or lose them, are reported before any message is queued.

    W001-W003  the SNS event webhook        W004  Redis broker without socket timeouts
    W005-W006  SES v2 global endpoint       W007  outbox on, no shared-state Redis
    W008       a default or domainless DEFAULT_FROM_EMAIL / SERVER_EMAIL
    W020       django-ses's inbound settings
    E030       SEACUCUMBER_BASE_URL (unsubscribe links) not an absolute http(s) URL
    E031/W030  SEACUCUMBER_BASE_URL over http (W030 under DEBUG)
    E010-E011  the rate settings            E012  SEACUCUMBER_LANES
    E032       the reputation guard's settings
    E033       the claim check's store cannot work
    W033       an SQS broker with the claim check off
    E034-E035, W034  the staging allowlist and its redirect
    I035       the reputation guard with no configuration set (events carry no lane)
    E040       the process's Celery app is Celery's fallback (the project's never imported)
    E041       a MAILERS entry with Sea Cucumber's backend that cannot be built (bad options)
    E042-E043  the inbound S3 buckets name the claim-check bucket; the inbound limits
    E044       a sentinel:// shared-state URL that cannot be read (no master name, bad part)
"""

from __future__ import annotations

from importlib.util import find_spec
from typing import Any

from celery import current_app
from django.conf import settings
from django.core import mail as django_mail
from django.core.checks import CheckMessage, Error, Info, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import conf, lanes
from .events import inbound, s3
from .exceptions import ClaimCheckError, InvalidMessage
from .operations import doctor
from .payload import OPTION_NAMES, MailerOptions, bare_address, base_url_problem
from .send import allowlist
from .shared import claimcheck, quota, reputation, store

BROKER_TIMEOUTS = ("socket_connect_timeout", "socket_timeout")


@register()
def check_broker_timeouts(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when a Redis broker has no socket timeouts: kombu then waits on a broker host
    that does not answer for as long as the operating system lets it (minutes), and
    ``send_messages`` with it, whatever ``SEACUCUMBER_ENQUEUE_TIMEOUT`` says."""
    if not store.broker_is_redis():
        return []
    options = current_app.conf.broker_transport_options or {}
    missing = [name for name in BROKER_TIMEOUTS if options.get(name) is None]
    if not missing:
        return []
    return [Warning(
        f"The Redis broker has no {' or '.join(missing)}: send_messages can hang on a broker "
        "that does not answer.",
        hint="Set broker_transport_options (CELERY_BROKER_TRANSPORT_OPTIONS) "
             "socket_connect_timeout and socket_timeout to a few seconds, as celeryconfig.py "
             "does.",
        id="seacucumber.W004",
    )]


@register()
def check_global_endpoint(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when ``AWS_SES_GLOBAL_ENDPOINT_ID`` cannot work: it is a v2 parameter, and
    multi-region endpoints are signed with SigV4a, which botocore does only with awscrt."""
    if not conf.AWS_SES_GLOBAL_ENDPOINT_ID:
        return []
    found: list[CheckMessage] = []
    if not conf.USE_SES_V2:
        found.append(Warning(
            "AWS_SES_GLOBAL_ENDPOINT_ID is set but USE_SES_V2 is not: SES v1 has no "
            "multi-region endpoints, so it is ignored.",
            hint="Set USE_SES_V2 = True.", id="seacucumber.W005"))
    if find_spec("awscrt") is None:
        found.append(Warning(
            "AWS_SES_GLOBAL_ENDPOINT_ID needs the awscrt package (SigV4a signing): every "
            "send will fail without it.",
            hint="pip install 'botocore[crt]'", id="seacucumber.W006"))
    return found


@register()
def check_redis_cluster(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``SEACUCUMBER_REDIS_CLUSTER`` needs ``SEACUCUMBER_REDIS_URL``: the broker, the other
    source of the shared-state URL, is never a cluster, so without it there would be no
    shared state at all (no shared rate, send log or outbox)."""
    if not conf.SEACUCUMBER_REDIS_CLUSTER or conf.SEACUCUMBER_REDIS_URL:
        return []
    return [Error("SEACUCUMBER_REDIS_CLUSTER is True but SEACUCUMBER_REDIS_URL is unset: "
                  "there is no shared-state Redis (no shared rate, send log or outbox).",
                  hint="Name a node of the cluster in SEACUCUMBER_REDIS_URL (the Celery "
                  "broker is never a Redis Cluster).", id="seacucumber.E013")]


@register()
def check_outbox(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when ``SEACUCUMBER_OUTBOX = True`` cannot work: it lives in the shared-state
    Redis."""
    if conf.SEACUCUMBER_OUTBOX is not True or store.redis_url() is not None:
        return []
    return [Warning(
        "SEACUCUMBER_OUTBOX is True but there is no shared-state Redis: tasks the broker "
        "loses are not queued again.",
        hint="Set SEACUCUMBER_REDIS_URL.", id="seacucumber.W007")]


@register()
def check_shared_state_sentinel(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A ``sentinel://`` shared state needs the master's name and well-formed parts: said
    here, not by the first worker that connects."""
    url = store.redis_url()
    if url is None or not store.is_sentinel(url):
        return []
    try:
        store.parse_sentinel_url(url)
        store.sentinel_options(url)
    except (ImproperlyConfigured, ValueError) as exc:
        return [Error(str(exc), id="seacucumber.E044")]
    return []


#: Django's defaults: SES refuses them (no verified identity can be ``localhost``).
_DJANGO_DEFAULT_SENDERS = {"DEFAULT_FROM_EMAIL": "webmaster@localhost",
                           "SERVER_EMAIL": "root@localhost"}


@register()
def check_sender_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when ``DEFAULT_FROM_EMAIL`` or ``SERVER_EMAIL`` is Django's default or no full
    address: SES refuses every message from it, and error reports (``mail_admins``, sent
    from ``SERVER_EMAIL``) would vanish with no one told."""
    found: list[CheckMessage] = []
    for name, default in _DJANGO_DEFAULT_SENDERS.items():
        value = str(getattr(settings, name, "") or "")
        try:
            bare = bare_address(value, name) if value else ""
        except InvalidMessage:
            bare = ""
        if value == default or "." not in bare.rpartition("@")[2]:
            found.append(Warning(
                f"{name} is {value!r}: SES refuses mail from an address that is Django's "
                "default or has no domain, so every message sent from it fails.",
                hint=f"Set {name} to an address of a domain verified in SES.",
                id="seacucumber.W008"))
    return found


@register()
def check_rate_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The rate settings and the lanes under it, checked before any send: a bad one would
    otherwise fail every send task (or every ``send_messages``)."""
    found: list[CheckMessage] = []
    for read, error_id in ((quota.configured_rate, "seacucumber.E010"),
                           (quota.safety_factor, "seacucumber.E011"),
                           (lanes, "seacucumber.E012")):
        try:
            read()
        except ImproperlyConfigured as exc:
            found.append(Error(str(exc), id=error_id))
    return found


@register()
def check_reputation_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The reputation guard's settings (docs/deliverability.rst): a bad one would otherwise
    fail in the webhook or the worker."""
    return [Error(problem, id="seacucumber.E032") for problem in reputation.setting_problems()]


@register()
def check_reputation_sees_lanes(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The reputation guard tells a bounce's lane by the send's ``seacucumber-lane`` tag,
    which SES puts in an event only when the send names a configuration set (event
    publishing): without one, every bounce counts against the first lane and a guarded lane
    is never held."""
    if not reputation.enabled() or conf.AWS_SES_CONFIGURATION_SET:
        return []
    return [Info(
        "the reputation guard is on but AWS_SES_CONFIGURATION_SET is unset: SES events carry "
        "a send's lane (its seacucumber-lane tag) only through a configuration set's event "
        "publishing, so without one every bounce and complaint counts against the first lane",
        hint="Set AWS_SES_CONFIGURATION_SET (an SNS event destination to the webhook), or give "
             "every mailer of a guarded lane a configuration_set option and silence this "
             "check (seacucumber.I035).",
        id="seacucumber.I035")]


@register()
def check_claim_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The claim check's store, before any send: a bad one would refuse every large message
    at ``send_messages``; on SQS with none, such a message cannot be queued at all."""
    try:
        name = claimcheck.store_name()
        if name is not None:
            claimcheck.get_store(name)
    except ClaimCheckError as exc:
        return [Error(str(exc), id="seacucumber.E033")]
    if name is None and store.broker_scheme() == "sqs":
        return [Warning(
            "the broker is SQS and the claim check is off: a message over SQS's 256 KiB "
            "(after base64) cannot be queued",
            hint="Set SEACUCUMBER_CLAIM_CHECK_BUCKET (or SEACUCUMBER_REDIS_URL).",
            id="seacucumber.W033")]
    return []


@register()
def check_recipient_allowlist(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The staging allowlist and its redirect, checked before any send: a malformed one
    makes the worker refuse every send (it fails closed rather than mail anyone)."""
    found: list[CheckMessage] = []
    for read, error_id in ((allowlist.allowlist, "seacucumber.E034"),
                           (allowlist.redirect, "seacucumber.E035")):
        try:
            read()
        except ImproperlyConfigured as exc:
            found.append(Error(str(exc), hint="See docs/deliverability.rst, \"Safe staging\".",
                               id=error_id))
    if conf.SEACUCUMBER_RECIPIENT_REDIRECT and conf.SEACUCUMBER_RECIPIENT_ALLOWLIST is None:
        found.append(Warning(
            "SEACUCUMBER_RECIPIENT_REDIRECT is set but SEACUCUMBER_RECIPIENT_ALLOWLIST is not: "
            "nothing is redirected and everyone is mailed.",
            hint="Set SEACUCUMBER_RECIPIENT_ALLOWLIST (an empty list redirects every "
                 "recipient).", id="seacucumber.W034"))
    return found


@register()
def check_webhook_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when the webhook is routed but will refuse everything, or verifies nothing."""
    if doctor.webhook_path() is None:
        return []
    found: list[CheckMessage] = []
    if not conf.SEACUCUMBER_EVENT_TOPIC_ARNS:
        found.append(Warning(
            "SEACUCUMBER_EVENT_TOPIC_ARNS is empty: the SES event webhook refuses every post.",
            hint="List the ARNs of the SNS topics your SES events are published to.",
            id="seacucumber.W001",
        ))
    if not conf.SEACUCUMBER_VERIFY_EVENT_SIGNATURES:
        found.append(Warning(
            "SNS signature verification is off: anyone can post events to the webhook.",
            hint="Set SEACUCUMBER_VERIFY_EVENT_SIGNATURES = True outside tests.",
            id="seacucumber.W002",
        ))
    if conf.SEACUCUMBER_SNS_ENDPOINT_URL:
        found.append(Warning(
            f"SNS certificates are fetched from {conf.SEACUCUMBER_SNS_ENDPOINT_URL}, not SNS.",
            hint="SEACUCUMBER_SNS_ENDPOINT_URL is for tests against an emulator only.",
            id="seacucumber.W003",
        ))
    return found


#: django-ses's settings for received mail, which Sea Cucumber does not read.
DJANGO_SES_INBOUND_SETTINGS = (
    "AWS_SES_INBOUND_HANDLER", "AWS_SES_INBOUND_ACCESS_KEY_ID",
    "AWS_SES_INBOUND_SECRET_ACCESS_KEY", "AWS_SES_INBOUND_SESSION_TOKEN",
)


@register()
def check_django_ses_inbound(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when django-ses's inbound settings are set: ``AWS_SES_INBOUND_HANDLER`` names a
    class built on ``django_ses.inbound.BaseHandler`` (``SnsHandler`` / ``S3Handler``, called
    with ``mail_obj``, ``receipt``, ``raw_message``, then ``handle(content)`` and its
    ``process()`` reading a dict ``self.email``). Calling it would tie this package to
    django-ses's classes; the same job is a receiver of ``inbound_received``, which gets the
    mail already fetched (S3 too), verified, deduplicated and parsed."""
    found = [name for name in DJANGO_SES_INBOUND_SETTINGS
             if getattr(settings, name, None) not in (None, "")]
    if not found:
        return []
    return [Warning(
        f"{', '.join(found)} {'is' if len(found) == 1 else 'are'} django-ses's and not read by "
        "Sea Cucumber: received mail does not reach that handler.",
        hint="Connect a receiver to seacucumber.signals.inbound_received(sender, message, "
             "event); S3 objects are fetched with the SES credentials (AWS_SES_ACCESS_KEY_ID "
             "...). See docs/inbound.rst.",
        id="seacucumber.W020",
    )]


@register()
def check_inbound_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The inbound limits must be whole numbers of at least 1 (the depth at most 100), and
    ``SEACUCUMBER_INBOUND_S3_BUCKETS`` must never name the claim-check bucket, where
    outbound mail waits: a receipt notification naming it would hand that mail to
    ``inbound_received`` (it is refused all the same; this says so at start-up)."""
    found: list[CheckMessage] = []
    for name in inbound.LIMIT_SETTINGS:
        most = inbound.DEEPEST if name == "SEACUCUMBER_INBOUND_MAX_DEPTH" else None
        value = getattr(conf, name)
        if (isinstance(value, bool) or not isinstance(value, int) or value < 1
                or (most is not None and value > most)):
            found.append(Error(
                f"{name} is {value!r}: a whole number from 1"
                + (f" to {most}" if most is not None else ""),
                hint="Leave it unset for its default (docs/inbound.rst, \"Limits\").",
                id="seacucumber.E043"))
    claim_bucket = conf.SEACUCUMBER_CLAIM_CHECK_BUCKET
    if claim_bucket and any(bucket == claim_bucket for bucket, _ in s3.allowed_locations()):
        found.append(Error(
            f"SEACUCUMBER_INBOUND_S3_BUCKETS names the claim-check bucket {claim_bucket!r}, "
            "which holds outbound mail waiting to be sent: it is never read as received "
            "mail.",
            hint="Give SES receipt rules a bucket of their own and list that one.",
            id="seacucumber.E042"))
    return found


@register()
def check_base_url(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``SEACUCUMBER_BASE_URL`` makes one-click unsubscribe links: Gmail and Yahoo want them
    https (RFC 8058), and a URL that is not absolute makes links that lead nowhere. Plain
    http is only a warning under DEBUG (a development server)."""
    if not conf.SEACUCUMBER_BASE_URL:
        return []
    if (problem := base_url_problem()) is not None:
        return [Error(problem, hint="Give the absolute https URL at which seacucumber.urls "
                      "are served (https://example.com/ses/).", id="seacucumber.E030")]
    if str(conf.SEACUCUMBER_BASE_URL).lower().startswith("https://"):
        return []
    message = (f"SEACUCUMBER_BASE_URL {conf.SEACUCUMBER_BASE_URL!r} is not https: mailbox "
               "providers ignore one-click unsubscribe links over http (RFC 8058).")
    hint = "Serve seacucumber.urls over https and give that URL."
    if settings.DEBUG:
        return [Warning(message, hint=hint, id="seacucumber.W030")]
    return [Error(message, hint=hint, id="seacucumber.E031")]


@register()
def check_celery_app(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A process that never imports the project's Celery app publishes through Celery's
    fallback app, to ``amqp://guest@localhost//``: ``send_mail`` returns 1 and the mail
    waits where no worker looks (or the send fails naming a broker nobody configured)."""
    if not doctor.is_fallback_app():
        return []
    return [Error(
        f"this process's Celery app is Celery's fallback (broker {store.broker_uri()}), not "
        "the project's: mail would be queued where no worker of the project looks",
        hint=f"{doctor.celery_app_fix()}.",
        id="seacucumber.E040")]


@register()
def check_mailers(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Build every ``MAILERS`` entry (Django 6.1) that sends with Sea Cucumber, so a typo in
    its ``OPTIONS`` is reported at deploy time rather than at its first send (Django 6.1
    refuses an unknown option of a ``MAILERS`` entry only when the mailer is first used)."""
    mailers = getattr(settings, "MAILERS", None)
    found: list[CheckMessage] = []
    for alias, entry in (mailers.items() if isinstance(mailers, dict) else ()):
        if not isinstance(entry, dict) or not _is_our_backend(entry.get("BACKEND")):
            continue
        options = entry.get("OPTIONS") or {}
        hint = (f"Correct MAILERS[{alias!r}]['OPTIONS']; Sea Cucumber's options: "
                f"fail_silently, {', '.join(sorted(OPTION_NAMES))} (README, \"Set up\").")
        if not isinstance(options, dict):
            found.append(Error(f"MAILERS[{alias!r}]['OPTIONS'] is not a dict", hint=hint,
                               id="seacucumber.E041"))
            continue
        unknown = [name for name in MailerOptions.unknown(options) if name != "fail_silently"]
        if unknown:
            found.append(Error(
                f"MAILERS[{alias!r}] has unknown option(s) "
                f"{', '.join(repr(name) for name in unknown)}", hint=hint, id="seacucumber.E041"))
            continue
        try:
            if hasattr(django_mail, "mailers"):  # Django builds it: its checks, then ours
                django_mail.mailers[alias]
            else:
                import_string(entry["BACKEND"])(**options)
        except Exception as exc:  # noqa: BLE001 - InvalidOption, Django's InvalidMailer
            found.append(Error(f"MAILERS[{alias!r}] cannot be built: {exc}", hint=hint,
                               id="seacucumber.E041"))
    return found


def _is_our_backend(path: Any) -> bool:
    """Whether a ``BACKEND`` path names ``SESBackend`` or a subclass (one that cannot be
    imported is Django's to report, not ours)."""
    from .backend import SESBackend

    try:
        backend = import_string(str(path))
    except ImportError:
        return False
    return isinstance(backend, type) and issubclass(backend, SESBackend)
