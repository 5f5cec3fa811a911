"""Exceptions Sea Cucumber raises to its callers."""

from __future__ import annotations


class SeaCucumberError(Exception):
    """Base class of every Sea Cucumber error."""


class InvalidMessage(SeaCucumberError, ValueError):
    """A message that SES would refuse, caught at ``send_messages`` (size, addresses, headers)."""


class EnqueueError(SeaCucumberError):
    """The broker could not take a message. ``queued``: messages of the same
    ``send_messages`` call queued before it; ``sends_queued``: sends of this message (groups
    of up to 50 recipients) the broker took before it failed (0 for a one-send message)."""

    queued: int = 0
    sends_queued: int = 0


class SendError(SeaCucumberError):
    """An SES send error, carrying SES's code and message (JSON-safe, for task results)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code, message)  # both in args, so Celery can rebuild it from JSON
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class PermanentSendError(SendError):
    """SES refused the message for good, or its lifetime ran out: the task fails with it."""


class TransientSendError(SendError):
    """SES throttled or failed for now: the task retries with it."""


class MalformedPayload(SeaCucumberError):
    """A task payload that is not one Sea Cucumber's backend would have written."""
