"""boto3 clients for SES, one per process and client settings (``seacucumber.clients``).

boto3's own retries are off (``total_max_attempts=1``): the send task retries with backoff
through Celery, and two retry layers would multiply each other. ``AWS_SES_CONFIG`` (a botocore
``Config``, as in django-ses: proxies, timeouts, pool size) is merged over these defaults, so
what it sets wins, retries included. The User-Agent names this package and its version.

A task payload may name the client it is sent with (a mailer's ``region``, ``endpoint_url``,
``profile``); a worker takes only values its own settings name (``untrusted_options``), so a
task written into the broker by hand cannot send the worker's signed request elsewhere, and
the clients a process keeps are at most ``MAX_CLIENTS`` (the least recently used dropped).
The v1 client encodes ``SendRawEmail``'s form once (``encode_form_once``) where botocore
would encode it twice.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any
from urllib.parse import quote_plus

import boto3
import botocore.session
from botocore.config import Config
from botocore.loaders import Loader
from django.conf import settings

from .. import __version__, clients
from ..conf import conf

logger = logging.getLogger(__name__)


def endpoint_url() -> str | None:
    """The SES endpoint from settings, or ``None`` to let boto3 resolve it."""
    url = conf.SEACUCUMBER_ENDPOINT_URL or conf.AWS_SES_REGION_ENDPOINT
    if url and "://" not in url:
        url = f"https://{url}"
    return url or None


def client(service: str | None = None, *, region: str | None = None,
           endpoint: str | None = None, profile: str | None = None) -> Any:
    """The shared boto3 client for ``service`` ("ses" or "sesv2"; default: per USE_SES_V2).
    ``region``, ``endpoint`` and ``profile`` override the settings (a mailer's options)."""
    default_service, default_region, default_endpoint, default_profile, *rest = conf.derived(
        "ses.client_settings", _client_settings)
    service = service or default_service
    region = region or default_region
    endpoint = endpoint or default_endpoint
    profile = profile or default_profile
    key = (service, region, endpoint, profile, *rest)
    cache = clients.shared(("boto3", "ses-clients"), _ClientCache)
    return cache.get(key, lambda: _make_client(service, region, endpoint, profile))


def _client_settings() -> tuple[Any, ...]:
    """The settings that choose and make an SES client: the service, region, endpoint and
    profile by default, then the credentials, timeouts and ``AWS_SES_CONFIG`` (read once
    per task, as ``conf.derived`` keeps it, rather than ten settings at each send)."""
    return ("sesv2" if conf.USE_SES_V2 else "ses", conf.AWS_SES_REGION_NAME, endpoint_url(),
            conf.AWS_SESSION_PROFILE, conf.AWS_SES_ACCESS_KEY_ID,
            conf.AWS_SES_SECRET_ACCESS_KEY, conf.AWS_SES_SESSION_TOKEN,
            conf.SEACUCUMBER_CONNECT_TIMEOUT, conf.SEACUCUMBER_READ_TIMEOUT,
            id(conf.AWS_SES_CONFIG))


#: SES clients one process keeps at most: one per region, endpoint and profile in use.
MAX_CLIENTS = 16


class _ClientCache:
    """The process's SES clients, the least recently used dropped past ``MAX_CLIENTS`` (a
    client holds its models and a connection pool: megabytes). Kept in ``clients``'
    registry, so a forked child starts with an empty one."""

    def __init__(self) -> None:
        self._clients: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = self._clients[key] = make()
                while len(self._clients) > MAX_CLIENTS:
                    self._clients.popitem(last=False)
            else:
                self._clients.move_to_end(key)
            return found

    def __len__(self) -> int:
        return len(self._clients)


#: Payload options that choose the worker's SES client, and the setting that trusts more
#: values of each than the settings' own.
CLIENT_OPTIONS = {"region": "SEACUCUMBER_TRUSTED_REGIONS",
                  "endpoint_url": "SEACUCUMBER_TRUSTED_ENDPOINT_URLS",
                  "profile": "SEACUCUMBER_TRUSTED_PROFILES"}


def trusted_options() -> dict[str, frozenset[str]]:
    """For each of ``CLIENT_OPTIONS``, the values a payload may name: the settings' own
    (``AWS_SES_REGION_NAME``, the endpoint, ``AWS_SESSION_PROFILE``), those of every
    ``MAILERS`` entry's ``OPTIONS`` (Django 6.1), and ``SEACUCUMBER_TRUSTED_REGIONS``,
    ``SEACUCUMBER_TRUSTED_ENDPOINT_URLS``, ``SEACUCUMBER_TRUSTED_PROFILES`` (for options given
    to ``get_connection`` at run time). Read once per worker (``conf.derived``)."""
    return conf.derived("ses.trusted_options", _trusted_options)


def _trusted_options() -> dict[str, frozenset[str]]:
    own = {"region": conf.AWS_SES_REGION_NAME, "endpoint_url": endpoint_url(),
           "profile": conf.AWS_SESSION_PROFILE}
    found: dict[str, set[Any]] = {}
    for name, setting in CLIENT_OPTIONS.items():
        more = getattr(conf, setting) or ()
        found[name] = {own[name], *([more] if isinstance(more, str) else more)}
    mailers = getattr(settings, "MAILERS", None)
    for entry in mailers.values() if isinstance(mailers, Mapping) else ():
        options = entry.get("OPTIONS") if isinstance(entry, Mapping) else None
        if isinstance(options, Mapping):
            for name in CLIENT_OPTIONS:
                found[name].add(options.get(name))
    return {name: frozenset(_normal(name, str(value)) for value in values if value)
            for name, values in found.items()}


def _normal(name: str, value: str) -> str:
    return value.rstrip("/") if name == "endpoint_url" else value


def untrusted_options(options: Mapping[str, Any]) -> str | None:
    """Why a payload's client options (``CLIENT_OPTIONS``) may not be used, or None when each
    is one this worker's settings name (``trusted_options``)."""
    named = [name for name in CLIENT_OPTIONS if options.get(name)]
    if not named:  # the common case: the settings' client
        return None
    trusted = trusted_options()
    for name in named:
        if _normal(name, str(options[name])) not in trusted[name]:
            return (f"the payload's {name} {options[name]!r} is not one this worker's settings "
                    f"or MAILERS name: add it to {CLIENT_OPTIONS[name]} to send with it")
    return None


def client_config() -> Config:
    """The botocore ``Config`` of every SES client: no boto3 retries, the timeouts, a pool
    for a threads worker, this package in the User-Agent, and no client-side parameter
    validation: every argument is built here from a payload checked at ``send_messages``
    (tags against SES's rules included), SES validates them again, and botocore's walk
    over them costs a send a twentieth of its CPU. ``AWS_SES_CONFIG`` is merged over."""
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        parameter_validation=False,
        connect_timeout=conf.SEACUCUMBER_CONNECT_TIMEOUT,
        read_timeout=conf.SEACUCUMBER_READ_TIMEOUT,
        max_pool_connections=64,
        user_agent_extra=f"seacucumber/{__version__}",
    )
    extra = conf.AWS_SES_CONFIG
    return config if extra is None else config.merge(extra)


