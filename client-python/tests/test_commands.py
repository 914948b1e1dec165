"""Command methods and their redis-py return types, against real servers (standalone and
cluster, in-process and through vshmd)."""

import datetime

import pytest

import vshm


def test_strings_and_counters(any_client, keys):
    c = any_client
    k = keys("s")
    assert c.set(k, "v") is True
    assert c.get(k) == b"v"
    assert c.set(k, "w", nx=True) is None
    assert c.set(k, "w", xx=True, get=True) == b"v"
    assert c.set(k, b"bin\x00ary", ex=datetime.timedelta(seconds=100)) is True
    assert c.get(k) == b"bin\x00ary"
    assert 0 < c.ttl(k) <= 100
    assert c.strlen(k) == 7
    assert c.append(k, "!") == 8
    assert c.getrange(k, 0, 2) == b"bin"
    assert c.get(keys("missing")) is None
    n = keys("n")
    assert c.incr(n) == 1
    assert c.incrby(n, 10) == 11
    assert c.decr(n, 2) == 9
    assert c.incrbyfloat(n, 0.5) == 9.5
    assert c.mset({keys("a"): 1, keys("b"): 2.5}) is True
    assert c.mget([keys("a"), keys("b"), keys("missing")]) == [b"1", b"2.5", None]
    assert c.setnx(keys("a"), "x") is False
    assert c.getdel(keys("a")) == b"1"
    assert c[keys("b")] == b"2.5"


def test_keys_and_expiry(any_client, keys):
    c = any_client
    a, b = keys("a"), keys("b")
    c.set(a, 1)
    assert c.exists(a, b) == 1
    assert c.expire(a, 100) is True
    assert c.expire(b, 100) is False
    assert c.persist(a) is True
    assert c.ttl(a) == -1
    assert c.pttl(b) == -2
    assert c.type(a) == b"string"
    assert c.rename(a, b) is True
    assert c.renamenx(b, a) is True
    assert c.delete(a, b) == 1
    assert c.exists(a) == 0


def test_hashes(any_client, keys):
    c = any_client
    h = keys("h")
    assert c.hset(h, "f1", "v1") == 1
    assert c.hset(h, mapping={"f2": b"\x00", "f3": 3}) == 2
    assert c.hgetall(h) == {b"f1": b"v1", b"f2": b"\x00", b"f3": b"3"}
    assert c.hget(h, "f3") == b"3"
    assert c.hmget(h, ["f1", "nope"]) == [b"v1", None]
    assert c.hexists(h, "f1") is True
    assert c.hincrby(h, "f3", 2) == 5
    assert c.hincrbyfloat(h, "f3", 0.5) == 5.5
    assert sorted(c.hkeys(h)) == [b"f1", b"f2", b"f3"]
    assert c.hlen(h) == 3
    assert c.hdel(h, "f1", "nope") == 1
    assert c.hgetall(keys("none")) == {}
    assert dict(c.hscan_iter(h)) == {b"f2": b"\x00", b"f3": b"5.5"}


def test_lists_and_blocking(any_client, keys):
    c = any_client
    lst, dst = keys("l"), keys("d")
    assert c.rpush(lst, "a", "b", "c") == 3
    assert c.lpush(lst, "z") == 4
    assert c.lrange(lst, 0, -1) == [b"z", b"a", b"b", b"c"]
    assert c.lpop(lst) == b"z"
    assert c.rpop(lst, 2) == [b"c", b"b"]
    assert c.blpop([lst], timeout=1) == (lst.encode(), b"a")
    assert c.blpop(lst, timeout=0.1) is None
    c.rpush(lst, "x")
    assert c.blmove(lst, dst, 1, "LEFT", "RIGHT") == b"x"
    assert c.brpop([keys("empty"), dst], timeout=1) == (dst.encode(), b"x")
    assert c.lmove(keys("empty"), dst) is None
    c.rpush(lst, 1, 2, 3)
    assert c.lindex(lst, 1) == b"2"
    assert c.lset(lst, 1, "two") is True
    assert c.ltrim(lst, 0, 1) is True
    assert c.llen(lst) == 2
    assert c.lpos(lst, "two") == 1


def test_sets(any_client, keys):
    c = any_client
    s, t = keys("s"), keys("t")
    assert c.sadd(s, "a", "b", "c") == 3
    assert c.sadd(t, "b") == 1
    assert c.smembers(s) == {b"a", b"b", b"c"}
    assert c.sismember(s, "a") is True
    assert c.smismember(s, ["a", "x"]) == [True, False]
    assert c.scard(s) == 3
    assert c.sinter([s, t]) == {b"b"}
    assert c.sunion(s, t) == {b"a", b"b", b"c"}
    assert c.sdiff(s, t) == {b"a", b"c"}
    assert c.smembers(keys("none")) == set()
    assert c.srem(s, "a") == 1
    assert sorted(c.sscan_iter(s)) == [b"b", b"c"]


