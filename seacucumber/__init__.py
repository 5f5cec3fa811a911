"""Sea Cucumber: a Django email backend that sends through Amazon SES from Celery workers."""

from __future__ import annotations

from collections.abc import Iterable

__version__ = "2.0.0.dev0"


def cancel(message_ids: str | Iterable[str], reason: str | None = None) -> bool:
    """Cancel sends that have not reached SES (``message.seacucumber_ids``, or one id): True
    when every one is cancelled, False when any was sent already or is being sent. A
    cancelled send never reaches SES, even with its task queued or retried
    (``seacucumber.send.cancel``). Imported when called: this package's top must stay
    importable before Django's settings are."""
    from .send.cancel import DEFAULT_REASON
    from .send.cancel import cancel as cancel_sends

    return cancel_sends(message_ids, reason or DEFAULT_REASON)
