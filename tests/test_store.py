"""Which Redis holds shared state."""

import re

import pytest

from seacucumber.shared import store
from tests.conftest import point_app_at


def test_explicit_setting_wins(settings):
    settings.SEACUCUMBER_REDIS_URL = "redis://127.0.0.1:9/3"
    point_app_at("redis://127.0.0.1:8/0", None)
    try:
        assert store.redis_url() == "redis://127.0.0.1:9/3"
    finally:
        point_app_at("memory://", None)


def test_redis_broker_is_used_when_no_setting(settings):
    settings.SEACUCUMBER_REDIS_URL = None
    point_app_at("redis://127.0.0.1:8/0", None)
    try:
        assert store.redis_url() == "redis://127.0.0.1:8/0"
    finally:
        point_app_at("memory://", None)


def test_amqp_broker_without_setting_has_no_shared_state(settings, amqp_url):
    settings.SEACUCUMBER_REDIS_URL = None
    point_app_at(amqp_url, None)
    try:
        assert store.redis_url() is None
    finally:
        point_app_at("memory://", None)


def test_client_talks_to_real_redis(settings, redis_url):
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/5"
    client = store.redis_client()
    client.set(store.key("probe"), "1")
    assert client.get("seacucumber:probe") == b"1"
    assert store.redis_client() is client


def test_the_send_task_keeps_a_connection_per_thread(settings, redis_url):
    """``attempt``'s round trips go over a connection the thread holds (no check-out from
    the pool per command); another thread has its own."""
    import threading

    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/5"
    client = store.task_client()
    assert client is store.task_client() and client is not store.redis_client()
    client.set(store.key("probe-task"), "2")
    assert client.connection is not None  # redis-py's single_connection_client: held
    assert store.redis_client().get(store.key("probe-task")) == b"2"
    others: list[object] = []
    thread = threading.Thread(target=lambda: others.append(store.task_client()))
    thread.start()
    thread.join()
    assert others[0] is not client


def test_a_lua_script_takes_its_keys_and_arguments_by_the_names_its_file_declares(
        settings, redis_url, tmp_path):
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/5"
    (tmp_path / "probe.lua").write_text(
        "-- KEYS: target\n-- ARGV: value\n"
        "redis.call('SET', K.target, A.value)\n"
        "return {redis.call('GET', K.target), KEYS[FIRST_EXTRA_KEY], ARGV[FIRST_EXTRA_ARG]}\n")
    script = store.LuaScript(str(tmp_path / "module.py"), "probe.lua")
    assert (script.keys, script.args) == (("target",), ("value",))
    answer = script.run({"target": store.key("lua-probe")}, {"value": "v1"},
                        ["extra-key"], ["extra-arg"])
    assert answer == [b"v1", b"extra-key", b"extra-arg"]
    with pytest.raises(ValueError, match="ARGV 'value' not given"):
        script.run({"target": store.key("lua-probe")}, {})
    with pytest.raises(ValueError, match="KEYS it does not take: other"):
        script.run({"target": "t", "other": "o"}, {"value": "v"})


def test_a_bound_script_takes_the_rest_of_its_names(settings, redis_url, tmp_path):
    """``LuaScript.bound`` gives some keys and arguments once; ``run`` takes the others by
    name, each put in the place the file declares, with the same refusals as the script's
    own ``run``."""
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/5"
    (tmp_path / "probe.lua").write_text(
        "-- KEYS: first second\n-- ARGV: a b c\n"
        "return {K.first, K.second, A.a, A.b, A.c, ARGV[FIRST_EXTRA_ARG]}\n")
    script = store.LuaScript(str(tmp_path / "module.py"), "probe.lua")
    bound = script.bound({"second": "k2"}, {"a": "1", "c": b"3"})
    whole = script.run({"first": "k1", "second": "k2"}, {"a": "1", "b": 2, "c": b"3"}, [],
                       ["x"])
    assert bound.run({"first": "k1"}, {"b": 2}, [], ["x"]) == whole == \
        [b"k1", b"k2", b"1", b"2", b"3", b"x"]
    assert bound.run({"first": "again"}, {"b": "other"})[:4] == [b"again", b"k2", b"1",
                                                                   b"other"]
    with pytest.raises(ValueError, match="ARGV 'b' not given"):
        bound.run({"first": "k1"}, {})
    with pytest.raises(ValueError, match="ARGV it does not take: a"):
        bound.run({"first": "k1"}, {"a": "twice", "b": 2})
    with pytest.raises(ValueError, match="KEYS it does not take: third"):
        script.bound({"third": "k3"}, {})


