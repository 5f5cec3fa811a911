"""The whole path mail takes, checked from this host: the logic behind ``manage.py ses_doctor``.

Why: each part can be wrong while ``send_mail`` still returns 1 (Celery's fallback app, no
worker on a lane's queue, an unverified sender), and each is found only when mail goes
missing. So every part is checked here, each as lines of ``OK``, ``WARN`` or ``FAIL`` with
what was found and, unless OK, the fix; any FAIL makes the command exit 1 (a deploy step).

Each check runs in a thread of its own, bounded by a deadline: one that raises is a FAIL line
naming the error, one that hangs a FAIL line saying so, and neither stops the others. The SES
checks (account, senders) run only once the SES client's region and the credentials check
out: a region typo sends no request at all (it would go to a host that does not exist). They
reuse the operator code: ``usage.fetch_account_state``, ``identities.list_identities``,
``workers.consumers``, ``store.redis_client``; SES errors read by ``ses.errors``.
"""

from __future__ import annotations

import difflib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError
from celery import current_app
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch, reverse

from ..conf import conf
from ..exceptions import InvalidMessage, OperatorError
from ..payload import bare_address
from ..ses import clients as ses_clients
from ..ses import identities
from ..ses.errors import error_info
from ..shared import store, workers
from . import usage

OK, WARN, FAIL = "OK", "WARN", "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}
#: Seconds each check may take, network calls included.
DEFAULT_TIMEOUT = 10.0
#: The name Celery gives the app it makes when no app was made or set current
#: (``celery._state``), whose broker is ``amqp://guest@localhost//``.
FALLBACK_APP_NAME = "default"
_AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


@dataclass(frozen=True)
class Finding:
    """One line of the report: its status, what part of the path, what was found, the fix."""

    status: str
    topic: str
    found: str
    fix: str = ""

    def line(self) -> str:
        fix = f". Fix: {self.fix}" if self.fix and self.status != OK else ""
        return f"{self.status:<4}  {self.topic:<13} {self.found}{fix}"

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def failed(findings: list[Finding]) -> bool:
    """Whether any line is a FAIL (the command then exits 1)."""
    return any(finding.status == FAIL for finding in findings)


def render(findings: list[Finding]) -> str:
    fails = sum(f.status == FAIL for f in findings)
    warns = sum(f.status == WARN for f in findings)
    summary = (f"{fails} FAIL, {warns} WARN, {len(findings) - fails - warns} OK"
               if findings else "no checks ran")
    return "\n".join([*(f.line() for f in findings), "", summary])


# --- the Celery app -----------------------------------------------------------------------------

def is_fallback_app(app: Any = None) -> bool:
    """Whether ``app`` (default: this thread's current app) is the app Celery makes by itself
    when the project's was never made or set current: named "default", made with no fixups
    and not set as current (``celery._state``)."""
    app = app if app is not None else current_app._get_current_object()
    return (app.main == FALLBACK_APP_NAME and not app.set_as_current
            and not getattr(app, "fixups", None))


def _project_package() -> str | None:
    """The package of the Django project, from its settings module (``proj.settings``)."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(settings, "SETTINGS_MODULE", "")
    head, _, _ = str(module or "").partition(".")
    return head if head and "." in str(module) else None


def celery_app_fix() -> str:
    """What to do when the fallback app is in use, as Celery's "First steps with Django"
    sets it up: the project's ``celery.py`` imported by its package's ``__init__.py``."""
    project = _project_package()
    line = "`from .celery import app as celery_app`"
    if project is None:
        return (f"Add {line} to your project package's __init__.py, so every process that "
                "loads your settings makes the project's Celery app")
    try:
        has_celery = find_spec(f"{project}.celery") is not None
    except (ImportError, ValueError):
        has_celery = False
    where = f"{project}/__init__.py"
    if has_celery:
        return (f"Add {line} to {where}, so every process that loads {project}'s settings "
                "makes the project's Celery app")
    return (f"Make the project's Celery app in {project}/celery.py (Celery's \"First steps "
            f"with Django\") and add {line} to {where}")


def app_module(app: Any) -> str:
    """What ``celery -A`` takes for ``app``: the package that imports it as ``celery_app``,
    else the module that holds it as ``app``, else the project's package."""
    holders: list[tuple[int, str]] = []
    for name, module in list(sys.modules.items()):
        found = vars(module) if module is not None and hasattr(module, "__dict__") else {}
        if found.get("celery_app") is app:
            holders.append((0, name))
        elif found.get("app") is app:
            holders.append((1, name.removesuffix(".celery")))
    if holders:
        return min(holders)[1]
    return _project_package() or "yourproject"


