"""What the sync client, the asyncio client and pipelines share: the command check done before
anything is sent, and the options a client was made with (to open more native clients of the
same kind, e.g. for pub/sub)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from . import _native
from .exceptions import InvalidRequest

# Connection-state commands: the connections behind a vshm client are shared by every client
# of the core, so these are refused before sending, naming what to use instead. (The core
# refuses them too; checking here gives the Python alternative in the message.)
_REFUSED: Dict[str, str] = {
    "SELECT": "pick the database with db= in the URL (valkey://host:port/2 or ?db=2)",
    "SWAPDB": "pick the database with db= in the URL",
    "AUTH": "give username=/password= (or user:password@ in the URL) when creating the client",
    "HELLO": "choose the protocol with protocol= in the URL",
    "MULTI": "use client.pipeline(transaction=True)",
    "EXEC": "use client.pipeline(transaction=True) and pipe.execute()",
    "DISCARD": "use client.pipeline(transaction=True) and pipe.reset()",
    "WATCH": "use pipe = client.pipeline(); pipe.watch(*keys)",
    "UNWATCH": "use pipe.unwatch() on a pipeline",
    "SUBSCRIBE": "use client.pubsub().subscribe(...)",
    "PSUBSCRIBE": "use client.pubsub().psubscribe(...)",
    "SSUBSCRIBE": "use client.pubsub().ssubscribe(...)",
    "UNSUBSCRIBE": "use PubSub.unsubscribe(...)",
    "PUNSUBSCRIBE": "use PubSub.punsubscribe(...)",
    "SUNSUBSCRIBE": "use PubSub.sunsubscribe(...)",
    "MONITOR": "not supported (it would take over a shared connection)",
    "SYNC": "not supported (it would take over a shared connection)",
    "PSYNC": "not supported (it would take over a shared connection)",
    "RESET": "not supported (it would reset a shared connection)",
    "QUIT": "use client.close()",
    "READONLY": "use read_from_replica=True when creating the client",
    "READWRITE": "use read_from_replica=False when creating the client",
    "ASKING": "not needed: the core follows cluster redirections",
}
_REFUSED_CLIENT: Dict[str, str] = {
    "SETNAME": "give client_name= when creating the client",
    "TRACKING": "not supported (client-side caching would track a shared connection)",
    "CACHING": "not supported (client-side caching would track a shared connection)",
    "REPLY": "not supported (it would desynchronize a shared connection)",
    "SETINFO": "not supported (the connections are shared)",
    "NO-EVICT": "not supported (the connections are shared)",
    "NO-TOUCH": "not supported (the connections are shared)",
}


def _word(x: Any) -> Optional[str]:
    if isinstance(x, str):
        return x.upper()
    if isinstance(x, (bytes, bytearray, memoryview)):
        try:
            return bytes(x).decode("ascii").upper()
        except UnicodeDecodeError:
            return None
    return None


def prepare(args: Tuple[Any, ...]) -> Tuple[Any, ...]:
    """Check a command before it is sent; returns the args to send.

    A first argument with spaces (``"CONFIG GET"``) is split, as redis-py does. Refused
    connection-state commands raise :class:`InvalidRequest`.
    """
    if not args:
        raise ValueError("empty command")
    first = args[0]
    if isinstance(first, str) and " " in first:
        args = tuple(first.split()) + tuple(args[1:])
        first = args[0]
    name = _word(first)
    if name is not None:
        why = _REFUSED.get(name)
        if why is None and name == "CLIENT" and len(args) > 1:
            sub = _word(args[1])
            if sub is not None and sub in _REFUSED_CLIENT:
                why = _REFUSED_CLIENT[sub]
                name = "CLIENT " + sub
        if why is not None:
            raise InvalidRequest(f"{name} is refused by vshm: {why}")
    return args


class Factory:
    """How a client's native client was made, to make another one of the same kind."""

    __slots__ = ("kind", "target", "options")

    def __init__(self, kind: str, target: str, options: Dict[str, Any]) -> None:
        self.kind = kind
        self.target = target
        self.options = options

    def make(self) -> Any:
        if self.kind == "url":
            return _native.NativeClient.from_url(self.target, **self.options)
        return _native.NativeClient.from_daemon(self.target, **self.options)
