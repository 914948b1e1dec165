"""The asyncio client: the same methods as :class:`vshm.Client`, as coroutines.

Requests are submitted without blocking (``NativeClient.submit``); their completions come back
through one file descriptor watched by the event loop (``loop.add_reader(native.fileno())``),
which calls ``native.drain()`` and resolves the futures of a dict ``request id -> future``.
No thread per request: thousands of coroutines can have requests in flight on one client.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Tuple

from .. import callbacks
from .._common import Factory, prepare
from ..commands import Commands
from ..exceptions import ConnectionError
from ..pipeline import WATCH_EXEC_LUA, WATCH_SNAPSHOT_LUA, PipelineState

Convert = Callable[[Any], Any]

_TICK = 0.1  # seconds between drain() calls while requests are pending


class Completions:
    """Request id -> (future, conversion); resolved from ``native.drain()`` when the loop sees
    the native client's fd readable."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self._pending: Dict[int, Tuple[asyncio.Future, Convert]] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._fd: Optional[int] = None
        self._tick: Optional[asyncio.TimerHandle] = None

    def _reader(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._detach()
            fd = self._native.fileno()
            loop.add_reader(fd, self._on_readable)
            self._loop, self._fd = loop, fd
        return loop

    def _detach(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        loop, fd = self._loop, self._fd
        self._loop = self._fd = None
        if loop is not None and fd is not None and not loop.is_closed():
            try:
                loop.remove_reader(fd)
            except (ValueError, OSError, RuntimeError):
                pass
        # futures of another loop cannot be completed from this one
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                try:
                    fut.get_loop().call_soon_threadsafe(_fail, fut, ConnectionError("event loop changed"))
                except RuntimeError:  # that loop is closed: nobody waits any more
                    pass

    async def run(self, submit: Callable[[], int], convert: Convert) -> Any:
        loop = self._reader()
        rid = submit()
        fut = loop.create_future()
        self._pending[rid] = (fut, convert)
        if self._tick is None:
            self._tick = loop.call_later(_TICK, self._on_tick)
        return await fut

    def _on_tick(self) -> None:
        # drain() also fails requests past their bound (and those a daemon restart lost);
        # with no other traffic nothing would call it, so it runs from a timer while any
        # request is pending.
        self._tick = None
        if self._pending:
            self._on_readable()
        if self._pending and self._loop is not None:
            self._tick = self._loop.call_later(_TICK, self._on_tick)

    def _on_readable(self) -> None:
        try:
            items = self._native.drain()
        except Exception as e:  # the client was closed (or the daemon is gone for good)
            self.fail_all(e)
            return
        for rid, value, is_error in items:
            entry = self._pending.pop(rid, None)
            if entry is None:
                continue  # its waiter was cancelled
            fut, convert = entry
            if fut.done():
                continue
            if is_error:
                fut.set_exception(value)
                continue
            try:
                fut.set_result(convert(value))
            except Exception as e:  # a callback could not convert the reply
                fut.set_exception(e)

    def fail_all(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for fut, _ in pending.values():
            _fail(fut, exc)
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if self._loop is not None and self._fd is not None and not self._loop.is_closed():
            try:
                self._loop.remove_reader(self._fd)
            except (ValueError, OSError, RuntimeError):
                pass
        self._loop = self._fd = None

    def __len__(self) -> int:
        return len(self._pending)


def _fail(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


class Client(Commands):
    """asyncio vshm client. Every command method is a coroutine function (``await c.get(k)``).
    One client per event loop (it follows the loop it is first used on)."""

    def __init__(self, native: Any, factory: Optional[Factory] = None) -> None:
        self._native = native
        self._factory = factory
        self._completions = Completions(native)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "Client":
        """See :meth:`vshm.Client.from_url` (same URL and options)."""
        factory = Factory("url", url, options)
        return cls(factory.make(), factory)

    @classmethod
    def from_daemon(cls, path: str, **options: Any) -> "Client":
        """See :meth:`vshm.Client.from_daemon`."""
        factory = Factory("daemon", path, options)
        return cls(factory.make(), factory)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        args = prepare(args)
        timeout = options.pop("request_timeout", None)
        name = callbacks.command_name(args)
        native = self._native
        return await self._completions.run(
            lambda: native.submit(args, timeout),
            lambda v: callbacks.apply(name, v, options),
        )

    async def _run_script(self, code: bytes, keys: list, args: list,
                          timeout: Optional[float] = None) -> Any:
        native = self._native
        return await self._completions.run(
            lambda: native.submit_script(code, keys, args, timeout=timeout), _same
        )

    async def _run_batch(self, commands: list, transaction: bool, timeout: Optional[float]) -> Any:
        native = self._native
        return await self._completions.run(
            lambda: native.submit_batch(commands, transaction, timeout=timeout), _same
        )

    # --- properties and lifetime --------------------------------------------------------
    @property
    def native(self) -> Any:
        return self._native

    @property
    def is_cluster(self) -> bool:
        return bool(self._native.is_cluster)

    @property
    def closed(self) -> bool:
        return bool(self._native.closed)

    async def aclose(self) -> None:
        """Close the client; requests still in flight fail with :class:`vshm.ConnectionError`."""
        self._native.close()
        self._completions.fail_all(ConnectionError("client closed"))

    close = aclose

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        target = self._factory.target if self._factory else "?"
        return f"<vshm.asyncio.Client {target!r}>"

    # --- pipelines, scripts, pub/sub ----------------------------------------------------
    def pipeline(self, transaction: bool = False, shard_hint: Any = None) -> "Pipeline":
        return Pipeline(self, transaction)

    def register_script(self, script: Any) -> Any:
        from ..script import Script

        return Script(self, script)

    def pubsub(self, ignore_subscribe_messages: bool = False, **kwargs: Any) -> Any:
        from .pubsub import PubSub

        if self._factory is None:
            raise TypeError("pubsub() needs a client made by from_url or from_daemon")
        return PubSub(self._factory.make(), ignore_subscribe_messages=ignore_subscribe_messages)

    # --- iterators ----------------------------------------------------------------------
    async def scan_iter(
        self, match: Optional[Any] = None, count: Optional[int] = None,
        _type: Optional[str] = None, **kwargs: Any,
    ) -> AsyncIterator[Any]:
        if self.is_cluster:
            loop = asyncio.get_running_loop()
            cursor = 0
            m = _b(match)
            t = _b(_type)
            while True:
                # cluster_scan blocks (one page): off the loop
                cursor, keys = await loop.run_in_executor(
                    None, self._native.cluster_scan, cursor, m, count or 10, t
                )
                for k in keys:
                    yield k
                if cursor == 0:
                    return
        cursor = 0
        while True:
            cursor, data = await self.scan(cursor=cursor, match=match, count=count, _type=_type)
            for k in data:
                yield k
            if cursor == 0:
                return

    async def sscan_iter(self, name: Any, match: Optional[Any] = None, count: Optional[int] = None) -> AsyncIterator[Any]:
        cursor = 0
        while True:
            cursor, data = await self.sscan(name, cursor=cursor, match=match, count=count)
            for x in data:
                yield x
            if cursor == 0:
                return

    async def hscan_iter(self, name: Any, match: Optional[Any] = None, count: Optional[int] = None) -> AsyncIterator[Any]:
        cursor = 0
        while True:
            cursor, data = await self.hscan(name, cursor=cursor, match=match, count=count)
            for item in data.items():
                yield item
            if cursor == 0:
                return

    async def zscan_iter(self, name: Any, match: Optional[Any] = None, count: Optional[int] = None) -> AsyncIterator[Any]:
        cursor = 0
        while True:
            cursor, data = await self.zscan(name, cursor=cursor, match=match, count=count)
            for x in data:
                yield x
            if cursor == 0:
                return


def _same(v: Any) -> Any:
    return v


def _b(x: Any) -> Optional[bytes]:
    if x is None:
        return None
    if isinstance(x, str):
        return x.encode("utf-8")
    return bytes(x)


class Pipeline(Commands):
    """asyncio pipeline: command methods queue (and return the pipeline);
    ``await pipe.execute()`` sends them. See :mod:`vshm.pipeline` for the semantics."""

    def __init__(self, client: Client, transaction: bool = False) -> None:
        self._client = client
        self._state = PipelineState(transaction)

    def __len__(self) -> int:
        return len(self._state.command_stack)

    def __bool__(self) -> bool:
        return True

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._state.reset()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._state.immediate():
            return self._client.execute_command(*args, **options)  # a coroutine
        self._state.queue(args, options)
        return self

    def _run_script(self, code: bytes, keys: list, args: list) -> Any:
        return self.execute_command("EVAL", code, len(keys), *keys, *args)

    async def watch(self, *names: Any) -> None:
        self._state.watch(names)
        self._state.add_watches(
            names, await self._client._run_script(WATCH_SNAPSHOT_LUA, list(names), [])
        )

    async def unwatch(self) -> None:
        self._state.unwatch()

    def multi(self) -> None:
        self._state.multi()

    async def reset(self) -> None:
        self._state.reset()

    async def execute(self, raise_on_error: bool = True, request_timeout: Optional[float] = None) -> List[Any]:
        state = self._state
        stack = state.command_stack
        if not stack:
            state.reset()
            return []
        commands, transaction, watched = state.batch()
        try:
            if watched is None:
                replies = await self._client._run_batch(
                    commands, transaction, request_timeout
                )
            else:
                replies = await self._client._run_script(
                    WATCH_EXEC_LUA, watched[0], watched[1], request_timeout
                )
        finally:
            state.reset()
        return state.results(stack, transaction, replies, raise_on_error)
