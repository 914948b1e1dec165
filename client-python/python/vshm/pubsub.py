"""Pub/sub (redis-py's ``PubSub``): ``p = client.pubsub(); p.subscribe("ch"); p.get_message()``.

A PubSub has a native client of its own; the core keeps its subscriptions across reconnects
(a server restart or a cluster failover resubscribes them), so ``listen()`` goes on receiving.
Messages are redis-py dicts: ``{"type": "message", "pattern": None, "channel": b"ch",
"data": b"..."}`` (``type`` is a str; ``pattern`` is set for ``pmessage``; subscribe
confirmations carry the subscription count in ``data``).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Iterator, List, Optional

from .exceptions import PubSubError

MESSAGE_TYPES = ("message", "pmessage", "smessage")
SUBSCRIBE_TYPES = ("subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe")

EXACT, PATTERN, SHARDED = 0, 1, 2

Handler = Optional[Callable[[Dict[str, Any]], Any]]


def _key(x: Any) -> Any:
    """Channel names are kept as bytes (as the server sends them) for handler lookups."""
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, bytes):
        return x
    raise TypeError(f"a channel is str or bytes, not {type(x).__name__}")


def _type(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode("ascii", errors="replace").lower()
    return str(x).lower()


class PubSubCore:
    """Subscription bookkeeping and message conversion; shared by the sync and asyncio PubSub."""

    def __init__(self, native: Any, ignore_subscribe_messages: bool = False) -> None:
        self._native = native
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self.channels: Dict[bytes, Handler] = {}
        self.patterns: Dict[bytes, Handler] = {}
        self.shard_channels: Dict[bytes, Handler] = {}
        self._lock = threading.Lock()

    @property
    def subscribed(self) -> bool:
        return bool(self.channels or self.patterns or self.shard_channels)

    def _table(self, kind: int) -> Dict[bytes, Handler]:
        return (self.channels, self.patterns, self.shard_channels)[kind]

    def _subscribe(self, kind: int, args: tuple, kwargs: Dict[str, Handler]) -> None:
        new: Dict[bytes, Handler] = {}
        for a in args:
            if isinstance(a, (list, tuple)):  # redis-py accepts lists too
                for x in a:
                    new[_key(x)] = None
            else:
                new[_key(a)] = None
        for name, handler in kwargs.items():
            if handler is not None and not callable(handler):
                raise TypeError("a handler must be callable")
            new[_key(name)] = handler
        if not new:
            raise ValueError("subscribe needs at least one channel")
        self._native.subscribe(kind, list(new))
        with self._lock:
            self._table(kind).update(new)

    def _unsubscribe(self, kind: int, args: tuple) -> None:
        table = self._table(kind)
        with self._lock:
            names = [_key(a) for a in args] if args else list(table)
        if not names:
            return
        self._native.unsubscribe(kind, names)
        with self._lock:
            for n in names:
                table.pop(n, None)

    def handle_message(self, push: Any, ignore_subscribe_messages: bool = False) -> Optional[Dict[str, Any]]:
        """A native push -> a redis-py message dict (or None when a handler took it or it is an
        ignored subscribe confirmation)."""
        if not isinstance(push, (list, tuple)) or not push:
            return None
        mtype = _type(push[0])
        if mtype == "pmessage" and len(push) >= 4:
            message = {"type": mtype, "pattern": push[1], "channel": push[2], "data": push[3]}
        elif len(push) >= 3:
            message = {"type": mtype, "pattern": None, "channel": push[1], "data": push[2]}
        else:
            message = {"type": mtype, "pattern": None, "channel": None,
                       "data": push[1] if len(push) > 1 else None}
        if mtype in MESSAGE_TYPES:
            if mtype == "pmessage":
                handler = self.patterns.get(_key(message["pattern"]))
            elif mtype == "smessage":
                handler = self.shard_channels.get(_key(message["channel"]))
            else:
                handler = self.channels.get(_key(message["channel"]))
            if handler is not None:
                handler(message)
                return None
        elif mtype in SUBSCRIBE_TYPES:
            if ignore_subscribe_messages or self.ignore_subscribe_messages:
                return None
        return message

    def _check_handlers(self) -> None:
        for table in (self.channels, self.patterns, self.shard_channels):
            for name, handler in table.items():
                if handler is None:
                    raise PubSubError(f"channel {name!r} has no handler registered")


class PubSub(PubSubCore):
    """Sync pub/sub. Subscribing, get_message and run_in_thread may be used from any thread."""

    def subscribe(self, *args: Any, **kwargs: Handler) -> None:
        """Subscribe to channels; ``name=handler`` keyword arguments register a handler that
        gets the message dicts of that channel (``get_message`` then returns None for them)."""
        self._subscribe(EXACT, args, kwargs)

    def psubscribe(self, *args: Any, **kwargs: Handler) -> None:
        self._subscribe(PATTERN, args, kwargs)

    def ssubscribe(self, *args: Any, **kwargs: Handler) -> None:
        self._subscribe(SHARDED, args, kwargs)

    def unsubscribe(self, *args: Any) -> None:
        """Unsubscribe from ``args`` (all channels if none)."""
        self._unsubscribe(EXACT, args)

    def punsubscribe(self, *args: Any) -> None:
        self._unsubscribe(PATTERN, args)

    def sunsubscribe(self, *args: Any) -> None:
        self._unsubscribe(SHARDED, args)

    def get_message(self, ignore_subscribe_messages: bool = False, timeout: Optional[float] = 0.0) -> Optional[Dict[str, Any]]:
        """The next message, or None after ``timeout`` seconds (0: do not wait; None: wait
        until one comes)."""
        push = self._native.get_push(timeout)
        if push is None:
            return None
        return self.handle_message(push, ignore_subscribe_messages)

    def listen(self) -> Iterator[Dict[str, Any]]:
        """Yield messages while subscribed (handled messages are not yielded)."""
        while self.subscribed:
            push = self._native.get_push(1.0)
            if push is None:
                continue
            message = self.handle_message(push)
            if message is not None:
                yield message

    def run_in_thread(
        self, sleep_time: float = 0.0, daemon: bool = False,
        exception_handler: Optional[Callable[[BaseException, "PubSub", "PubSubWorkerThread"], None]] = None,
    ) -> "PubSubWorkerThread":
        """Call the handlers in a thread of their own; every subscription needs a handler.
        ``thread.stop()`` ends it (within ``max(sleep_time, 0.1)`` seconds) and closes the
        PubSub."""
        self._check_handlers()
        thread = PubSubWorkerThread(self, sleep_time, daemon=daemon, exception_handler=exception_handler)
        thread.start()
        return thread

    def close(self) -> None:
        self._native.close()

    reset = close

    def __enter__(self) -> "PubSub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PubSubWorkerThread(threading.Thread):
    def __init__(self, pubsub: PubSub, sleep_time: float, daemon: bool = False,
                 exception_handler: Optional[Callable[..., None]] = None) -> None:
        super().__init__(daemon=daemon, name="vshm-pubsub")
        self.pubsub = pubsub
        self.sleep_time = sleep_time
        self.exception_handler = exception_handler
        self._running = threading.Event()

    def run(self) -> None:
        if self._running.is_set():
            return
        self._running.set()
        timeout = self.sleep_time if self.sleep_time and self.sleep_time > 0 else 0.1
        timeout = min(timeout, 0.1)
        try:
            while self._running.is_set():
                try:
                    self.pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
                except BaseException as e:  # noqa: BLE001  (handed to the user's handler)
                    if self.exception_handler is None or not self._running.is_set():
                        raise
                    self.exception_handler(e, self.pubsub, self)
        finally:
            self.pubsub.close()

    def stop(self) -> None:
        self._running.clear()


__all__: List[str] = ["PubSub", "PubSubWorkerThread", "PubSubCore"]
