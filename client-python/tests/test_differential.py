"""Differential test: the same generated corpus of commands through vshm and through redis-py
(pip ``redis``), replies compared.

The corpus covers every value type (strings, ints, floats, hashes, lists, sets, sorted sets,
streams), binary values (NUL bytes, empty, 1 MiB) and error replies. Each side works on keys
under its own hash tag of equal length (one slot, so it runs on the cluster too); the tags are
normalized away before comparing. Calls go through the redis-py-named methods (so the method
signatures are compared too) and through ``execute_command``.
"""

import random
import uuid

import pytest

import vshm

SEED = 20261206


class K:
    """A key placeholder, resolved per side."""

    def __init__(self, name):
        self.name = name


def corpus(rng):
    big = rng.randbytes(1 << 20)
    values = [b"", b"\x00", b"a\x00b\x00c", "unicode é ☃", b"\xff\xfe\x00binary", 0, -1,
              2**63 - 1, 1.5, -0.25, 1e20, b"x" * 1000, big]
    ops = []

    def op(method, *args, **kwargs):
        ops.append((method, args, kwargs))

    # strings and counters
    for i, v in enumerate(values):
        op("set", K(f"s{i}"), v)
        op("get", K(f"s{i}"))
        op("strlen", K(f"s{i}"))
        op("append", K(f"s{i}"), b"\x00tail")
        op("getrange", K(f"s{i}"), 0, 5)
    op("set", K("s0"), "new", get=True)
    op("set", K("s0"), "nx", nx=True)
    op("set", K("nope"), "xx", xx=True)
    op("mset", {K("m1"): b"1", K("m2"): b"\x00"})
    op("mget", [K("m1"), K("m2"), K("missing")])
    op("getdel", K("m1"))
    op("getdel", K("m1"))
    op("setrange", K("m2"), 5, b"zz")
    op("get", K("m2"))
    for _ in range(20):
        op("incrby", K("counter"), rng.randint(-1000, 1000))
    op("incrbyfloat", K("fcounter"), 1.25)
    op("incrbyfloat", K("fcounter"), -3)
    op("decr", K("counter"))
    op("incr", K("s3"))  # not an integer: error
    op("incrbyfloat", K("s3"))  # not a float: error
    op("exists", K("s0"), K("s1"), K("missing"))
    op("type", K("s0"))
    op("expire", K("s0"), 1000)
    op("expire", K("missing"), 1000)
    op("persist", K("s0"))
    op("ttl", K("s0"))
    op("ttl", K("missing"))
    op("rename", K("s1"), K("s1b"))
    op("renamenx", K("s1b"), K("s2"))
    op("delete", K("s1b"), K("missing"))

    # hashes
    for i in range(5):
        op("hset", K("h"), mapping={f"f{j}": rng.choice(values[:9]) for j in range(i, i + 4)})
        op("hgetall", K("h"))
    op("hset", K("hbig"), "big", big)
    op("hget", K("hbig"), "big")
    op("hget", K("h"), "nope")
    op("hmget", K("h"), ["f0", "nope", "f3"])
    op("hincrby", K("h"), "n", 7)
    op("hincrbyfloat", K("h"), "x", 2.5)
    op("hexists", K("h"), "f1")
    op("hsetnx", K("h"), "f1", "no")
    op("hdel", K("h"), "f1", "f2", "nope")
    op("hlen", K("h"))
    op("hkeys", K("h"))
    op("hvals", K("h"))
    op("hstrlen", K("hbig"), "big")
    op("hgetall", K("missing"))
    op("hget", K("s0"), "f")  # wrong type

    # lists
    op("rpush", K("l"), *values[:9])
    op("lpush", K("l"), b"head", b"")
    op("lrange", K("l"), 0, -1)
    op("lpop", K("l"))
    op("rpop", K("l"), 2)
    op("lindex", K("l"), 3)
    op("lset", K("l"), 0, b"\x00set")
    op("lset", K("l"), 999, b"x")  # out of range: error
    op("linsert", K("l"), "BEFORE", b"\x00set", b"ins")
    op("lrem", K("l"), 0, b"ins")
    op("lpos", K("l"), b"\x00")
    op("llen", K("l"))
    op("ltrim", K("l"), 0, 4)
    op("lrange", K("l"), 0, -1)
    op("lmove", K("l"), K("l2"), "LEFT", "RIGHT")
    op("blpop", [K("l"), K("l2")], timeout=1)
    op("brpop", [K("l2"), K("l")], timeout=1)
    op("blmove", K("l"), K("l2"), 1, "RIGHT", "LEFT")
    op("lrange", K("l2"), 0, -1)
    op("rpush", K("lbig"), big)
    op("lpop", K("lbig"))
    op("lpush", K("s0"), 1)  # wrong type

    # sets
    op("sadd", K("a"), *values[:9])
    op("sadd", K("b"), b"\x00", b"other", 0)
    op("smembers", K("a"))
    op("sismember", K("a"), b"\x00")
    op("smismember", K("a"), [b"\x00", b"nope"])
    op("scard", K("a"))
    op("sinter", [K("a"), K("b")])
    op("sunion", [K("a"), K("b")])
    op("sdiff", [K("a"), K("b")])
    op("sinterstore", K("c"), [K("a"), K("b")])
    op("smembers", K("c"))
    op("srem", K("a"), b"\x00", b"nope")
    op("smove", K("a"), K("b"), b"")
    op("smembers", K("missing"))
    op("sadd", K("h"), 1)  # wrong type

    # sorted sets
    for _ in range(5):
        op("zadd", K("z"), {rng.choice([b"m1", b"m\x00", "é", b""]): rng.choice([1, -2.5, 1e10, 0.1])})
    op("zadd", K("z"), {b"m1": 3}, xx=True, ch=True)
    op("zadd", K("z"), {b"m1": 2}, incr=True)
    op("zadd", K("z"), {b"new": 1}, nx=True)
    op("zrange", K("z"), 0, -1)
    op("zrange", K("z"), 0, -1, withscores=True)
    op("zrange", K("z"), 0, 1, desc=True, withscores=True)
    op("zrevrange", K("z"), 0, -1, withscores=True)
    op("zrangebyscore", K("z"), "-inf", "+inf", withscores=True)
    op("zrangebyscore", K("z"), 0, 5, start=0, num=2)
    op("zscore", K("z"), b"m1")
    op("zscore", K("z"), b"nope")
    op("zmscore", K("z"), [b"m1", b"nope"])
    op("zincrby", K("z"), 1.5, b"m1")
    op("zrank", K("z"), b"m1")
    op("zrevrank", K("z"), b"nope")
    op("zcount", K("z"), "-inf", 2)
    op("zcard", K("z"))
    op("zpopmin", K("z"))
    op("zpopmax", K("z"), 2)
    op("bzpopmin", [K("z")], timeout=1)
    op("zrem", K("z"), b"m1", b"nope")
    op("zrange", K("missing"), 0, -1, withscores=True)
    op("zadd", K("s0"), {b"x": 1})  # wrong type

    # streams
    op("xadd", K("x"), {b"f": b"v", b"bin": b"\x00\xff"}, id="1-1")
    op("xadd", K("x"), {b"big": big}, id="1-2")
    op("xadd", K("x"), {b"e": b""}, id="2-0")
    op("xadd", K("x"), {b"f": b"old"}, id="1-0")  # smaller id: error
    op("xlen", K("x"))
    op("xrange", K("x"))
    op("xrange", K("x"), "1-2", "+", count=1)
    op("xrevrange", K("x"), count=2)
    op("xread", {K("x"): "1-1"}, count=5)
    op("xread", {K("x"): "$"}, block=10)
    op("xgroup_create", K("x"), "g", id="0")
    op("xgroup_create", K("x"), "g", id="0")  # BUSYGROUP
    op("xreadgroup", "g", "c1", {K("x"): ">"}, count=2)
    op("xpending", K("x"), "g")
    op("xack", K("x"), "g", "1-1", "9-9")
    op("xdel", K("x"), "1-1")
    op("xtrim", K("x"), maxlen=1, approximate=False)
    op("xrange", K("x"))
    op("xadd", K("s0"), {b"f": b"v"})  # wrong type

    # raw commands and protocol errors
    op("execute_command", "ECHO", b"\x00echo")
    op("execute_command", "STRLEN", K("hbig"))
    op("execute_command", "EXISTS", K("l"), K("z"))
    op("execute_command", "NOSUCHCOMMAND", K("s0"))
    op("execute_command", "GET")  # arity
    op("execute_command", "SET", K("s0"), b"v", "BADOPTION")  # syntax
    op("execute_command", "HGETALL", K("h"))
    op("execute_command", "SMEMBERS", K("b"))
    op("execute_command", "TYPE", K("x"))
    return ops


