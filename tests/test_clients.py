"""The per-process client registry: one client per key, made once however many threads ask,
and never carried across a fork (a child must not share its parent's sockets)."""

from __future__ import annotations

import os
import threading
import time

from seacucumber import clients


def test_a_client_is_made_once_for_all_threads():
    made = []

    def make() -> object:
        time.sleep(0.05)  # slow, as a boto3 client is: every thread arrives meanwhile
        made.append(object())
        return made[-1]

    key = ("test", "made-once")
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(clients.shared(key, make)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1
    assert got == made * 8


def test_a_maker_may_ask_for_another_client():
    outer = clients.shared(("test", "outer"),
                           lambda: ("wraps", clients.shared(("test", "inner"), object)))
    assert outer[1] is clients.shared(("test", "inner"), object)


def test_a_forked_child_makes_its_own_clients():
    parent_client = clients.shared(("test", "fork"), object)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its registry starts empty
        child_client = clients.shared(("test", "fork"), object)
        os.write(write_end, b"own" if child_client is not parent_client else b"parent's")
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 16) == b"own"
    assert clients.shared(("test", "fork"), object) is parent_client
