"""Clients made once per process and shared by its threads: boto3 clients, redis-py clients
and what is built on them (the rate limiter).

Why one registry: both libraries' clients are thread-safe but not fork-safe (a forked child
must not reuse its parent's sockets), and creating a boto3 client is slow (tens of ms) and
not thread-safe. ``shared(key, make)`` returns the client stored under ``key``, making it
once under a lock; a forked child (Celery's prefork pool) starts with an empty registry
(``os.register_at_fork``), so nothing crosses a fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_registry: dict[Hashable, Any] = {}
_lock = threading.RLock()  # re-entrant: a maker may ask for another client (the limiter)


def shared(key: Hashable, make: Callable[[], T]) -> T:
    """The process's object under ``key``, made by ``make()`` on first use."""
    found = _registry.get(key)
    if found is None:
        with _lock:
            found = _registry.get(key)
            if found is None:
                found = _registry[key] = make()
    return found


def clear() -> None:
    """Forget every client (after a fork, and in tests that change the environment)."""
    _registry.clear()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # a thread of the parent may have held it at the fork
    _registry.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
