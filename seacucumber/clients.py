"""Clients made once per process and shared by its threads: boto3 clients, redis-py clients
and what is built on them (the rate limiter).

Why one registry: both libraries' clients are thread-safe but not fork-safe (a forked child
must not reuse its parent's sockets), and creating a boto3 client is slow (tens of ms) and
not thread-safe. ``shared(key, make)`` returns the client stored under ``key``, making it
once under a lock; a forked child (Celery's prefork pool) starts with an empty registry
(``os.register_at_fork``), so nothing crosses a fork. ``per_thread(key, make)`` is the same
for an object each thread keeps for itself (the send task's own Redis connection).
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


def per_thread(key: Hashable, make: Callable[[], T]) -> T:
    """The calling thread's own object under ``key``, made by ``make()`` on its first use
    in that thread (and again after ``clear``)."""
    mine: tuple[int, dict[Hashable, Any]] | None = getattr(_threads, "registry", None)
    if mine is None or mine[0] != _generation:
        mine = _threads.registry = (_generation, {})
    found = mine[1].get(key)
    if found is None:
        found = mine[1][key] = make()
    return found


def threads_are_real() -> bool:
    """Whether threads are the operating system's: not under gevent's or eventlet's monkey
    patching, where ``threading.local`` is per greenlet and Celery starts a greenlet per
    task (an object kept per thread would then be made for every task)."""
    return threading.local.__module__ in ("_thread", "_threading_local")


def clear() -> None:
    """Forget every client (after a fork, and in tests that change the environment); other
    threads drop theirs at their next ``per_thread`` call."""
    global _generation
    _registry.clear()
    _generation += 1


_threads = threading.local()
_generation = 0


def _after_fork_in_child() -> None:
    global _lock, _threads
    _lock = threading.RLock()  # a thread of the parent may have held it at the fork
    _threads = threading.local()  # the forking thread's objects hold the parent's sockets
    clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
