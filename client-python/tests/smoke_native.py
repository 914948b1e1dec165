"""Smoke test of the native module vshm._native against real servers.

Starts its own redis-server on a free loopback port (and, when a vshmd
binary is given, its own vshmd), runs every native feature once, and
stops what it started. Not part of the pytest suite (tests/ is the Python
layer's); run it after scripts/build-python.sh:

    PY=$(scripts/build-python.sh | tail -1)
    cargo build -p vshmd
    $PY client-python/tests/smoke_native.py --vshmd target/debug/vshmd

Exit status 0 and a final "N passed, 0 failed" line when everything works.
"""

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import vshm._native as n

RESULTS = {"passed": 0, "failed": 0}


def check(name, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report and go on
        RESULTS["failed"] += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
    else:
        RESULTS["passed"] += 1
        print(f"ok   {name}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port, workdir):
    p = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("redis-server did not start")


def start_vshmd(binary, port, workdir):
    sock = os.path.join(workdir, "vshmd.sock")
    conf = os.path.join(workdir, "vshmd.toml")
    with open(conf, "w") as f:
        f.write(
            f'socket_path = "{sock}"\nsocket_mode = 0o600\nlog_level = "warn"\n'
            f"worker_threads = 1\nshutdown_grace_ms = 200\n"
            f'[server]\naddresses = ["127.0.0.1:{port}"]\nmode = "standalone"\n'
            f"request_timeout_ms = 1000\n"
        )
    p = subprocess.Popen([binary, "--config", conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline and not os.path.exists(sock):
        if p.poll() is not None:
            raise RuntimeError("vshmd exited: " + p.stderr.read().decode(errors="replace"))
        time.sleep(0.05)
    if not os.path.exists(sock):
        p.kill()
        raise RuntimeError("vshmd did not create its socket")
    return p, sock


def expect_raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError(f"expected {exc.__name__}")


def basic_suite(c, label):
    """Everything that works the same in-process and through vshmd."""

    def set_get():
        assert c.execute(("SET", "smoke:k", "v")) == b"OK"
        assert c.execute(("GET", "smoke:k")) == b"v"
        assert c.execute(("GET", "smoke:missing")) is None
        c.execute(("DEL", "smoke:n"))
        assert c.execute(["INCRBY", "smoke:n", 5]) == 5
        assert c.execute(("SET", "smoke:f", 1.5)) == b"OK"
        assert c.execute(("GET", "smoke:f")) == b"1.5"
        assert c.execute((b"SET", bytearray(b"smoke:ba"), memoryview(b"mv"))) == b"OK"
        assert c.execute(("GET", "smoke:ba")) == b"mv"

    def binary_and_big():
        v = b"a\x00b\xff\x00"
        c.execute(("SET", "smoke:bin", v))
        assert c.execute(("GET", "smoke:bin")) == v
        big = os.urandom(1 << 20)
        c.execute(("SET", "smoke:big", big))
        assert c.execute(("GET", "smoke:big")) == big

    def bad_args():
        expect_raises(TypeError, c.execute, ("GET", True))
        expect_raises(TypeError, c.execute, ("GET", None))
        expect_raises(TypeError, c.execute, "GET x")
        expect_raises(ValueError, c.execute, ())

    def error_reply():
        c.execute(("SET", "smoke:str", "x"))
        e = expect_raises(n.ResponseError, c.execute, ("LPUSH", "smoke:str", "y"))
        assert e.code == "WRONGTYPE", e.code
        assert str(e).startswith("WRONGTYPE "), str(e)
        assert isinstance(e, n.VshmError)
        e = expect_raises(n.InvalidRequest, c.execute, ("SUBSCRIBE", "x"))
        assert "pub/sub" in str(e), str(e)

    def types():
        c.execute(("DEL", "smoke:h", "smoke:s"))
        c.execute(("HSET", "smoke:h", "f", "v"))
        c.execute(("SADD", "smoke:s", "m"))
        assert c.execute(("HGETALL", "smoke:h")) == {b"f": b"v"}
        assert c.execute(("SMEMBERS", "smoke:s")) == {b"m"}
        assert c.execute(("EXISTS", "smoke:h")) == 1

    def pipeline():
        r = c.execute_batch(
            [("SET", "smoke:p", 1), ("INCR", "smoke:p"), ("LPUSH", "smoke:p", "x"),
             ("GET", "smoke:p")], False)
        assert r[:2] == [b"OK", 2] and r[3] == b"2", r
        assert isinstance(r[2], n.ResponseError) and r[2].code == "WRONGTYPE", r[2]
        expect_raises(ValueError, c.execute_batch, [], False)
        expect_raises(ValueError, c.execute_batch, [("GET", "a")], False, watch=["a"])

    def transaction():
        r = c.execute_batch([("SET", "smoke:t", 1), ("INCR", "smoke:t")], True,
                            watch=["smoke:t"])
        assert r == [b"OK", 2], r
        r = c.execute_batch([("SET", "smoke:t", "x"), ("INCR", "smoke:t")], True)
        assert r[0] == b"OK" and isinstance(r[1], n.ResponseError), r

    def script():
        code = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"
        c.execute(("DEL", "smoke:sc"))
        assert c.execute_script(code, ["smoke:sc"], ["a"]) == [b"smoke:sc", b"a", 1]
        assert c.execute_script(code.encode(), ["smoke:sc"], [7]) == [b"smoke:sc", b"7", 2]
        e = expect_raises(n.ResponseError, c.execute_script, "return redis.call('NOPE')", [], [])
        assert e.code, e

    def submit_wait():
        i = c.submit(("ECHO", "one"))
        j = c.submit_batch([("ECHO", "a"), ("ECHO", "b")], False)
        k = c.submit_script("return ARGV[1]", [], ["s"])
        assert c.wait(k) == b"s"
        assert c.wait(j) == [b"a", b"b"]
        assert c.wait(i) == b"one"
        expect_raises(ValueError, c.wait, i)
        e = c.submit(("LPUSH", "smoke:str", "y"))
        expect_raises(n.ResponseError, c.wait, e)

    def drain_fileno():
        fd = c.fileno()
        assert fd == c.fileno()
        ids = {c.submit(("ECHO", str(i))): str(i).encode() for i in range(50)}
        bad = c.submit(("LPUSH", "smoke:str", "y"))
        got = {}
        deadline = time.time() + 5
        while len(got) < 51 and time.time() < deadline:
            import select
            select.select([fd], [], [], 0.5)
            for rid, v, is_err in c.drain():
                got[rid] = (v, is_err)
        for rid, v in ids.items():
            assert got[rid] == (v, False), (rid, got.get(rid))
        v, is_err = got[bad]
        assert is_err and isinstance(v, n.ResponseError) and v.code == "WRONGTYPE"

    def asyncio_loop():
        async def main():
            loop = asyncio.get_running_loop()
            futs = {}

            def on_ready():
                for rid, v, is_err in c.drain():
                    f = futs.pop(rid, None)
                    if f is None:
                        continue
                    if is_err:
                        f.set_exception(v)
                    else:
                        f.set_result(v)

            loop.add_reader(c.fileno(), on_ready)
            try:
                async def call(*args):
                    f = loop.create_future()
                    futs[c.submit(args)] = f
                    return await asyncio.wait_for(f, 5)

                r = await asyncio.gather(*(call("ECHO", str(i)) for i in range(200)))
                assert r == [str(i).encode() for i in range(200)]
                try:
                    await call("LPUSH", "smoke:str", "y")
                    raise AssertionError("no error")
                except n.ResponseError as e:
                    assert e.code == "WRONGTYPE"
            finally:
                loop.remove_reader(c.fileno())

        asyncio.run(main())

    def threads():
        errors = []

        def work(t):
            try:
                for i in range(200):
                    k = f"smoke:th:{t}:{i}"
                    c.execute(("SET", k, i))
                    assert c.execute(("GET", k)) == str(i).encode()
                    if i % 50 == 0:
                        assert c.wait(c.submit(("ECHO", k))) == k.encode()
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        ts = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors

    def pubsub():
        sub = n.NativeClient.from_url(URL) if label == "embedded" else n.NativeClient.from_daemon(SOCK)
        try:
            assert sub.subscribe(0, ["smoke:ch1", "smoke:ch2"]) == 2
            assert sub.get_push(1) == [b"subscribe", b"smoke:ch1", 1]
            assert sub.get_push(1) == [b"subscribe", b"smoke:ch2", 2]
            assert sub.subscribe(1, ["smoke:p*"]) == 3
            assert sub.get_push(1) == [b"psubscribe", b"smoke:p*", 3]
            assert sub.get_push(0) is None
            c.execute(("PUBLISH", "smoke:ch1", "hello"))
            assert sub.get_push(2) == [b"message", b"smoke:ch1", b"hello"]
            c.execute(("PUBLISH", "smoke:px", b"d\x00"))
            assert sub.get_push(2) == [b"pmessage", b"smoke:p*", b"smoke:px", b"d\x00"]
            assert sub.unsubscribe(0, []) == 1
            got = [sub.get_push(1), sub.get_push(1)]
            assert got == [[b"unsubscribe", b"smoke:ch1", 2],
                           [b"unsubscribe", b"smoke:ch2", 1]], got
            c.execute(("PUBLISH", "smoke:ch1", "lost"))
            c.execute(("PUBLISH", "smoke:pz", "kept"))
            assert sub.get_push(2) == [b"pmessage", b"smoke:p*", b"smoke:pz", b"kept"]
            t = time.time()
            assert sub.get_push(0.3) is None
            assert 0.25 < time.time() - t < 2
        finally:
            sub.close()

    def scan():
        keys = set()
        cursor = 0
        while True:
            cursor, ks = c.cluster_scan(cursor, b"smoke:*", 100, None)
            keys.update(ks)
            if cursor == 0:
                break
        assert b"smoke:k" in keys and b"smoke:big" in keys, len(keys)
        cursor, ks = c.cluster_scan(0, "smoke:h", 1000, "hash")
        assert set(ks) <= {b"smoke:h"}

    def timeout_and_interrupt():
        t = time.time()
        expect_raises(n.TimeoutError, c.execute, ("BLPOP", "smoke:nolist", 3), timeout=0.2)
        assert time.time() - t < 2.5
        assert c.execute(("PING",)) == b"PONG"
        # Ctrl-C during a long wait: KeyboardInterrupt within ~100 ms, and
        # the client stays usable.
        timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        t = time.time()
        try:
            c.execute(("BLPOP", "smoke:nolist", 5), timeout=10)
            raise AssertionError("not interrupted")
        except KeyboardInterrupt:
            pass
        assert time.time() - t < 1.5, time.time() - t
        assert c.execute(("PING",)) == b"PONG"
        c.execute(("RPUSH", "smoke:nolist", "late"))
        assert c.execute(("LPOP", "smoke:nolist")) in (b"late", None)

    def fork():
        c.execute(("SET", "smoke:fork", "parent"))
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                assert c.execute(("GET", "smoke:fork")) == b"parent"
                c.execute(("SET", "smoke:fork", "child"))
                assert c.wait(c.submit(("ECHO", "x"))) == b"x"
                fd = c.fileno()
                i = c.submit(("ECHO", "y"))
                import select
                select.select([fd], [], [], 2)
                got = []
                deadline = time.time() + 2
                while not got and time.time() < deadline:
                    got = c.drain()
                    time.sleep(0.01)
                assert got == [(i, b"y", False)], got
                code = 0
            except BaseException as e:  # noqa: BLE001
                print("child:", type(e).__name__, e, flush=True)
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert c.execute(("GET", "smoke:fork")) == b"child"
        assert c.execute(("PING",)) == b"PONG"

    for name, fn in [
        ("set/get", set_get), ("binary + 1 MiB", binary_and_big), ("bad args", bad_args),
        ("error reply", error_reply), ("types", types), ("pipeline", pipeline),
        ("transaction + watch", transaction), ("script", script),
        ("submit/wait", submit_wait), ("drain/fileno", drain_fileno),
        ("asyncio add_reader", asyncio_loop), ("threads", threads), ("pubsub", pubsub),
        ("cluster_scan", scan), ("timeout + Ctrl-C", timeout_and_interrupt), ("fork", fork),
    ]:
        check(f"{label}: {name}", fn)


def embedded_only():
    def decode():
        d = n.NativeClient.from_url(URL, decode_responses=True)
        assert d.decode_responses
        d.execute(("SET", "smoke:d", "é"))
        assert d.execute(("GET", "smoke:d")) == "é"
        assert d.execute(("HGETALL", "smoke:h")) == {"f": "v"}
        d.execute(("SET", "smoke:raw", b"\xff"))
        expect_raises(UnicodeDecodeError, d.execute, ("GET", "smoke:raw"))
        l1 = n.NativeClient.from_url(URL, decode_responses=True, encoding="latin-1")
        assert l1.execute(("GET", "smoke:raw")) == "\xff"
        d.close()
        l1.close()

    def options():
        expect_raises(ValueError, n.NativeClient.from_url, "http://x")
        expect_raises(ValueError, n.NativeClient.from_url, "valkey://h?bogus=1")
        expect_raises(ValueError, n.NativeClient.from_url, URL, timeout=-1)
        expect_raises(LookupError, n.NativeClient.from_url, URL, encoding="nope")
        expect_raises(n.ConnectionError, n.NativeClient.from_url,
                      f"valkey://127.0.0.1:{free_port()}", connect_timeout=0.5)
        c3 = n.NativeClient.from_url(URL + "?protocol=2", client_name="smoke", timeout=1.0)
        assert c3.execute(("CLIENT", "GETNAME")) in (b"smoke", None)
        assert not c3.is_cluster and not c3.closed
        c3.close()
        c3.close()
        assert c3.closed
        expect_raises(n.ConnectionError, c3.execute, ("PING",))
        expect_raises(n.ConnectionError, c3.drain)

    check("embedded: decode_responses", decode)
    check("embedded: options + close", options)


def daemon_restart(binary, port, workdir, state):
    def restart():
        c = n.NativeClient.from_daemon(SOCK, timeout=1.0)
        assert c.execute(("PING",)) == b"PONG"
        pend = c.submit(("BLPOP", "smoke:never", 0.5))
        state["vshmd"].terminate()
        state["vshmd"].wait(10)
        # The daemon is gone: ConnectionError (bounded), then, once it is
        # back, the next call re-registers.
        expect_raises(n.ConnectionError, c.execute, ("PING",))
        got = []
        deadline = time.time() + 3
        while not got and time.time() < deadline:
            got = c.drain()
            time.sleep(0.05)
        assert got and got[0][0] == pend and got[0][2], got
        state["vshmd"], _ = start_vshmd(binary, port, workdir)
        assert c.execute(("PING",)) == b"PONG"
        c.close()

    check("daemon: restart -> ConnectionError -> re-register", restart)


URL = ""
SOCK = ""


def main():
    global URL, SOCK
    ap = argparse.ArgumentParser()
    ap.add_argument("--vshmd", help="path of a vshmd binary (daemon tests run when given)")
    opts = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="vshm-smoke-")
    port = free_port()
    state = {}
    redis = start_redis(port, workdir)
    try:
        URL = f"valkey://127.0.0.1:{port}"
        c = n.NativeClient.from_url(URL, timeout=1.0)
        basic_suite(c, "embedded")
        embedded_only()
        c.close()
        if opts.vshmd:
            state["vshmd"], SOCK = start_vshmd(opts.vshmd, port, workdir)
            d = n.NativeClient.from_daemon(SOCK)
            expect_raises(ValueError, n.NativeClient.from_daemon, SOCK, password="x")
            basic_suite(d, "daemon")
            d.close()
            daemon_restart(opts.vshmd, port, workdir, state)
    finally:
        if "vshmd" in state:
            state["vshmd"].terminate()
            state["vshmd"].wait(10)
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
