"""The Redis that holds state shared by every worker: the account's send rate and the
record of sends already made.

It is ``SEACUCUMBER_REDIS_URL``, or else the Celery broker when the broker is Redis
(Sentinel included). With neither, ``redis_url()`` is ``None`` and the features that need
shared state say so once and fall back (see each feature's docstring).

A ``sentinel://`` URL is read as kombu's Sentinel transport reads the broker's:
``sentinel://[user:password@]host:port[/db]`` for each sentinel, joined by ``;``, the
master's name and the sentinels' own options in ``SEACUCUMBER_REDIS_SENTINEL`` (else the
broker's transport options). The client is redis-py's ``Sentinel.master_for``: it asks the
sentinels for the master on each new connection and drops connections to a master demoted
by a failover, so a failover is a connection error the caller retries, as a restart is.

With ``SEACUCUMBER_REDIS_CLUSTER`` the URL names a node of a Redis Cluster, reached with
redis-py's ``RedisCluster`` (``_connect_cluster``). Every key then starts with the prefix as a
hash tag (``{seacucumber}:...``), so all of them live in one slot: each Lua script, pipeline
and multi-key command touches one slot as a cluster requires, including the outbox scripts,
which name keys from a record's queue. The cost: the shared state lives on one shard (its
replicas for failover), as it does on a single Redis.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis  # redis[hiredis]: a dependency
import redis
from django.core.exceptions import ImproperlyConfigured
from redis.sentinel import Sentinel

from .. import clients
from ..conf import conf

#: Broker URL schemes of kombu's Redis transport; the first two are redis-py URLs too.
REDIS_BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel")


def _broker_scheme() -> tuple[str, str]:
    from celery import current_app

    broker = current_app.conf.broker_url
    broker = broker if isinstance(broker, str) else ""
    return broker.split("://", 1)[0], broker


def broker_scheme() -> str:
    """The Celery broker URL's scheme (``redis``, ``amqp``, ``sqs``, ...)."""
    return _broker_scheme()[0]


def broker_uri() -> str:
    """The broker this process's Celery app publishes to, as kombu names it, its password
    masked: error messages and ``ses_doctor`` show the broker really used, which is not
    ``CELERY_BROKER_URL`` when the app is Celery's fallback."""
    from celery import current_app
    from kombu.utils.url import maybe_sanitize_url

    try:
        return str(current_app.connection_for_write().as_uri())
    except Exception:  # noqa: BLE001 - an unknown transport: the URL as configured
        return str(maybe_sanitize_url(str(current_app.conf.broker_url)))


def broker_is_redis() -> bool:
    """Whether the Celery broker is kombu's Redis transport (Sentinel included)."""
    return _broker_scheme()[0] in REDIS_BROKER_SCHEMES


def redis_url() -> str | None:
    """The shared-state Redis URL, or ``None`` when there is none (read once while the
    settings are held or frozen: the send task asks for it at each step)."""
    return conf.derived("redis_url", _redis_url)


