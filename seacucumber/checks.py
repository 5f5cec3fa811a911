"""System checks for the Celery broker as the backend uses it."""

from __future__ import annotations

from typing import Any

from django.core.checks import Warning, register

BROKER_TIMEOUTS = ("socket_connect_timeout", "socket_timeout")


@register()
def check_broker_timeouts(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Warn when a Redis broker has no socket timeouts: kombu then waits on a broker host
    that does not answer for as long as the operating system lets it (minutes), and
    ``send_messages`` with it, whatever ``SEACUCUMBER_ENQUEUE_TIMEOUT`` says."""
    from celery import current_app

    from .shared_state import broker_is_redis

    if not broker_is_redis():
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
def check_global_endpoint(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Warn when ``AWS_SES_GLOBAL_ENDPOINT_ID`` cannot work: it is a v2 parameter, and
    multi-region endpoints are signed with SigV4a, which botocore does only with awscrt."""
    from importlib.util import find_spec

    from .conf import conf

    if not conf.AWS_SES_GLOBAL_ENDPOINT_ID:
        return []
    found = []
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
def check_outbox(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    """Warn when ``SEACUCUMBER_OUTBOX = True`` cannot work: it lives in the shared-state
    Redis."""
    from . import shared_state
    from .conf import conf

    if conf.SEACUCUMBER_OUTBOX is not True or shared_state.redis_url() is not None:
        return []
    return [Warning(
        "SEACUCUMBER_OUTBOX is True but there is no shared-state Redis: tasks the broker "
        "loses are not queued again.",
        hint="Set SEACUCUMBER_REDIS_URL.", id="seacucumber.W007")]
