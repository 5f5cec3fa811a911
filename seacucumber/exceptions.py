"""Every exception Sea Cucumber raises, in one place; all derive from ``SeaCucumberError``.

    SeaCucumberError
    ├── InvalidMessage          send_messages refused a message (also ValueError)
    │   ├── HeaderInjection     a line break in a header (also Django's BadHeaderError)
    │   ├── InvalidMessageOption  a message's own option is bad (also InvalidOption)
    │   └── UnsupportedFeature  a django-anymail attribute SES cannot honour here
    ├── InvalidOption           a backend option with a bad value (also ValueError)
    ├── EnqueueError            the broker did not take a message
    │   └── ClaimCheckError     a large payload could not be stored for its claim check
    ├── MalformedPayload        a task payload our backend did not write
    ├── SendError               SES's code and message
    │   ├── PermanentSendError  the send failed for good
    │   └── TransientSendError  the send is retried
    ├── SendLogUnavailable      the shared-state Redis did not answer the send log
    ├── SigningError            a message could not be DKIM-signed
    ├── ClaimCheckFailed        a claim-checked payload is missing or corrupt (permanent)
    ├── OperatorError           an operator command cannot go on (one line)
    ├── InvalidIdentity         neither an address nor a domain (also ValueError)
    ├── InvalidNotification     an SNS post the webhook refuses (400)
    │   ├── NotAuthentic        its signature, certificate or topic is not SNS's (403)
    │   └── InboundTooLarge     a received mail over an inbound limit (size, parts, depth...)
    ├── SNSUnavailable          SNS's certificate host failed: SNS should retry (503)
    ├── AwaitingSend            an event arrived before its send was recorded
    ├── MailStoreUnavailable    S3 failed to give a received mail: SNS should retry (503)
    ├── MailObjectGone          the S3 object of a received mail is not there (logged, 200)
    └── InvalidUnsubscribeToken an unsubscribe link altered or signed with a retired key (400)
"""

from __future__ import annotations

from django.core.mail.message import BadHeaderError


class SeaCucumberError(Exception):
    """Base class of every Sea Cucumber error."""


class InvalidMessage(SeaCucumberError, ValueError):
    """A message that SES would refuse, caught at ``send_messages`` (size, addresses, headers)."""


class HeaderInjection(InvalidMessage, BadHeaderError):
    """A line break in a header or address: header injection, refused. Views written for
    Django's own backends catch it as ``django.core.mail.BadHeaderError``."""


class InvalidOption(SeaCucumberError, ValueError):
    """A backend option (``SESBackend(**options)``, a ``MAILERS`` entry's ``OPTIONS``) with a
    value SES or the worker could not use; the message names the option."""


class InvalidMessageOption(InvalidMessage, InvalidOption):
    """A message's own option (``message.seacucumber_options``) with a bad value: refused at
    ``send_messages`` like any invalid message (skipped under ``fail_silently``)."""


class UnsupportedFeature(InvalidMessage):
    """A message attribute of django-anymail's (``template_id``, ``track_clicks`` without a
    configuration set, ...) that Sea Cucumber cannot honour, refused at ``send_messages`` as
    anymail's ``AnymailUnsupportedFeature`` is, unless ``SEACUCUMBER_IGNORE_UNSUPPORTED_FEATURES``
    (or anymail's ``IGNORE_UNSUPPORTED_FEATURES``) is on."""


class EnqueueError(SeaCucumberError):
    """The broker could not take a message. ``queued``: messages of the same
    ``send_messages`` call queued before it; ``sends_queued``: sends of this message (groups
    of up to 50 recipients) the broker took before it failed (0 for a one-send message)."""

    queued: int = 0
    sends_queued: int = 0


class ClaimCheckError(EnqueueError):
    """A payload over the claim-check threshold could not be stored (S3 or Redis failed, or
    the store is misconfigured): nothing of the call was queued."""


class ClaimCheckFailed(SeaCucumberError):
    """A worker could not get back a claim-checked payload intact: ``code`` says why
    (``ClaimCheckMissing``: gone or expired; ``ClaimCheckCorrupt``: its sha256 or size
    differs). Permanent: the send fails with it."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class MalformedPayload(SeaCucumberError):
    """A task payload that is not one Sea Cucumber's backend would have written."""


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


class SendLogUnavailable(SeaCucumberError):
    """The shared-state Redis did not answer the send log: the send must wait (transient)."""


class SigningError(SeaCucumberError):
    """A message could not be DKIM-signed (bad settings, or a message dkimpy cannot parse)."""


class OperatorError(SeaCucumberError):
    """An operator command cannot go on; the message is one line for the operator."""


class InvalidIdentity(SeaCucumberError, ValueError):
    """Text that is neither an email address nor a domain name."""


class InvalidNotification(SeaCucumberError):
    """An SNS post the webhook refuses: answer ``status`` (4xx), change nothing."""

    status = 400


class NotAuthentic(InvalidNotification):
    """Not signed by SNS, or from a topic or certificate host we do not trust."""

    status = 403


class SNSUnavailable(SeaCucumberError):
    """SNS's certificate host failed or timed out: answered 503 so SNS delivers again."""


class AwaitingSend(SeaCucumberError):
    """An SES event arrived before the worker recorded the send it is about: answered 503
    so SNS delivers it again later."""


class InboundTooLarge(InvalidNotification):
    """A received mail over an inbound limit (``SEACUCUMBER_INBOUND_MAX_BYTES``, ``_MAX_PARTS``,
    ``_MAX_DEPTH``, ``_MAX_HEADER_BYTES``): refused by the worker with this reason recorded,
    left where SES stored it."""

    status = 413


class MailStoreUnavailable(SeaCucumberError):
    """S3 could not be reached, failed (5xx, throttling, a broken answer) or refused access
    while fetching a received mail: answered 503 so SNS delivers the notification again."""


class MailObjectGone(SeaCucumberError):
    """The S3 object (or bucket) a receipt notification names does not exist: recorded and
    answered 200, since no retry can bring it back."""


class InvalidUnsubscribeToken(SeaCucumberError):
    """An unsubscribe link's token that was altered, signed with another salt, or signed with a
    key no longer in ``SECRET_KEY``/``SECRET_KEY_FALLBACKS``: the view answers 400."""
