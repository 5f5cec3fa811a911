"""The per-process client registry: one client per key, made once however many threads ask,
and never carried across a fork (a child must not share its parent's sockets); and the
botocore models every SES session shares, which do cross a fork."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from botocore.loaders import JSONFileLoader

from seacucumber import clients
from seacucumber.ses import clients as ses_clients


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
    """Neither the process's clients nor the forking thread's own cross a fork."""
    parent_client = clients.shared(("test", "fork"), object)
    parent_object = clients.per_thread(("test", "fork-thread"), object)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its registries start empty
        fresh = (clients.shared(("test", "fork"), object) is not parent_client
                 and clients.per_thread(("test", "fork-thread"), object) is not parent_object)
        os.write(write_end, b"own" if fresh else b"parent's")
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 16) == b"own"
    assert clients.shared(("test", "fork"), object) is parent_client


def test_a_thread_keeps_its_own_object_until_the_registry_is_cleared():
    key = ("test", "per-thread")
    mine = clients.per_thread(key, object)
    assert clients.per_thread(key, object) is mine
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(clients.per_thread(key, object)))
    thread.start()
    thread.join()
    assert other and other[0] is not mine
    clients.clear()
    assert clients.per_thread(key, object) is not mine


def test_green_threads_are_not_real_threads():
    """Under gevent's monkey patching (Celery's gevent pool) ``threading.local`` is per
    greenlet, and the pool starts one per task: nothing is kept per thread there."""
    assert clients.threads_are_real()
    code = ("from gevent import monkey; monkey.patch_all()\n"
            "from seacucumber import clients\n"
            "print(clients.threads_are_real())")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=60)
    assert found.stdout.strip() == "False"


def test_every_ses_session_shares_one_data_loader_whose_search_path_holds():
    """boto3 adds its data folder to the loader for each session: the path must not grow."""
    first, second, third = ses_clients.session(), ses_clients.session(), ses_clients.session()
    loader = first._session.get_component("data_loader")
    assert second._session.get_component("data_loader") is loader
    assert third._session.get_component("data_loader") is loader
    assert len(loader.search_paths) == len(set(loader.search_paths))


def test_a_forked_child_makes_its_ses_client_from_the_models_its_parent_parsed():
    """What ``warm`` at worker_init buys a prefork child: no model file read again."""
    clients.clear()
    ses_clients.warm()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a client of its own, from the parsed models
        try:
            files: list[str] = []
            real_load_file = JSONFileLoader.load_file
            JSONFileLoader.load_file = (  # type: ignore[method-assign]  # this child only
                lambda self, path: files.append(path) or real_load_file(self, path))
            fresh = ses_clients.client()
            os.write(write_end,
                     f"{len(files)} {fresh.meta.service_model.service_name}".encode())
        finally:  # never back into pytest in the child, whatever happened
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 64).decode() == "0 ses"


def test_warm_logs_a_client_it_cannot_make_and_goes_on(settings, caplog):
    clients.clear()
    settings.AWS_SES_REGION_NAME = "not a region!"
    ses_clients.warm()
    assert "SES client not made at worker start" in caplog.text
    assert "not a region!" in caplog.text
