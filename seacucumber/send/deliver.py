"""Delivering, the step after a send's attempt began: the raw message DKIM-signed (here, not
in ``send_messages``: signing costs milliseconds the caller must not wait for), the SES call
(``ses.send``, the SES API layer), and an error read once (``ses.errors.classify``). What the
task does with a refusal (fail, retry, hold) is the task's."""

from __future__ import annotations

from .. import dkim
from ..exceptions import SigningError
from ..payload import OutboundSend
from ..ses.errors import Classified, Outcome, classify
from ..ses.send import send


def deliver(outbound: OutboundSend) -> str | Classified:
    """Sign and send ``outbound``: SES's MessageId, or why not (a DKIM key that cannot sign
    is ``DKIMSigningError``, permanent). An error that is not SES's propagates."""
    try:
        raw = dkim.sign(outbound.raw)
    except SigningError as exc:
        return Classified(Outcome.PERMANENT, "DKIMSigningError", str(exc))
    try:
        return send(outbound, raw=raw)
    except Exception as exc:  # noqa: BLE001 - classify() re-raises what is not an SES error
        return classify(exc)
