"""The asyncio client: completions through the loop's reader, many coroutines in flight,
pipelines, scripts and pub/sub."""

import asyncio
import threading

import pytest

import vshm
import vshm.asyncio


@pytest.fixture
def aclient(make_client, mode):
    return make_client(mode, "standalone", cls=vshm.asyncio.Client)


def run(coro, bound=60):
    return asyncio.run(asyncio.wait_for(coro, bound))


def test_basic(aclient, keys):
    async def main():
        k = keys("a")
        assert await aclient.set(k, "v") is True
        assert await aclient.get(k) == b"v"
        assert await aclient.hset(keys("h"), mapping={"f": 1}) == 1
        assert await aclient.hgetall(keys("h")) == {b"f": b"1"}
        assert await aclient.zadd(keys("z"), {"m": 2}) == 1
        assert await aclient.zrange(keys("z"), 0, -1, withscores=True) == [(b"m", 2.0)]
        with pytest.raises(vshm.ResponseError):
            await aclient.lpush(k, 1)
        with pytest.raises(vshm.InvalidRequest):
            await aclient.execute_command("MULTI")
        with pytest.raises(TypeError):
            await aclient.set(k, None)
        assert await aclient.blpop(keys("empty"), timeout=0.1) is None

    run(main())


def test_thousand_coroutines_in_flight(aclient, keys):
    k = keys("many")
    threads_before = threading.active_count()

    async def one(i):
        assert await aclient.set(f"{k}:{i}", i) is True
        return int(await aclient.get(f"{k}:{i}"))

    async def main():
        got = await asyncio.gather(*(one(i) for i in range(1000)))
        assert got == list(range(1000))
        # blocking pops in flight while others go on
        pops = [asyncio.ensure_future(aclient.blpop(f"{k}:q{i}", timeout=10)) for i in range(20)]
        assert await aclient.incr(f"{k}:n") == 1
        for i in range(20):
            await aclient.rpush(f"{k}:q{i}", i)
        assert [p[1] for p in await asyncio.gather(*pops)] == [str(i).encode() for i in range(20)]

    run(main())
    assert threading.active_count() <= threads_before + 2  # no thread per request


def test_cancelled_request_does_not_break_the_client(aclient, keys):
    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(aclient.blpop(keys("never"), timeout=2), 0.2)
        assert await aclient.ping() is True
        assert await aclient.incr(keys("n")) == 1

    run(main())


def test_pipeline_and_transaction(aclient, keys):
    async def main():
        k = keys("p")
        async with aclient.pipeline() as pipe:
            pipe.set(k, 1).incr(k).get(k)
            assert await pipe.execute() == [True, 2, b"2"]
        pipe = aclient.pipeline(transaction=True)
        pipe.incr(k)
        pipe.incr(k)
        assert await pipe.execute() == [3, 4]
        pipe = aclient.pipeline()
        await pipe.watch(k)
        assert await pipe.get(k) == b"4"
        await aclient.set(k, 100)
        pipe.multi()
        pipe.set(k, 5)
        with pytest.raises(vshm.WatchError):
            await pipe.execute()
        assert await aclient.get(k) == b"100"

    run(main())


def test_script_and_scan(aclient, keys):
    async def main():
        s = aclient.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        assert await s(keys=[keys("s")], args=[3]) == 3
        for i in range(15):
            await aclient.set(keys(f"scan{i}"), i)
        pattern = keys("scan").replace("{", "\\{").replace("}", "\\}") + "*"
        found = [k async for k in aclient.scan_iter(match=pattern, count=100)]
        assert len(found) == 15

    run(main())


def test_pubsub(aclient, keys):
    async def main():
        ch = keys("ch")
        p = aclient.pubsub()
        await p.subscribe(ch)
        m = await p.get_message(timeout=5)
        assert m == {"type": "subscribe", "pattern": None, "channel": ch.encode(), "data": 1}
        assert await p.get_message(timeout=0.1) is None
        # a cancelled wait loses nothing
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(p.get_message(timeout=None), 0.1)
        got = None
        for _ in range(50):
            await aclient.publish(ch, "hi")
            got = await p.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if got:
                break
        assert got == {"type": "message", "pattern": None, "channel": ch.encode(), "data": b"hi"}
        await p.unsubscribe(ch)
        await p.aclose()

    run(main())


def test_close_fails_in_flight(aclient, keys):
    async def main():
        pending = asyncio.ensure_future(aclient.blpop(keys("never"), timeout=5))
        await asyncio.sleep(0.2)
        await aclient.aclose()
        with pytest.raises(vshm.ConnectionError):
            await pending
        with pytest.raises(vshm.ConnectionError):
            await aclient.ping()

    run(main())


def test_cluster(make_client, mode):
    c = make_client(mode, "cluster", cls=vshm.asyncio.Client)

    async def main():
        # keys spread over every slot range: the core routes each
        names = [f"acl:{i}" for i in range(200)]
        await asyncio.gather(*(c.set(n, n) for n in names))
        got = await asyncio.gather(*(c.get(n) for n in names))
        assert got == [n.encode() for n in names]
        assert await c.delete(*names[:1]) == 1

    run(main())


def test_vshmd_killed_while_awaiting(new_vshmd, keys):
    d = new_vshmd()
    c = vshm.asyncio.Client.from_daemon(d.socket)

    async def main():
        assert await c.set(keys("a"), 1) is True
        waiting = asyncio.ensure_future(c.blpop(keys("never"), timeout=20))
        await asyncio.sleep(0.5)
        d.kill()
        with pytest.raises(vshm.ConnectionError):
            await asyncio.wait_for(waiting, 15)
        d.start()
        assert await c.get(keys("a")) == b"1"

    try:
        run(main())
    finally:
        c.native.close()