def session(region_name: str | None = None, profile: str | None = None) -> boto3.session.Session:
    """A boto3 session with the SES credentials (``AWS_SES_ACCESS_KEY_ID`` ..., else the
    ``AWS_SESSION_PROFILE`` profile, else boto3's chain) in ``region_name`` (default:
    ``AWS_SES_REGION_NAME``). The S3 client that fetches received mail is made from one too:
    one set of credentials for the account's SES work. Every session shares one botocore
    data loader (``_shared_loader``)."""
    core = botocore.session.get_session()
    loader = _shared_loader(core)
    core.register_component("data_loader", loader)
    made = boto3.session.Session(
        aws_access_key_id=conf.AWS_SES_ACCESS_KEY_ID,
        aws_secret_access_key=conf.AWS_SES_SECRET_ACCESS_KEY,
        aws_session_token=conf.AWS_SES_SESSION_TOKEN,
        region_name=region_name or conf.AWS_SES_REGION_NAME,
        botocore_session=core,
        profile_name=profile or conf.AWS_SESSION_PROFILE,
    )
    # boto3 adds its own data folder to the loader's search path for every session it makes
    loader.search_paths[:] = dict.fromkeys(loader.search_paths)
    return made


_loader: Loader | None = None


def _shared_loader(core: botocore.session.Session) -> Loader:
    """The process's botocore data loader, which keeps every model it parsed (the service's
    API, endpoints, partitions, rule sets). A session of its own would parse them all again:
    a client then costs 60-100 ms of CPU instead of about 13 ms. It holds parsed JSON and no
    connection, so a forked child (prefork) keeps it: ``warm`` in a worker's parent process
    saves each child the parse. Made by the first session, so ``AWS_DATA_PATH`` holds."""
    global _loader
    if _loader is None:
        _loader = core.get_component("data_loader")
    return _loader