def _redis_url() -> str | None:
    if conf.SEACUCUMBER_REDIS_URL:
        return conf.SEACUCUMBER_REDIS_URL
    if conf.SEACUCUMBER_REDIS_CLUSTER:
        return None  # the broker is never a cluster: system check seacucumber.E013 says so
    scheme, broker = _broker_scheme()
    return broker if scheme in ("redis", "rediss", "sentinel") else None


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names its Redis through Sentinel (``sentinel://``)."""
    return url.startswith("sentinel://")


def key(*parts: str) -> str:
    """A Redis key in Sea Cucumber's namespace: ``seacucumber:<part>:<part>``; on a Redis
    Cluster ``{seacucumber}:<part>:<part>`` (one hash tag: every key in one slot)."""
    return ":".join((conf.kept("key_prefix", _key_prefix), *parts))


def _key_prefix() -> str:
    prefix = conf.SEACUCUMBER_REDIS_PREFIX
    return "{" + prefix + "}" if conf.SEACUCUMBER_REDIS_CLUSTER else prefix


def wire(value: str | float) -> bytes:
    """``value`` as the bytes redis-py sends for it, made once for a value that depends on
    settings alone (a key, a script's fixed argument): redis-py encodes every argument of
    every command, about 3,000 instructions a string (BENCHMARKS.md, issue 27's third
    round), and passes bytes as they are."""
    return (value if isinstance(value, str) else repr(value)).encode()


#: The rate bucket of the settings' own SES client (``buckets``).
DEFAULT_BUCKET = "default"


def bucket_key(bucket: str, *parts: str) -> str:
    """A key of one rate bucket (``buckets``: an SES account and region). The default
    bucket's keys keep the names they had before buckets (``key(*parts)``), so old and new
    workers of a rolling deploy share its rate; another's are ``<prefix>:bucket:<id>:...``."""
    return key(*parts) if bucket == DEFAULT_BUCKET else key("bucket", bucket, *parts)


def redis_client(timeout: float = 10.0) -> redis.Redis:
    """The process's client for the shared-state Redis (one per process, URL and socket
    ``timeout``; redis-py clients are thread-safe). ``RuntimeError`` when no Redis is
    configured. Callers with a deadline (``send_messages``) pass a short ``timeout``."""
    url = redis_url()
    if url is None:
        raise RuntimeError(
            "no shared-state Redis: set SEACUCUMBER_REDIS_URL (or use a Redis broker)"
        )
    if conf.SEACUCUMBER_REDIS_CLUSTER:
        return clients.shared(("redis-cluster", url, timeout),
                              lambda: _connect_cluster(url, timeout))
    return clients.shared(("redis", url, timeout), lambda: _connect(url, timeout))


def _connect(url: str, timeout: float, **options: Any) -> redis.Redis:
    """A new redis-py client for ``url`` with a socket ``timeout`` (connecting takes at most
    5 s of it) and a health check after 30 s idle; ``options`` go to redis-py."""
    if is_sentinel(url):
        pool = sentinel_pool(url, timeout)
        return redis.Redis(connection_pool=pool, **options)
    return redis.Redis.from_url(url, socket_connect_timeout=min(5.0, timeout),
                                socket_timeout=timeout, health_check_interval=30, **options)


def sentinel_pool(url: str, timeout: float) -> redis.ConnectionPool:
    """The connection pool of the master a ``sentinel://`` URL names (redis-py's
    ``Sentinel.master_for``, as kombu's Sentinel transport makes it for the broker: a
    library that follows failovers, rather than addresses of our own to keep current)."""
    sentinels, master = parse_sentinel_url(url)
    options = sentinel_options(url)
    sentinel = Sentinel(
        sentinels, min_other_sentinels=int(options.get("min_other_sentinels", 0)),
        sentinel_kwargs={"socket_connect_timeout": min(5.0, timeout), "socket_timeout": timeout,
                         **(options.get("sentinel_kwargs") or {})})
    client = sentinel.master_for(
        options["master_name"], socket_connect_timeout=min(5.0, timeout),
        socket_timeout=timeout, health_check_interval=30, **master)
    return client.connection_pool


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The sentinels' ``(host, port)`` of a ``sentinel://h1:26379;sentinel://h2:26379/0``
    URL, and the master's ``db``, ``username`` and ``password`` (from the first sentinel
    that gives them, as kombu takes them)."""
    sentinels: list[tuple[str, int]] = []
    master: dict[str, Any] = {}
    for part in filter(None, (piece.strip() for piece in url.split(";"))):
        parsed = urlsplit(part)
        if parsed.scheme != "sentinel" or not parsed.hostname:
            raise ImproperlyConfigured(f"{maybe_sanitized(url)}: each ';'-separated part must "
                                       "be sentinel://[user:password@]host[:port][/db]")
        sentinels.append((parsed.hostname, parsed.port or 26379))
        db = parsed.path.strip("/")
        if db and "db" not in master:
            master["db"] = int(db)
        if parsed.password and "password" not in master:
            master["password"] = unquote(parsed.password)
            if parsed.username:
                master["username"] = unquote(parsed.username)
    return sentinels, master


def sentinel_options(url: str) -> dict[str, Any]:
    """kombu's Sentinel transport options for the shared state (``master_name``,
    ``sentinel_kwargs``, ``min_other_sentinels``): ``SEACUCUMBER_REDIS_SENTINEL``, else the
    broker's ``broker_transport_options`` when ``url`` is the broker's.
    ``ImproperlyConfigured`` without a master name."""
    options = conf.SEACUCUMBER_REDIS_SENTINEL
    if options is None:
        from celery import current_app

        is_broker = url == _broker_scheme()[1]
        options = dict(current_app.conf.broker_transport_options or {}) if is_broker else {}
    if not options.get("master_name"):
        raise ImproperlyConfigured(
            f"the shared-state Redis {maybe_sanitized(url)} is reached through Sentinel: set "
            "SEACUCUMBER_REDIS_SENTINEL = {'master_name': ...} (the name the sentinels "
            "monitor it by)")
    return dict(options)


def maybe_sanitized(url: str) -> str:
    """``url`` with any password masked (kombu's own masking), for messages and logs."""
    from kombu.utils.url import maybe_sanitize_url

    return ";".join(str(maybe_sanitize_url(part)) for part in url.split(";"))


def _connect_cluster(url: str, timeout: float) -> redis.Redis:
    """A redis-py ``RedisCluster`` from a node's ``url`` (it learns the others), with the
    socket timeouts of ``_connect``. Typed as ``redis.Redis``: it answers every command the
    package sends (one slot each: ``key``)."""
    found = redis.RedisCluster.from_url(url, socket_connect_timeout=min(5.0, timeout),
                                        socket_timeout=timeout)
    return cast(redis.Redis, found)


def task_client() -> redis.Redis:
    """The client of the send task's two round trips (``attempt``): a connection each worker
    thread keeps (redis-py's ``single_connection_client``), as a pooled client checks a
    connection out and back in for every command, with a poll of its socket, a quarter of
    the CPU such a round trip costs. Under gevent or eventlet (a greenlet per task) the
    process's pooled client. ``RuntimeError`` when no Redis is configured.

    Through Sentinel, the pooled client too: redis-py (8.2) reconnects a kept connection to
    the address it last had, so after a failover a thread's own connection would knock on
    the dead master for ever; the pool asks the sentinels for each new connection."""
    kept = conf.derived("task_client", _task_client_kept)
    if kept is None:
        return redis_client()
    return clients.per_thread(*kept)


def _task_client_kept() -> tuple[tuple[str, str], Callable[[], redis.Redis]] | None:
    """The per-thread registry's key of the task's own connection and how to make it, or
    None where the process's pooled client serves (see ``task_client``)."""
    url = redis_url()
    if (url is None or is_sentinel(url) or not clients.threads_are_real()
            or conf.SEACUCUMBER_REDIS_CLUSTER):  # a cluster client pools per node
        return None
    return ("redis-task", url), functools.partial(_connect, url, 10.0,
                                                  single_connection_client=True)


#: Compare-and-delete, atomically: drop a key (a claim, a lock) only while it is still ours.
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def delete_if_equal(name: str, value: str) -> bool:
    """Delete key ``name`` if it still holds ``value``; whether it did."""
    return bool(run_script(_DELETE_IF_EQUAL, [name], [value]))


_scripts: dict[str, Any] = {}


def run_script(script: str, keys: Sequence[str | bytes], args: Sequence[Any],
               timeout: float = 10.0, client: redis.Redis | None = None) -> Any:
    """Run a Lua script on the shared-state Redis (``client``, else the process's client
    with that ``timeout``) by its SHA (sent once, on first use; again when a server does not
    know it). ``EVALSHA`` is sent as redis-py's ``Script`` sends it, without the ``Script``
    call's checks for a pipeline (never given here), which cost the send task's two round
    trips 40,000 instructions each (BENCHMARKS.md, issue 27's third round)."""
    client = client or redis_client(timeout)
    found = _scripts.get(script)
    if found is None:
        found = _scripts[script] = client.register_script(script)
    call = _command_of(client)
    try:
        return call("EVALSHA", found.sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:  # a server restarted, or another server
        found.sha = client.script_load(script)
        return call("EVALSHA", found.sha, len(keys), *keys, *args)


def _command_of(client: redis.Redis) -> Callable[..., Any]:
    """How to send one command on ``client``: on a client that holds one connection (redis-py's
    ``single_connection_client``: ``task_client``'s), written and read on that connection
    directly, as ``execute_command`` does but without what redis-py 8 adds to every command
    and this package does not use (observability timers, a check for one rare command), and
    packed in one call (``_packed``): a round trip's own work drops from about 250,000 to
    77,000 instructions (BENCHMARKS.md, issue 27's fourth round). Any other client: through
    ``execute_command``."""
    connection = getattr(client, "connection", None)
    if connection is None or not getattr(client, "_single_connection_client", False):
        return client.execute_command
    return functools.partial(_on_connection, connection,
                             getattr(client, "single_connection_lock", None) or nullcontext())


def _on_connection(connection: Any, lock: AbstractContextManager[Any], *command: Any) -> Any:
    """``command`` sent on ``connection`` and its reply read (a Redis error reply raised as
    redis-py raises it), under the client's ``lock``, retried on connection errors as the
    connection's ``retry`` says, disconnecting between tries, as ``execute_command`` does."""

    def once() -> Any:
        connection.send_packed_command(_packed(connection, command))
        return connection.read_response()

    with lock:
        try:
            return connection.retry.call_with_retry(once, lambda _error: connection.disconnect())
        finally:
            if getattr(connection, "should_reconnect", bool)():  # a maintenance notice
                connection.disconnect()
                connection.connect()


def _packed(connection: Any, command: tuple[Any, ...]) -> Any:
    """``command`` in Redis's protocol: by hiredis's packer given the whole command at once
    (bytes, str as UTF-8, int, float as ``repr``: the bytes redis-py writes), not through
    redis-py's, which passes each argument through a Python generator and its encoder first
    (about 3,000 instructions an argument; ``begin``'s script takes 31). Anything hiredis
    does not take (a bool, say) goes to redis-py's packer, which raises ``DataError``."""
    try:
        return [hiredis.pack_command(command)]
    except TypeError:
        return connection.pack_command(*command)


class LuaScript:
    """A Lua script kept in a ``.lua`` file beside the module that runs it, read once.

    The file names its keys and arguments in its first lines, the one place they are listed:
    ``-- KEYS: send_log rate_tat ...`` and ``-- ARGV: flags claim_token ...``. The script body
    reads them as ``K.send_log`` and ``A.flags`` (tables made from ``KEYS`` and ``ARGV``), and
    callers pass them by name, so no position is written twice. Keys and arguments past the
    named ones (a variable tail, as the reputation guard's pairs) stay ``KEYS[n]``/``ARGV[n]``.
    The first of those is ``FIRST_EXTRA_KEY`` (``FIRST_EXTRA_ARG``) in the script.
    ``fragments`` are Lua functions other modules keep in their own files, put before the body.
    """

    def __init__(self, module_file: str, name: str, fragments: Sequence[str] = ()) -> None:
        text = Path(module_file).with_name(name).read_text(encoding="utf-8")
        self.name = name
        self.keys = _declared(text, "KEYS", name)
        self.args = _declared(text, "ARGV", name)
        tables = [_lua_table("K", "KEYS", self.keys), _lua_table("A", "ARGV", self.args),
                  f"local FIRST_EXTRA_KEY, FIRST_EXTRA_ARG = {len(self.keys) + 1}, "
                  f"{len(self.args) + 1}"]
        self.source = "\n".join([*fragments, *tables, text])
        self._key_template, self._key_slots = _template(name, "KEYS", self.keys, {})
        self._arg_template, self._arg_slots = _template(name, "ARGV", self.args, {})

    def key_list(self, keys: Mapping[str, str | bytes]) -> list[str | bytes]:
        """``keys`` in the script's order; ``ValueError`` naming any missing or unknown."""
        return _filled(self.name, "KEYS", self._key_template, self._key_slots, keys)

    def arg_list(self, args: Mapping[str, Any]) -> list[Any]:
        """``args`` in the script's order; ``ValueError`` naming any missing or unknown."""
        return _filled(self.name, "ARGV", self._arg_template, self._arg_slots, args)

    def run(self, keys: Mapping[str, str | bytes], args: Mapping[str, Any],
            extra_keys: Sequence[str] = (), extra_args: Sequence[Any] = (),
            client: redis.Redis | None = None, timeout: float = 10.0) -> Any:
        """Run the script with its named ``keys`` and ``args`` (then any ``extra_keys`` and
        ``extra_args``), as ``run_script`` does: by its SHA, sent once."""
        return run_script(self.source, [*self.key_list(keys), *extra_keys],
                          [*self.arg_list(args), *extra_args], timeout, client)

    def bound(self, keys: Mapping[str, str | bytes], args: Mapping[str, Any]) -> BoundScript:
        """The script with these ``keys`` and ``args`` given once (those that depend on
        settings alone): its ``run`` takes the rest."""
        return BoundScript(self, keys, args)


class BoundScript:
    """A ``LuaScript`` with some of its keys and arguments given once, kept in the script's
    order: ``run`` takes the others by name, as ``LuaScript.run`` takes them all, and puts
    each in its place, rather than ordering a send's thirty names at every send."""

    def __init__(self, script: LuaScript, keys: Mapping[str, str | bytes],
                 args: Mapping[str, Any]) -> None:
        self.script = script
        self._keys, self._key_slots = _template(script.name, "KEYS", script.keys, keys)
        self._args, self._arg_slots = _template(script.name, "ARGV", script.args, args)

    def run(self, keys: Mapping[str, str | bytes], args: Mapping[str, Any],
            extra_keys: Sequence[str] = (), extra_args: Sequence[Any] = (),
            client: redis.Redis | None = None, timeout: float = 10.0) -> Any:
        """Run the script with the rest of its named ``keys`` and ``args`` (``ValueError``
        naming any missing or unknown), then any ``extra_keys`` and ``extra_args``."""
        name = self.script.name
        return run_script(
            self.script.source,
            [*_filled(name, "KEYS", self._keys, self._key_slots, keys), *extra_keys],
            [*_filled(name, "ARGV", self._args, self._arg_slots, args), *extra_args],
            timeout, client)


def _template(script: str, what: str, names: Sequence[str], given: Mapping[str, Any]
              ) -> tuple[list[Any], tuple[tuple[str, int], ...]]:
    """The script's list of ``what`` with the ``given`` ones in place, and the (name,
    position) of each left to give."""
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"{script}: {what} it does not take: {', '.join(unknown)}")
    slots = tuple((name, n) for n, name in enumerate(names) if name not in given)
    return [given.get(name) for name in names], slots


def _filled(script: str, what: str, template: list[Any], slots: tuple[tuple[str, int], ...],
            given: Mapping[str, Any]) -> list[Any]:
    """``template`` with each ``given`` in its slot; ``ValueError`` naming any missing or
    unknown (``LuaScript`` fills all its slots so, ``BoundScript`` those left to give)."""
    found = template.copy()
    try:
        for name, position in slots:
            found[position] = given[name]
    except KeyError as exc:
        raise ValueError(f"{script}: {what} {exc.args[0]!r} not given") from None
    if len(given) != len(slots):
        unknown = sorted(set(given) - {name for name, _ in slots})
        raise ValueError(f"{script}: {what} it does not take: {', '.join(unknown)}")
    return found


def lua_fragment(module_file: str, name: str) -> str:
    """The text of a Lua fragment (functions other scripts include) beside ``module_file``."""
    return Path(module_file).with_name(name).read_text(encoding="utf-8")


def _declared(text: str, what: str, name: str) -> tuple[str, ...]:
    for line in text.splitlines():
        if line.startswith(f"-- {what}:"):
            return tuple(line.split(":", 1)[1].split())
    raise ValueError(f"{name} does not declare its {what} (a '-- {what}: ...' line)")


def _lua_table(table: str, source: str, names: Sequence[str]) -> str:
    fields = ", ".join(f"{field} = {source}[{n}]" for n, field in enumerate(names, 1))
    return f"local {table} = {{{fields}}}"

