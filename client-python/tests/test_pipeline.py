"""Pipelines, transactions, WATCH, scripts and functions."""

import pytest

import vshm


def test_pipeline(any_client, keys):
    c = any_client
    a, b = keys("a"), keys("b")
    with c.pipeline() as pipe:
        r = pipe.set(a, 1).incr(a).get(a).hset(b, mapping={"f": "v"}).hgetall(b).execute()
    assert r == [True, 2, b"2", 1, {b"f": b"v"}]
    assert c.pipeline().execute() == []


def test_pipeline_errors_in_place(any_client, keys):
    c = any_client
    k = keys("s")
    pipe = c.pipeline()
    pipe.set(k, "x").lpush(k, 1).get(k)
    with pytest.raises(vshm.ResponseError):
        pipe.execute()
    pipe.set(k, "y").lpush(k, 1).get(k)
    r = pipe.execute(raise_on_error=False)
    assert r[0] is True and r[2] == b"y"
    assert isinstance(r[1], vshm.ResponseError) and r[1].code == "WRONGTYPE"


def test_transaction(any_client, keys):
    c = any_client
    a = keys("a")
    pipe = c.pipeline(transaction=True)
    pipe.set(a, 10)
    pipe.incrby(a, 5)
    assert pipe.execute() == [True, 15]


def test_watch_error(any_client, keys):
    c = any_client
    k = keys("w")
    c.set(k, 1)
    with c.pipeline() as pipe:
        pipe.watch(k)
        assert pipe.get(k) == b"1"  # immediate mode after watch
        pipe.multi()
        pipe.set(k, 2)
        assert pipe.execute() == [True]
    assert c.get(k) == b"2"


def test_watch_detects_a_change(any_client, make_client, keys):
    c = any_client
    k, other = keys("w"), keys("other")
    c.set(k, 1)
    pipe = c.pipeline()
    pipe.watch(k, keys("missing"))
    assert pipe.get(k) == b"1"
    c.set(k, 5)  # changed by someone else between watch and execute
    pipe.multi()
    pipe.set(k, 2)
    pipe.set(other, "x")
    with pytest.raises(vshm.WatchError):
        pipe.execute()
    assert isinstance(vshm.WatchError("x"), vshm.VshmError)
    assert c.get(k) == b"5" and c.get(other) is None  # nothing ran
    # a watched key that appears counts as changed too
    pipe.watch(keys("missing"))
    c.set(keys("missing"), 1)
    pipe.multi()
    pipe.set(other, "y")
    with pytest.raises(vshm.WatchError):
        pipe.execute()
    # unchanged: runs, error replies in place, other commands ran
    pipe.watch(k)
    pipe.multi()
    pipe.incr(k).lpush(k, 1).get(k)
    r = pipe.execute(raise_on_error=False)
    assert r[0] == 6 and isinstance(r[1], vshm.ResponseError) and r[2] == b"6"


def test_transaction_helper(client, keys):
    k = keys("t")
    client.set(k, 1)

    def bump(pipe):
        v = int(pipe.get(k))
        pipe.multi()
        pipe.set(k, v + 1)

    assert client.transaction(bump, k) == [True]
    assert client.get(k) == b"2"


def test_multi_rules(client, keys):
    pipe = client.pipeline()
    pipe.set(keys("x"), 1)
    with pytest.raises(vshm.VshmError):
        pipe.multi()
    pipe.reset()
    pipe.multi()
    with pytest.raises(vshm.VshmError):
        pipe.multi()


def test_register_script(any_client, keys):
    c = any_client
    k = keys("sc")
    script = c.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert script(keys=[k], args=[5]) == 5
    assert script(keys=[k], args=[2]) == 7
    c.script_flush()  # the script op reloads it on NOSCRIPT
    assert script([k], [1]) == 8
    pipe = c.pipeline()
    script([k], [1], client=pipe)
    pipe.get(k)
    assert pipe.execute() == [9, b"9"]


def test_eval_and_evalsha(client, keys):
    k = keys("e")
    assert client.eval("return {KEYS[1], ARGV[1]}", 1, k, "a") == [k.encode(), b"a"]
    sha = client.script_load("return 42")
    assert isinstance(sha, str) and len(sha) == 40
    assert client.evalsha(sha, 0) == 42
    assert client.script_exists(sha, "0" * 40) == [True, False]


def test_functions(client, keys):
    lib = "#!lua name=vshmpytest\nredis.register_function('vshmpy_echo', function(keys, args) return args[1] end)"
    assert client.function_load(lib, replace=True) == b"vshmpytest"
    assert client.fcall("vshmpy_echo", 0, "hello") == b"hello"
    assert client.function_delete("vshmpytest") is True


def test_cluster_pipeline_across_slots(make_client, mode):
    c = make_client(mode, "cluster")
    names = [f"xslot:{i}" for i in range(50)]  # spread over the three primaries
    pipe = c.pipeline()
    for n in names:
        pipe.set(n, n)
    for n in names:
        pipe.get(n)
    r = pipe.execute()
    assert r[:50] == [True] * 50 and r[50:] == [n.encode() for n in names]
    tx = c.pipeline(transaction=True)
    a, b = f"xslot:a:{mode}", f"xslot:b:{mode}"
    c.delete(a, b)
    tx.set(a, 1).set(b, 2)  # different slots
    with pytest.raises(vshm.InvalidRequest):
        tx.execute()
    assert c.exists(a, b) == 0  # refused before anything was sent