def test_a_script_the_server_forgot_is_sent_again(settings, redis_url):
    """``run_script`` sends a script's SHA; a server that lost its script cache (a restart,
    a failover to a replica that never saw it: here ``SCRIPT FLUSH`` on the test's own
    server) answers NOSCRIPT, and the script is loaded again and run, on either client."""
    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/5"
    script = "return {KEYS[1], ARGV[1], ARGV[2]}"
    for client in (None, store.task_client()):
        assert store.run_script(script, ["k"], ["a", 7], client=client) == [b"k", b"a", b"7"]
        store.redis_client().script_flush()
        assert store.run_script(script, ["k2"], ["b", 8], client=client) == [b"k2", b"b", b"8"]
        assert store.redis_client().script_exists(store._scripts[script].sha) == [True]


def test_the_package_scripts_declare_every_name_they_read():
    from seacucumber.send import attempt

    for script in (attempt.BEGIN_SCRIPT, attempt.SETTLE_SCRIPT):
        body = script.source
        read = set(re.findall(r"\bK\.(\w+)", body)) | {f"A.{n}" for n in
                                                      re.findall(r"\bA\.(\w+)", body)}
        declared = set(script.keys) | {f"A.{n}" for n in script.args}
        assert read == declared, script.name


def test_the_task_connection_packs_commands_as_redis_py_does(settings, redis_url):
    """The task's own connection packs a command with hiredis in one call (``_packed``):
    the bytes on the wire are redis-py's own, for every kind of argument the package sends;
    a value neither takes is refused as redis-py refuses it, before anything is sent."""
    import redis

    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/5"
    connection = store.task_client().connection
    command = ("EVALSHA", "f" * 40, 2, b"seacucumber:k", "{seacucumber}:é", 1.5, 0.1 + 0.2,
               -3, 10**20, 1e300, float("inf"), "", b"")
    assert b"".join(store._packed(connection, command)) == \
        b"".join(connection.pack_command(*command))
    for wrong in (True, None, object()):
        with pytest.raises(redis.DataError):
            store._packed(connection, ("SET", "k", wrong))


def test_the_task_connection_is_retried_as_redis_py_retries(settings, redis_url):
    """A script on the task's own connection after the server dropped that connection (a
    restart, an idle timeout: here ``CLIENT KILL``) fails or is retried as redis-py's
    ``execute_command`` would on that connection: by the connection's ``retry`` (none on
    the package's own clients: ``attempt`` retries), and the next command connects again.
    An error the script raises reaches the caller as redis-py raises it."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    settings.SEACUCUMBER_REDIS_URL = f"{redis_url}/5"
    script = "return ARGV[1]"
    retrying = redis.Redis.from_url(f"{redis_url}/5", single_connection_client=True,
                                    retry=Retry(NoBackoff(), 1))
    for client, retried in ((store.task_client(), False), (retrying, True)):
        for call in (lambda c=client: store.run_script(script, [], ["a"], client=c),
                     lambda c=client: c.evalsha(store._scripts[script].sha, 0, "a")):
            assert call() == b"a"
            first = client.client_id()
            assert store.redis_client().client_kill_filter(_id=first) == 1
            if retried:
                assert call() == b"a"
            else:
                with pytest.raises(redis.ConnectionError):
                    call()
                assert call() == b"a"  # connected again
            assert client.client_id() != first
        with pytest.raises(redis.ResponseError, match="boom"):
            store.run_script("return redis.error_reply('boom')", [], [], client=client)
        assert store.run_script(script, [], ["c"], client=client) == b"c"  # still usable
    retrying.close()