def check_celery_app(app: Any) -> list[Finding]:
    if is_fallback_app(app):
        return [Finding(
            FAIL, "celery app",
            f"this process uses Celery's fallback app ({FALLBACK_APP_NAME!r}, broker "
            f"{store.broker_uri()}), not the project's: mail is queued where no worker of "
            "the project looks", celery_app_fix())]
    return [Finding(OK, "celery app", f"the project's app {app.main!r} "
                    f"(celery -A {app_module(app)}), not Celery's fallback")]


# --- broker, shared state, workers --------------------------------------------------------------

def check_broker(app: Any, timeout: float) -> list[Finding]:
    uri = store.broker_uri()
    if store.broker_scheme() == "memory":
        return [Finding(FAIL, "broker", f"{uri}: tasks stay inside each process, where no "
                        "worker sees them", "set CELERY_BROKER_URL to Redis or RabbitMQ")]
    bounded = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    try:
        with app.connection_for_write(connect_timeout=timeout,
                                      transport_options=bounded) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                         timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any transport's error is the finding
        return [Finding(FAIL, "broker", f"{uri} does not answer: {exc}",
                        "start the broker, or correct CELERY_BROKER_URL (and its password)")]
    if is_fallback_app(app):
        return [Finding(WARN, "broker", f"{uri} answers, but it is Celery's fallback app's "
                        "broker, not the project's CELERY_BROKER_URL", "see the celery app line")]
    return [Finding(OK, "broker", f"{uri} answers")]


def check_shared_state(timeout: float) -> list[Finding]:
    url = store.redis_url()
    if url is None:
        return [Finding(
            WARN, "shared state",
            f"no shared-state Redis: the broker is {store.broker_scheme() or 'unset'} and "
            "SEACUCUMBER_REDIS_URL is unset, so no shared send rate (each worker sends as "
            "fast as SES throttling lets it), no send log (a redelivered task can send twice), "
            "no worker heartbeats", "set SEACUCUMBER_REDIS_URL to a Redis every worker and "
            "web process reaches")]
    shown = store.maybe_sanitized(url)
    try:
        client = store.redis_client(timeout=timeout)
        client.ping()
        shown += sentinel_master(url, client)
    except Exception as exc:  # noqa: BLE001 - redis-py's, Sentinel's and the socket's errors
        return [Finding(FAIL, "shared state", f"Redis {shown} does not answer: {exc}",
                        "start that Redis, or correct SEACUCUMBER_REDIS_URL (or "
                        "CELERY_BROKER_URL, when the broker is that Redis)"
                        + (" and SEACUCUMBER_REDIS_SENTINEL" if store.is_sentinel(url) else ""))]
    return [Finding(OK, "shared state", f"Redis {shown} answers")]


def sentinel_master(url: str, client: Any) -> str:
    """For a ``sentinel://`` shared state, which master the sentinels name now (a failover
    moves it); else nothing."""
    if not store.is_sentinel(url):
        return ""
    host, port = client.connection_pool.get_master_address()
    name = store.sentinel_options(url)["master_name"]
    return f" (Sentinel master {name!r}, now {host}:{port})"


def check_workers(app: Any) -> list[Finding]:
    queues = workers.mail_queues()
    command = f"celery -A {app_module(app)} worker -Q {','.join(queues)}"
    live = workers.consumers()
    if live is None:
        return [Finding(WARN, "workers", "live workers cannot be seen: their heartbeats are "
                        "kept in the shared-state Redis, and there is none",
                        f"set SEACUCUMBER_REDIS_URL; meanwhile check by hand with "
                        f"`celery -A {app_module(app)} inspect active_queues`")]
    found = []
    for queue, senders in queues.items():
        who = ", ".join(senders)
        consumers = live.get(queue, [])
        if consumers:
            found.append(Finding(OK, "workers", f"queue {queue!r} ({who}): consumed by "
                                 f"{', '.join(consumers)}"))
        else:
            found.append(Finding(
                FAIL, "workers", f"queue {queue!r} ({who}): no live worker consumes it, so "
                "mail sent there waits unsent",
                f"start workers that consume every mail queue: {command} (or without -Q)"))
    return found


