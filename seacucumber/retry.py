"""Retry delays: exponential backoff with full jitter, capped, within a message's lifetime."""

from __future__ import annotations

import random
import time

from .conf import conf


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0):
    uniform in [0, min(cap, base * 2**attempt)], never below a tenth of a second."""
    base = float(conf.SEACUCUMBER_RETRY_BASE_DELAY)
    cap = float(conf.SEACUCUMBER_RETRY_MAX_DELAY)
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return max(0.1, random.uniform(0, ceiling))


#: SES's daily quota counts the last 24 hours: a message held by a spent quota gets this long
#: past its lifetime, since by then every send that spent the quota has left the window.
QUOTA_WINDOW = 24 * 3600.0


def outlives(created: float, delay: float, extra: float = 0.0) -> bool:
    """Whether a retry ``delay`` seconds from now falls past the message's lifetime
    (``SEACUCUMBER_MESSAGE_LIFETIME`` after ``created``, plus ``extra`` seconds)."""
    return time.time() + delay - created > float(conf.SEACUCUMBER_MESSAGE_LIFETIME) + extra
