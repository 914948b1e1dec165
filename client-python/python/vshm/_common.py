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


# --- request deadlines of blocking commands -------------------------------------------------
# The native client bounds every wait by the request's timeout (default: the core's, 0.25 s)
# plus a transport margin, whatever the command. A blocking command (BLPOP k 5) needs longer:
# when the caller gave no request_timeout, its block time plus a margin is passed as the
# request's timeout (the core's bound of blocking commands is then the same). The parsing
# follows the core's `block_timeout` (core/src/commands.rs).
BLOCK_MARGIN = 1.0  # seconds past the block time
BLOCK_FOREVER = 3600.0  # block 0 ("forever"): the core's default block_forever_limit_ms


def _float_at(args: Tuple[Any, ...], i: int, scale: float) -> Optional[float]:
    if not -len(args) <= i < len(args):
        return None
    x = args[i]
    if isinstance(x, (bytes, bytearray, memoryview)):
        x = bytes(x).decode("ascii", errors="replace")
    try:
        v = float(x) if not isinstance(x, bool) else None
    except (TypeError, ValueError):
        return None
    if v is None or v != v or v < 0:
        return None
    return v * scale


def _xread_block(args: Tuple[Any, ...], group: bool) -> Optional[float]:
    i = 4 if group else 1
    while i < len(args):
        tok = _word(args[i])
        if tok == "STREAMS":
            return None
        if tok == "BLOCK":
            return _float_at(args, i + 1, 0.001)
        i += 2 if tok in ("COUNT", "CLAIM") else 1
    return None


def block_seconds(args: Tuple[Any, ...]) -> Optional[float]:
    """The block time of a blocking command in seconds (0.0: forever); None if it does not
    block (or its timeout is malformed: the server answers at once then)."""
    name = _word(args[0])
    if name in ("BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX", "BRPOPLPUSH", "BLMOVE"):
        return _float_at(args, len(args) - 1, 1.0) if len(args) >= 3 else None
    if name in ("BLMPOP", "BZMPOP"):
        return _float_at(args, 1, 1.0)
    if name == "XREAD":
        return _xread_block(args, False)
    if name == "XREADGROUP":
        return _xread_block(args, True)
    if name == "WAIT":
        return _float_at(args, 2, 0.001)
    if name == "WAITAOF":
        return _float_at(args, 3, 0.001)
    return None


def request_timeout(args: Tuple[Any, ...], explicit: Optional[float]) -> Optional[float]:
    """The timeout to pass to the native client for ``args``."""
    if explicit is not None:
        return explicit
    block = block_seconds(args)
    if block is None:
        return None
    if block == 0:
        return BLOCK_FOREVER
    return block + BLOCK_MARGIN


def batch_timeout(commands: List[Tuple[Any, ...]], explicit: Optional[float]) -> Optional[float]:
    """The timeout of a batch: the longest of its blocking commands' (None if none blocks)."""
    if explicit is not None:
        return explicit
    best: Optional[float] = None
    for args in commands:
        t = request_timeout(args, None)
        if t is not None and (best is None or t > best):
            best = t
    return best