_STRIPPED_CODES = {"ERR", "EXECABORT", "LOADING", "NOSCRIPT", "READONLY", "NOAUTH", "NOPERM"}


def _error_text(e):
    msg = str(e)
    first, _, rest = msg.partition(" ")
    if first in _STRIPPED_CODES:
        msg = rest
    return msg


class Normalizer:
    def __init__(self, tag):
        self.tag = tag.encode()

    def __call__(self, x):
        if isinstance(x, BaseException):
            return ("error", _error_text(x).replace(self.tag.decode(), "{T}"))
        if isinstance(x, bytes):
            return x.replace(self.tag, b"{T}")
        if isinstance(x, str):
            return x.replace(self.tag.decode(), "{T}")
        if isinstance(x, list):
            return [self(v) for v in x]
        if isinstance(x, tuple):
            return tuple(self(v) for v in x)
        if isinstance(x, set):
            return {self(v) for v in x}
        if isinstance(x, dict):
            return {self(k): self(v) for k, v in x.items()}
        return x


def resolve(x, tag):
    if isinstance(x, K):
        return f"{tag}:{x.name}"
    if isinstance(x, list):
        return [resolve(v, tag) for v in x]
    if isinstance(x, dict):
        return {resolve(k, tag): resolve(v, tag) for k, v in x.items()}
    return x