# --- SES: region, credentials, account, senders -------------------------------------------------

def ses_regions() -> set[str]:
    """Every region botocore's endpoint data lists for SES, in every partition."""
    session = ses_clients.session()
    return {region for partition in session.get_available_partitions()
            for region in session.get_available_regions("ses", partition_name=partition)}


def _custom_endpoint(endpoint: str | None) -> bool:
    host = urlsplit(endpoint or "").hostname or ""
    return bool(host) and not host.endswith(_AWS_HOST_SUFFIXES)


def _region_finding(label: str, region: str | None, endpoint: str | None, known: set[str],
                    setting: str = "AWS_SES_REGION_NAME") -> Finding:
    if not region:
        return Finding(FAIL, "region", f"{label}: no AWS region found",
                       "set AWS_SES_REGION_NAME (or AWS_DEFAULT_REGION where the workers run)")
    at = f", SES at {endpoint}" if _custom_endpoint(endpoint) else ""
    if region in known:
        return Finding(OK, "region", f"{label}: {region}{at}")
    closest = difflib.get_close_matches(region, sorted(known), n=1)
    meant = f" (did you mean {closest[0]!r}?)" if closest else ""
    if at:
        # an emulator takes any region; a VPC endpoint needs the real one to sign with
        return Finding(WARN, "region", f"{label}: {region!r} is no SES region{meant}; "
                       f"SES at {endpoint} decides whether it will do",
                       "fine for an emulator; a VPC or FIPS endpoint needs the real region")
    return Finding(FAIL, "region", f"{label}: {region!r} is no SES region{meant}",
                   f"set {setting} to {closest[0]!r}" if closest
                   else f"set {setting} to an SES region (us-east-1, eu-west-1, ...)")


def check_region() -> list[Finding]:
    """The region as the worker's SES client resolves it (settings, then boto3's chain), and
    each mailer's own; the endpoint the client would call decides FAIL or WARN."""
    known = ses_regions()
    region = ses_clients.session().region_name
    if not region:  # boto3 would refuse to make the client: say why instead
        return [_region_finding("SES client", None, None, known)]
    client = ses_clients.client()
    found = [_region_finding("SES client", region, client.meta.endpoint_url, known)]
    for alias, options in mailer_options().items():
        if options.get("region") or options.get("endpoint_url"):
            found.append(_region_finding(
                f"mailer {alias!r}", str(options.get("region") or region),
                str(options.get("endpoint_url") or client.meta.endpoint_url), known,
                f"MAILERS[{alias!r}]['OPTIONS']['region']"))
    return found


def check_credentials() -> list[Finding]:
    credentials = ses_clients.session().get_credentials()
    if credentials is None:
        return [Finding(FAIL, "credentials", "no AWS credentials found",
                        "set AWS_SES_ACCESS_KEY_ID and AWS_SES_SECRET_ACCESS_KEY, or give "
                        "boto3 credentials (environment, ~/.aws, an instance role)")]
    key = str(credentials.access_key or "")
    return [Finding(OK, "credentials", f"found ({credentials.method}, access key "
                    f"...{key[-4:]})")]


def _denied(exc: OperatorError) -> bool:
    """Whether SES answered AccessDenied: ``ses_call`` raises its one line ``from None``,
    which keeps the ``ClientError`` as the context."""
    context = exc.__context__
    return isinstance(context, ClientError) and error_info(context).access_denied


