"""Fork, threads, interrupts and a killed vshmd."""

import multiprocessing
import os
import signal
import threading
import time

import pytest

import vshm


def _child_work(c, key, n):
    """In a forked child: use the parent's client; 0 if every reply is right."""
    for i in range(n):
        c.set(f"{key}:{i}", i)
        if c.get(f"{key}:{i}") != str(i).encode():
            return 1
    return 0


def test_os_fork(client, keys):
    k = keys("fork")
    client.set(k, "parent")  # the client is in use before the fork
    pids = []
    for child in range(3):
        pid = os.fork()
        if pid == 0:  # child: report through the exit status only
            code = 2
            try:
                code = _child_work(client, f"{k}:{child}", 50)
                if client.get(k) != b"parent":
                    code = 3
            finally:
                os._exit(code)
        pids.append(pid)
    # the parent goes on using it at the same time
    assert _child_work(client, f"{k}:parent", 50) == 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert client.get(f"{k}:2:49") == b"49"


_MP_CLIENT = None


def _mp_task(args):
    key, i = args
    _MP_CLIENT.set(f"{key}:{i}", i * 2)
    return int(_MP_CLIENT.get(f"{key}:{i}"))


def test_multiprocessing_fork(client, keys):
    global _MP_CLIENT
    _MP_CLIENT = client
    k = keys("mp")
    client.ping()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        got = pool.map(_mp_task, [(k, i) for i in range(40)], chunksize=2)
    assert got == [i * 2 for i in range(40)]
    assert client.get(f"{k}:39") == b"78"


def test_threads_share_one_client(client, keys):
    k = keys("thr")
    errors = []
    n = 300

    def worker(t):
        try:
            for i in range(n):
                key = f"{k}:{t}"
                assert client.incr(key) == i + 1
                assert client.hset(f"{key}:h", str(i), i) == 1
                assert client.get(key) == str(i + 1).encode()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert all(client.hlen(f"{k}:{t}:h") == n for t in range(8))


def test_threads_pipelines_and_blocking(client, keys):
    """Blocking pops waiting in some threads do not hold up the others."""
    k = keys("blk")
    results = {}

    def popper(t):
        results[t] = client.blpop(f"{k}:{t}", timeout=10)

    poppers = [threading.Thread(target=popper, args=(t,)) for t in range(4)]
    for t in poppers:
        t.start()
    for _ in range(20):
        pipe = client.pipeline()
        pipe.incr(f"{k}:n").get(f"{k}:n")
        pipe.execute()
    for t in range(4):
        client.rpush(f"{k}:{t}", f"v{t}")
    for t in poppers:
        t.join(15)
    assert results == {t: (f"{k}:{t}".encode(), f"v{t}".encode()) for t in range(4)}


def test_keyboard_interrupt_during_blocking_wait(client, keys):
    k = keys("ki")

    def on_alarm(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            client.blpop(k, timeout=3)
        assert time.monotonic() - t0 < 2.5  # interrupted, not timed out
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    # the client is usable at once
    assert client.ping() is True
    client.set(keys("after"), "ok")
    assert client.get(keys("after")) == b"ok"
    pipe = client.pipeline()
    assert pipe.incr(keys("n")).execute() == [1]


def test_vshmd_killed_then_restarted(new_vshmd, keys):
    d = new_vshmd()
    c = vshm.Client.from_daemon(d.socket)
    try:
        assert c.set(keys("a"), 1) is True
        outcome = {}

        def waiter():
            t0 = time.monotonic()
            try:
                outcome["value"] = c.blpop(keys("never"), timeout=20)
            except BaseException as e:  # noqa: BLE001
                outcome["error"] = e
            outcome["secs"] = time.monotonic() - t0

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.5)  # the waiter is in its wait (nothing would pop it within 20 s)
        d.kill()
        t.join(15)
        assert not t.is_alive(), "the waiting call did not end after vshmd died"
        assert isinstance(outcome.get("error"), vshm.ConnectionError), outcome
        assert outcome["secs"] < 15
        d.start()
        # the next call works: the client re-registers with the new daemon by itself
        assert c.get(keys("a")) == b"1"
        assert c.incr(keys("b")) == 1
    finally:
        c.close()


def test_blocking_longer_than_the_request_timeout(client, keys):
    """Blocking commands wait their own block time, not the client's request timeout."""
    k = keys("blk2")
    t0 = time.monotonic()
    assert client.blpop(k, timeout=2) is None
    assert time.monotonic() - t0 >= 1.9
    timer = threading.Timer(1.5, lambda: client.rpush(k, "late"))
    timer.start()
    try:
        assert client.brpop([k], timeout=0) == (k.encode(), b"late")  # 0: no limit
    finally:
        timer.join()
    s = keys("stream")
    t0 = time.monotonic()
    assert client.xread({s: "$"}, block=1500) == []
    assert time.monotonic() - t0 >= 1.4