def warm() -> None:
    """Make the SES client a send uses now, so that its models are parsed before a prefork
    worker forks its children (``seacucumber.tasks`` calls this at ``worker_init``). Never
    raises: a client that cannot be made now fails each send with its reason instead."""
    try:
        client()
    except Exception as exc:  # noqa: BLE001 - a bad setting: the sends report it
        logger.warning("SES client not made at worker start: %s", exc)


def _make_client(service: str, region: str | None, endpoint: str | None,
                 profile: str | None) -> Any:
    made = session(region, profile).client(service, endpoint_url=endpoint,
                                           config=client_config())
    if service == "ses":  # last: a handler of the caller's own still sees the form's fields
        made.meta.events.register_last("before-call.ses.SendRawEmail", encode_form_once)
    logger.info("SES client made: %s in %s at %s", service, made.meta.region_name,
                made.meta.endpoint_url)
    return made


#: Text of the base64 alphabet: ``quote_plus`` changes only its ``+``, ``/`` and ``=``.
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=]*")


def _form_quoted(value: str) -> str:
    """``value`` as ``urllib.parse.quote_plus`` quotes it; base64 text (the raw message) by
    three replacements instead of a Python call per character."""
    if _BASE64_TEXT.fullmatch(value):
        return value.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    return quote_plus(value)


def encode_form_once(params: dict[str, Any], **_: Any) -> None:
    """botocore's ``before-call`` handler for v1 ``SendRawEmail``: the request's form
    fields (a dict, as the query protocol leaves them) encoded now, once, to the bytes
    botocore would send.

    Why: botocore encodes a dict body with ``urlencode`` each time the request is prepared:
    twice a send (signing, then sending), quoting the base64 raw message one Python call
    per character: about two fifths of the send task's CPU for a message of 20 KB
    (BENCHMARKS.md, issue 27's fifth round). The bytes are the same: a test compares them
    with botocore's own encoding. A body that is not a dict of text is left to botocore."""
    body = params.get("body")
    if isinstance(body, dict) and all(type(value) is str for value in body.values()):
        params["body"] = "&".join(
            [f"{quote_plus(name)}={_form_quoted(value)}" for name, value in body.items()]
        ).encode()


def s3_region_name() -> str | None:
    """The region of Sea Cucumber's S3 buckets (received mail, claim-checked payloads)."""
    return conf.SEACUCUMBER_S3_REGION_NAME or conf.AWS_SES_REGION_NAME or None


def s3_client() -> Any:
    """The process's shared S3 client, with the SES credentials (``session``), the bucket's
    region (``SEACUCUMBER_S3_REGION_NAME``, else ``AWS_SES_REGION_NAME``) and, for tests,
    ``SEACUCUMBER_S3_ENDPOINT_URL``. boto3's own retries are off, as for SES."""
    key = ("boto3", "s3", s3_region_name(), conf.SEACUCUMBER_S3_ENDPOINT_URL,
           conf.AWS_SES_ACCESS_KEY_ID, conf.AWS_SES_SECRET_ACCESS_KEY,
           conf.AWS_SES_SESSION_TOKEN, conf.SEACUCUMBER_CONNECT_TIMEOUT,
           conf.SEACUCUMBER_READ_TIMEOUT)
    return clients.shared(key, _make_s3_client)


def _make_s3_client() -> Any:
    endpoint = conf.SEACUCUMBER_S3_ENDPOINT_URL or None
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=conf.SEACUCUMBER_CONNECT_TIMEOUT,
        read_timeout=conf.SEACUCUMBER_READ_TIMEOUT,
        # an endpoint of our own (moto, MinIO) serves buckets by path, not by host name
        s3={"addressing_style": "path"} if endpoint else None,
    )
    return session(s3_region_name()).client("s3", endpoint_url=endpoint, config=config)
