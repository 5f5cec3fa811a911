"""SES calls made by operator commands (``ses_address``, ``ses_usage``): one-line errors.

Operator commands must end with one clear line, never a traceback. ``ses_call`` turns what
boto3 raises into ``OperatorError`` with SES's code and message, and for a missing IAM
permission names the action to allow (IAM actions for SES v1 and v2 are ``ses:<Operation>``).
Send errors are not handled here: ``ses.classify`` maps those.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .exceptions import SeaCucumberError

ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException"})


class OperatorError(SeaCucumberError):
    """An operator command cannot go on; the message is one line for the operator."""


def explain(exc: ClientError) -> str:
    """One line saying what SES refused and, for a missing permission, what to allow."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "Unknown")
    message = " ".join(str(error.get("Message") or "").split())
    operation = exc.operation_name
    if code in ACCESS_DENIED_CODES:
        return (
            f"SES denied {operation} ({code}): allow the IAM action ses:{operation} "
            f"for these credentials. SES said: {message or 'no message'}"
        )
    return f"SES refused {operation}: {code}: {message or 'no message'}"


@contextmanager
def ses_call() -> Iterator[None]:
    """Run SES calls; boto3 errors come out as ``OperatorError`` with a one-line message."""
    try:
        yield
    except ClientError as exc:
        raise OperatorError(explain(exc)) from None
    except NoCredentialsError:
        raise OperatorError(
            "no AWS credentials found: set AWS_SES_ACCESS_KEY_ID and AWS_SES_SECRET_ACCESS_KEY, "
            "or give boto3 credentials (environment, ~/.aws, an instance role)") from None
    except BotoCoreError as exc:
        raise OperatorError(f"cannot reach SES: {exc}") from None
