"""Pub/sub: messages as redis-py dicts, handlers, run_in_thread, a server restart."""

import threading
import time

import pytest

import vshm

BOUND = 10.0  # seconds: every wait of these tests is bounded


def next_message(p, bound=BOUND, **kw):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        m = p.get_message(timeout=0.2, **kw)
        if m is not None:
            return m
    raise AssertionError("no message within the bound")


def publish_until_received(publisher, p, channel, data, bound=BOUND, sharded=False):
    """Publish until the subscriber (whose subscription may still be on its way) gets it."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            (publisher.spublish if sharded else publisher.publish)(channel, data)
        except vshm.VshmError:
            time.sleep(0.1)  # e.g. the server is still coming back
            continue
        m = p.get_message(ignore_subscribe_messages=True, timeout=0.3)
        while m is not None:
            if m["type"] in ("message", "pmessage", "smessage") and m["data"] == data:
                return m
            m = p.get_message(ignore_subscribe_messages=True, timeout=0.05)
    raise AssertionError(f"{data!r} never received on {channel!r}")


def test_subscribe_and_messages(any_client, keys):
    c = any_client
    ch, pat = keys("ch"), keys("p*")
    with c.pubsub() as p:
        p.subscribe(ch)
        m = next_message(p)
        assert m == {"type": "subscribe", "pattern": None, "channel": ch.encode(), "data": 1}
        m = publish_until_received(c, p, ch, b"hello\x00")
        assert m == {"type": "message", "pattern": None, "channel": ch.encode(), "data": b"hello\x00"}
        p.psubscribe(pat)
        m = publish_until_received(c, p, keys("pq"), b"via pattern")
        # the exact subscription does not match keys("pq"): only the pattern does
        assert m == {"type": "pmessage", "pattern": pat.encode(), "channel": keys("pq").encode(),
                     "data": b"via pattern"}
        assert p.subscribed
        p.unsubscribe()
        p.punsubscribe()
        assert not p.subscribed


def test_sharded(make_client, keys):
    c = make_client("embedded", "cluster")
    ch = keys("sch")
    with c.pubsub() as p:
        p.ssubscribe(ch)
        m = publish_until_received(c, p, ch, b"shard", sharded=True)
        assert m["type"] == "smessage" and m["channel"] == ch.encode()


def test_handlers_and_thread(client, keys):
    ch = keys("h")
    got = []
    done = threading.Event()

    def handler(message):
        got.append(message["data"])
        if len(got) >= 3:
            done.set()

    p = client.pubsub()
    p.subscribe(**{ch: handler})
    with pytest.raises(vshm.PubSubError):
        p2 = client.pubsub()
        p2.subscribe(keys("nohandler"))
        p2.run_in_thread()
    thread = p.run_in_thread(sleep_time=0.05, daemon=True)
    try:
        deadline = time.monotonic() + BOUND
        i = 0
        while not done.is_set() and time.monotonic() < deadline:
            client.publish(ch, f"m{i}")
            i += 1
            done.wait(0.1)
        assert done.is_set()
        assert all(g.startswith(b"m") for g in got)
    finally:
        thread.stop()
        thread.join(5)
    assert not thread.is_alive()


def test_handler_in_get_message(client, keys):
    ch = keys("hg")
    got = []
    with client.pubsub(ignore_subscribe_messages=True) as p:
        p.subscribe(**{ch: got.append})
        deadline = time.monotonic() + BOUND
        while not got and time.monotonic() < deadline:
            client.publish(ch, "x")
            assert p.get_message(timeout=0.2) is None  # handled, or a subscribe confirmation
        assert got and got[0]["data"] == b"x"


def test_listen(client, keys):
    ch = keys("l")
    p = client.pubsub()
    p.subscribe(ch)
    it = p.listen()
    assert next(it)["type"] == "subscribe"
    publish_until_received(client, p, ch, b"warmup")
    client.publish(ch, "via listen")
    m = next(it)
    assert m["data"] == b"via listen"
    p.close()


@pytest.mark.parametrize("mode", ["embedded", "daemon"])
def test_pubsub_across_server_restart(private_redis, mode, new_vshmd):
    daemon = None
    if mode == "embedded":
        sub = vshm.Client.from_url(f"valkey://{private_redis.address}")
        pub = vshm.Client.from_url(f"valkey://{private_redis.address}")
    else:
        daemon = new_vshmd([private_redis.address])
        sub = vshm.Client.from_daemon(daemon.socket)
        pub = vshm.Client.from_daemon(daemon.socket)
    try:
        p = sub.pubsub()
        p.subscribe("restart-ch")
        publish_until_received(pub, p, "restart-ch", b"before")
        private_redis.restart()  # same port, a new server without our subscription
        m = publish_until_received(pub, p, "restart-ch", b"after", bound=30)
        assert m["channel"] == b"restart-ch"
        p.close()
    finally:
        sub.close()
        pub.close()


def test_decoded_messages_and_exception_handler(make_client, mode, keys):
    c = make_client(mode, "standalone", decode_responses=True)
    ch = keys("dec")
    p = c.pubsub(ignore_subscribe_messages=True)
    p.subscribe(ch)
    m = publish_until_received(c, p, ch, "é")
    assert m == {"type": "message", "pattern": None, "channel": ch, "data": "é"}
    p.close()

    errors = []
    handled = threading.Event()

    def bad_handler(message):
        raise RuntimeError("handler failed")

    def on_error(e, pubsub, thread):
        errors.append(e)
        handled.set()

    p2 = c.pubsub()
    p2.subscribe(**{ch: bad_handler})
    t = p2.run_in_thread(sleep_time=0.05, daemon=True, exception_handler=on_error)
    try:
        deadline = time.monotonic() + BOUND
        while not handled.is_set() and time.monotonic() < deadline:
            c.publish(ch, "x")
            handled.wait(0.1)
        assert errors and isinstance(errors[0], RuntimeError)
        assert t.is_alive()  # the thread goes on after a handled error
    finally:
        t.stop()
        t.join(5)