def check_account() -> list[Finding]:
    region = ses_clients.client("sesv2").meta.region_name
    try:
        state = usage.fetch_account_state()
    except OperatorError as exc:
        if _denied(exc):
            return [Finding(WARN, "account", f"{region}: state not read: {exc}",
                            "allow ses:GetAccount to see the sandbox and enforcement status")]
        return [Finding(FAIL, "account", f"{region}: {exc}",
                        "SES must answer from this host: check the region, endpoint and "
                        "network")]
    found: list[tuple[str, str, str]] = []
    if state.sending_enabled is False:
        found.append((FAIL, "sending DISABLED (GetAccount SendingEnabled false)",
                      "see the SES console's account dashboard: sending must be resumed"))
    if state.enforcement_status == "SHUTDOWN":
        found.append((FAIL, "enforcement status SHUTDOWN: SES stopped this account's sending",
                      "contact AWS Support (SES console, Reputation metrics)"))
    elif state.enforcement_status == "PROBATION":
        found.append((WARN, "enforcement status PROBATION: SES is reviewing the account",
                      "bring bounce and complaint rates down (manage.py ses_usage)"))
    if state.sandbox:
        found.append((WARN, f"in the sandbox: {usage.SANDBOX_MEANS}",
                      "request production access in the SES console"))
    if not found:
        return [Finding(OK, "account", f"{region}: production access, sending enabled, "
                        f"enforcement status {state.enforcement_status or 'unknown'}")]
    worst = max((status for status, _, _ in found), key=_RANK.__getitem__)
    return [Finding(worst, "account", f"{region}: " + "; ".join(text for _, text, _ in found),
                    " ".join(f"{fix}." for _, _, fix in found).rstrip("."))]


def mailer_options() -> dict[str, dict[str, Any]]:
    """Each Django 6.1 ``MAILERS`` entry that sends with Sea Cucumber -> its ``OPTIONS``."""
    mailers = getattr(settings, "MAILERS", None)
    found: dict[str, dict[str, Any]] = {}
    for alias, entry in (mailers.items() if isinstance(mailers, dict) else ()):
        if isinstance(entry, dict) and str(entry.get("BACKEND", "")).startswith("seacucumber."):
            options = entry.get("OPTIONS")
            found[str(alias)] = options if isinstance(options, dict) else {}
    return found


def senders() -> dict[str, list[str]]:
    """Each sender address SES must accept -> the settings and mailers that name it."""
    named: dict[str, list[str]] = {}
    for name in ("DEFAULT_FROM_EMAIL", "SERVER_EMAIL"):
        named.setdefault(str(getattr(settings, name, "") or ""), []).append(name)
    if conf.AWS_SES_RETURN_PATH:
        named.setdefault(str(conf.AWS_SES_RETURN_PATH), []).append("AWS_SES_RETURN_PATH")
    for alias, options in mailer_options().items():
        if options.get("return_path"):
            named.setdefault(str(options["return_path"]), []).append(
                f"mailer {alias!r} return_path")
    return named


def _sender_finding(value: str, named: list[str], verified: dict[str, str],
                    region: str) -> Finding:
    names = ", ".join(named)
    try:
        address = bare_address(value, names) if value else ""
    except InvalidMessage as exc:
        return Finding(FAIL, "sender", f"{names}: {exc}", f"set {names} to a plain address")
    domain = address.rpartition("@")[2].lower()
    if "." not in domain:
        return Finding(FAIL, "sender", f"{value!r} ({names}) has no real domain: SES refuses "
                       "mail from it", f"set {names} to an address of your verified domain")
    if verified.get(domain) == "success":
        return Finding(OK, "sender", f"{address} ({names}): domain {domain} verified")
    if verified.get(address.lower()) == "success":
        return Finding(OK, "sender", f"{address} ({names}): address verified")
    state = verified.get(domain) or verified.get(address.lower()) or "not an identity"
    return Finding(FAIL, "sender", f"{address} ({names}): not verified in {region} "
                   f"({state}): SES refuses mail from it",
                   f"manage.py ses_address verify {domain} and publish the DNS records it "
                   f"prints (or verify the address alone: manage.py ses_address verify "
                   f"{address})")


def check_senders() -> list[Finding]:
    verified = {identity.name.lower(): identity.status
                for identity in identities.list_identities()}
    region = identities.region()
    return [_sender_finding(value, named, verified, region)
            for value, named in senders().items()]


# --- events, system checks ----------------------------------------------------------------------

def webhook_path() -> str | None:
    """The event webhook's path, or None when ``seacucumber.urls`` is not routed (or there
    is no URLconf at all: a worker-only settings module)."""
    try:
        return reverse("seacucumber:events")
    except (NoReverseMatch, ImproperlyConfigured, AttributeError, ImportError):
        return None