def run_side(client, ops, tag, error_types):
    out = []
    for method, args, kwargs in ops:
        a = [resolve(v, tag) for v in args]
        kw = {k: resolve(v, tag) for k, v in kwargs.items()}
        try:
            out.append(getattr(client, method)(*a, **kw))
        except error_types as e:
            out.append(e)
    return out


def describe(op):
    method, args, kwargs = op
    short = [a if not isinstance(a, (bytes, str)) or len(a) < 40 else f"<{len(a)} bytes>" for a in args]
    short = [a.name if isinstance(a, K) else a for a in short]
    return f"{method}{tuple(short)}{kwargs or ''}"


def shorten(x):
    if isinstance(x, (bytes, str)) and len(x) > 60:
        return f"<{type(x).__name__} of {len(x)}>"
    if isinstance(x, (list, tuple)):
        return type(x)(shorten(v) for v in x)
    if isinstance(x, dict):
        return {shorten(k): shorten(v) for k, v in x.items()}
    return x


@pytest.mark.parametrize("topology, mode, query", [
    ("standalone", "embedded", ""),
    ("standalone", "daemon", ""),
    ("standalone", "embedded", "protocol=resp2"),
    ("cluster", "embedded", ""),
    ("cluster", "daemon", ""),
])
def test_differential(servers, daemons, topology, mode, query):
    redis = pytest.importorskip("redis")
    from conftest import url_for

    if mode == "embedded":
        vc = vshm.Client.from_url(url_for(servers, topology, query))
    else:
        vc = vshm.Client.from_daemon(daemons(topology).socket)
    if topology == "standalone":
        host, port = servers.standalone.rsplit(":", 1)
        rc = redis.Redis(host=host, port=int(port))
    else:
        host, port = servers.cluster[0].rsplit(":", 1)
        rc = redis.cluster.RedisCluster(host=host, port=int(port))
    run = uuid.uuid4().hex[:10]
    vtag, rtag = "{d" + run + "v}", "{d" + run + "r}"
    try:
        ops = corpus(random.Random(SEED))
        got = run_side(vc, ops, vtag, (vshm.VshmError,))
        want = run_side(rc, ops, rtag, (redis.RedisError, redis.exceptions.RedisClusterException))
        nv, nr = Normalizer(vtag), Normalizer(rtag)
        mismatches = []
        compared = 0
        for op, g, w in zip(ops, got, want):
            if isinstance(w, Exception) and not isinstance(w, redis.ResponseError):
                # redis-py's cluster client refused it itself (no key to route by, a command
                # its table does not know): no server reply to compare
                continue
            compared += 1
            if nv(g) != nr(w):
                mismatches.append(f"{describe(op)}:\n  vshm:     {shorten(nv(g))!r}\n  redis-py: {shorten(nr(w))!r}")
        assert compared > len(ops) - 5
        assert not mismatches, f"{len(mismatches)} of {len(ops)} replies differ:\n" + "\n".join(mismatches[:20])
        # every error of the corpus was an error on both sides, of vshm's ResponseError type
        errors = [g for g in got if isinstance(g, Exception)]
        assert len(errors) >= 12
        assert all(isinstance(e, vshm.ResponseError) for e in errors), errors
    finally:
        vc.close()
        rc.close()
