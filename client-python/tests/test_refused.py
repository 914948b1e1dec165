"""Connection-state commands are refused before sending, naming the alternative; arguments of
a wrong type raise TypeError before anything is sent."""

import pytest

import vshm


@pytest.mark.parametrize(
    "args, hint",
    [
        (("SELECT", 1), "db="),
        (("select", "1"), "db="),
        (("SWAPDB", 0, 1), "db="),
        (("MULTI",), "pipeline(transaction=True)"),
        (("EXEC",), "pipeline(transaction=True)"),
        (("DISCARD",), "pipeline"),
        (("WATCH", "k"), "watch"),
        (("UNWATCH",), "unwatch"),
        (("SUBSCRIBE", "ch"), "pubsub()"),
        ((b"PSUBSCRIBE", b"ch*"), "pubsub()"),
        (("SSUBSCRIBE", "ch"), "pubsub()"),
        (("UNSUBSCRIBE",), "PubSub"),
        (("CLIENT", "TRACKING", "on"), "not supported"),
        (("CLIENT", "reply", "off"), "not supported"),
        (("CLIENT", "SETNAME", "x"), "client_name="),
        (("QUIT",), "close()"),
        (("RESET",), "not supported"),
        (("MONITOR",), "not supported"),
        (("AUTH", "pw"), "password="),
        (("HELLO", 3), "protocol="),
        (("READONLY",), "read_from_replica"),
    ],
)
def test_refused(client, args, hint):
    with pytest.raises(vshm.InvalidRequest) as e:
        client.execute_command(*args)
    assert hint in str(e.value)
    assert client.ping() is True


def test_refused_in_pipeline(client):
    pipe = client.pipeline()
    with pytest.raises(vshm.InvalidRequest):
        pipe.execute_command("MULTI")
    assert pipe.ping().execute() == [True]


def test_client_subcommands_allowed(client):
    assert isinstance(client.client_id(), int)
    assert "id" in client.client_info()


@pytest.mark.parametrize("bad", [None, True, False, [1], {"a": 1}, object(), 1j])
def test_wrong_argument_types(client, keys, bad):
    k = keys("typed")
    with pytest.raises(TypeError):
        client.set(k, bad)
    with pytest.raises(TypeError):
        client.execute_command("SET", k, bad)
    # nothing was sent: the key does not exist
    assert client.exists(k) == 0


def test_wrong_argument_types_in_pipeline(client, keys):
    k = keys("typed")
    pipe = client.pipeline()
    pipe.set(k, 1)
    pipe.set(k, None)
    with pytest.raises(TypeError):
        pipe.execute()
    assert client.exists(k) == 0


def test_empty_command(client):
    with pytest.raises(ValueError):
        client.execute_command()


def test_accepted_argument_types(client, keys):
    k = keys("types")
    for value, expected in [
        (b"b", b"b"), (bytearray(b"ba"), b"ba"), (memoryview(b"mv"), b"mv"), ("é", "é".encode()),
        (12, b"12"), (-3, b"-3"), (1.5, b"1.5"), (2**70, str(2**70).encode()),
    ]:
        client.set(k, value)
        assert client.get(k) == expected


def test_unknown_option():
    with pytest.raises(TypeError):
        vshm.Client.from_url("valkey://127.0.0.1:1", no_such_option=1)