def test_sorted_sets(any_client, keys):
    c = any_client
    z = keys("z")
    assert c.zadd(z, {"a": 1, "b": 2.5, "c": 3}) == 3
    assert c.zadd(z, {"a": 1}, incr=True) == 2.0
    assert c.zscore(z, "b") == 2.5
    assert c.zscore(z, "nope") is None
    assert c.zrange(z, 0, -1) == [b"a", b"b", b"c"]
    assert c.zrange(z, 0, -1, withscores=True) == [(b"a", 2.0), (b"b", 2.5), (b"c", 3.0)]
    assert c.zrange(z, 0, 0, desc=True, withscores=True, score_cast_func=int) == [(b"c", 3)]
    assert c.zrevrange(z, 0, 0, withscores=True) == [(b"c", 3.0)]
    assert c.zrangebyscore(z, 2.2, "+inf", withscores=True) == [(b"b", 2.5), (b"c", 3.0)]
    assert c.zincrby(z, 1, "a") == 3.0
    assert c.zmscore(z, ["a", "nope"]) == [3.0, None]
    assert c.zcard(z) == 3
    assert c.zrank(z, "b") == 0
    assert c.zpopmin(z) == [(b"b", 2.5)]
    assert c.bzpopmax([z], timeout=1) == (z.encode(), b"c", 3.0)
    assert list(c.zscan_iter(z)) == [(b"a", 3.0)]


def test_streams(any_client, keys):
    c = any_client
    s = keys("stream")
    i1 = c.xadd(s, {"f": "v1"}, id="1-0")
    assert i1 == b"1-0"
    c.xadd(s, {"f": "v2", "g": b"\x00"}, id="2-0")
    assert c.xlen(s) == 2
    assert c.xrange(s) == [(b"1-0", {b"f": b"v1"}), (b"2-0", {b"f": b"v2", b"g": b"\x00"})]
    assert c.xrevrange(s, count=1) == [(b"2-0", {b"f": b"v2", b"g": b"\x00"})]
    assert c.xread({s: "1-0"}) == [[s.encode(), [(b"2-0", {b"f": b"v2", b"g": b"\x00"})]]]
    assert c.xread({s: "$"}, block=50) == []
    assert c.xgroup_create(s, "g", id="0") is True
    got = c.xreadgroup("g", "alice", {s: ">"}, count=1)
    assert got == [[s.encode(), [(b"1-0", {b"f": b"v1"})]]]
    pending = c.xpending(s, "g")
    assert pending["pending"] == 1 and pending["consumers"] == [{"name": b"alice", "pending": 1}]
    assert c.xack(s, "g", "1-0") == 1
    assert c.xdel(s, "1-0") == 1
    assert c.xtrim(s, maxlen=0, approximate=False) == 1
    with pytest.raises(vshm.ResponseError) as e:
        c.xgroup_create(s, "g", id="0")
    assert e.value.code == "BUSYGROUP"


def test_server_commands(client):
    assert client.ping() is True
    assert client.echo("hi") == b"hi"
    info = client.info()
    assert isinstance(info, dict) and "redis_version" in info
    assert isinstance(info["connected_clients"], int)
    assert client.info("server")["redis_version"] == info["redis_version"]
    assert isinstance(client.dbsize(), int)
    t = client.time()
    assert isinstance(t, tuple) and t[0] > 1_600_000_000
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}


def test_error_reply(any_client, keys):
    c = any_client
    k = keys("str")
    c.set(k, "x")
    with pytest.raises(vshm.ResponseError) as e:
        c.lpush(k, "y")
    assert e.value.code == "WRONGTYPE"
    assert str(e.value).startswith("WRONGTYPE")
    assert isinstance(e.value, vshm.VshmError) and isinstance(e.value, vshm.RedisError)
    with pytest.raises(vshm.ResponseError):
        c.execute_command("NOSUCHCOMMAND", k)
    assert c.get(k) == b"x"  # the client goes on


def test_decode_responses(make_client, mode, keys):
    c = make_client(mode, "standalone", decode_responses=True)
    k = keys("d")
    c.set(k, "é")
    assert c.get(k) == "é"
    c.hset(keys("h"), mapping={"a": "1"})
    assert c.hgetall(keys("h")) == {"a": "1"}
    assert c.ping() is True
    assert c.zadd(keys("z"), {"m": 1}) == 1
    assert c.zrange(keys("z"), 0, -1, withscores=True) == [("m", 1.0)]


def test_execute_command_raw(any_client, keys):
    c = any_client
    k = keys("raw")
    assert c.execute_command("SET", k, 1) is True
    assert c.execute_command("GET", k) == b"1"
    assert c.execute_command("CONFIG GET", "maxmemory-policy") == {"maxmemory-policy": "noeviction"}


def test_scan_iter(any_client, keys):
    c = any_client
    names = {keys(f"scan{i}").encode() for i in range(30)}
    for n in names:
        c.set(n, 1)
    prefix = keys("scan")
    found = set(c.scan_iter(match=prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=100))
    assert found == names


def test_publish(any_client, keys):
    assert any_client.publish(keys("chan"), "nobody") == 0
    if any_client.is_cluster:
        assert any_client.spublish(keys("chan"), "nobody") == 0


def test_close(make_client, mode):
    c = make_client(mode)
    assert c.ping() is True
    c.close()
    c.close()
    assert c.closed
    with pytest.raises(vshm.ConnectionError):
        c.ping()


def test_cluster_info_per_node(make_client, mode):
    c = make_client(mode, "cluster")
    info = c.info()
    assert info and all(isinstance(v, dict) and "redis_version" in v for v in info.values())
    assert all(isinstance(k, str) and ":" in k for k in info)
