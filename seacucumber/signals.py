"""Signals Sea Cucumber sends. Receivers run in the process that sends them (the worker for
send outcomes)."""

from django.dispatch import Signal

#: A message was accepted by SES. Arguments: ``message_id`` (ours), ``ses_message_id``,
#: ``sender_address`` (envelope sender), ``recipients``.
message_sent = Signal()

#: A message ended failed. Arguments: ``message_id`` (ours), ``code`` (SES's error code or
#: our own), ``reason``, ``sender_address``, ``recipients`` (the last two may be None for a payload
#: that could not be read).
message_failed = Signal()