def check_events() -> list[Finding]:
    path, topics = webhook_path(), list(conf.SEACUCUMBER_EVENT_TOPIC_ARNS or ())
    problems = []
    if path is None:
        problems.append("the event webhook is not routed (seacucumber.urls)")
    if not topics:
        problems.append("SEACUCUMBER_EVENT_TOPIC_ARNS is empty")
    if problems:
        return [Finding(WARN, "events", f"{' and '.join(problems)}: bounces and complaints "
                        "would not be seen, nor bouncing addresses suppressed",
                        "add path('ses/', include('seacucumber.urls')) to your URLconf, list "
                        "your SNS topics' ARNs in SEACUCUMBER_EVENT_TOPIC_ARNS and subscribe "
                        "the webhook's https URL to them")]
    if not conf.SEACUCUMBER_VERIFY_EVENT_SIGNATURES:
        return [Finding(WARN, "events", f"webhook at {path}: SNS signatures are not verified, "
                        "so anyone can post events", "set SEACUCUMBER_VERIFY_EVENT_SIGNATURES "
                        "= True")]
    return [Finding(OK, "events", f"webhook at {path}, {len(topics)} SNS topic(s): "
                    f"{', '.join(topics)}")]


#: System checks whose finding has a line of its own above (celery app, events).
_REPORTED_ABOVE = frozenset({"seacucumber.E040", "seacucumber.W001", "seacucumber.W002"})


def check_system_checks() -> list[Finding]:
    from django.core.checks import ERROR, WARNING, run_checks

    mine = [m for m in run_checks() if str(m.id or "").startswith("seacucumber.")
            and m.level >= WARNING and m.id not in _REPORTED_ABOVE]
    if not mine:
        return [Finding(OK, "system checks", "no Sea Cucumber errors or warnings")]
    status = FAIL if any(m.level >= ERROR for m in mine) else WARN
    return [Finding(status, "system checks", "; ".join(f"{m.id}: {m.msg}" for m in mine),
                    "see manage.py check for each one's hint")]


# --- running them -------------------------------------------------------------------------------

def _bounded(topic: str, check: Callable[[], list[Finding]], app: Any,
             timeout: float) -> Callable[[], list[Finding]]:
    """``check`` started in a thread (with ``app`` current there, as Celery's current app is
    per thread); the returned function waits for it until ``timeout`` from now."""
    outcome: list[Finding] = []

    def target() -> None:
        app.set_current()
        try:
            outcome.extend(check())
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a finding
            outcome.append(Finding(FAIL, topic, f"the check failed: {type(exc).__name__}: "
                                   f"{exc}", "fix what the error names"))

    thread = threading.Thread(target=target, name=f"ses-doctor-{topic}", daemon=True)
    deadline = time.monotonic() + timeout
    thread.start()

    def wait() -> list[Finding]:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            return [Finding(FAIL, topic, f"no answer within {timeout:g} s",
                            "check the network path from this host to it")]
        return outcome

    return wait


def run(timeout: float = DEFAULT_TIMEOUT) -> list[Finding]:
    """Every check, each bounded by ``timeout`` seconds; the lines in the path's order."""
    app = current_app._get_current_object()
    local = [_bounded("celery app", lambda: check_celery_app(app), app, timeout)(),
             _bounded("region", check_region, app, timeout)(),
             _bounded("credentials", check_credentials, app, timeout)()]
    # the SES client's own region (the first line) and the credentials: a mailer's region
    # typo fails that mailer's line, and the account is still read
    ses_ready = not any(f.status == FAIL for f in (*local[1][:1], *local[2]))
    skipped = [Finding(WARN, topic, "not checked: the SES client's region or the credentials "
                       "above failed",
                       "fix those first") for topic in ("account", "sender")]
    network = [_bounded("broker", lambda: check_broker(app, timeout), app, timeout),
               _bounded("shared state", lambda: check_shared_state(timeout), app, timeout),
               _bounded("workers", lambda: check_workers(app), app, timeout),
               *((_bounded("account", check_account, app, timeout),
                  _bounded("sender", check_senders, app, timeout)) if ses_ready else ()),
               _bounded("events", check_events, app, timeout),
               _bounded("system checks", check_system_checks, app, timeout)]
    waited = [wait() for wait in network]
    ordered = [local[0], *waited[:3], local[1], local[2]]
    ordered += waited[3:5] if ses_ready else [[finding] for finding in skipped]
    ordered += waited[-2:]
    return [finding for group in ordered for finding in group]
