"""asyncio pub/sub: ``p = client.pubsub(); await p.subscribe("ch"); await p.get_message(timeout=1)``.

Messages are the redis-py dicts of :mod:`vshm.pubsub`. Waiting for a message runs the native
client's blocking wait in the loop's default executor, in bounded slices (at most 0.5 s), so a
waiting ``get_message``/``listen`` ties up one executor thread per PubSub, never the loop. A wait
cancelled (e.g. by ``asyncio.wait_for``) loses no message: the slice still running is reused by
the next call.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Dict, Optional

from ..pubsub import EXACT, PATTERN, SHARDED, Handler, PubSubCore

_SLICE = 0.5


class PubSub(PubSubCore):
    def __init__(self, native: Any, ignore_subscribe_messages: bool = False) -> None:
        super().__init__(native, ignore_subscribe_messages)
        self._inflight: Optional[asyncio.Future] = None

    async def subscribe(self, *args: Any, **kwargs: Handler) -> None:
        self._subscribe(EXACT, args, kwargs)

    async def psubscribe(self, *args: Any, **kwargs: Handler) -> None:
        self._subscribe(PATTERN, args, kwargs)

    async def ssubscribe(self, *args: Any, **kwargs: Handler) -> None:
        self._subscribe(SHARDED, args, kwargs)

    async def unsubscribe(self, *args: Any) -> None:
        self._unsubscribe(EXACT, args)

    async def punsubscribe(self, *args: Any) -> None:
        self._unsubscribe(PATTERN, args)

    async def sunsubscribe(self, *args: Any) -> None:
        self._unsubscribe(SHARDED, args)

    async def _next_push(self, timeout: Optional[float]) -> Any:
        if self._inflight is None:
            push = self._native.get_push(0)
            if push is not None or timeout == 0:
                return push
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._inflight is None:
                left = _SLICE if deadline is None else min(_SLICE, deadline - loop.time())
                if left <= 0:
                    return None
                self._inflight = loop.run_in_executor(None, self._native.get_push, left)
            # shield: a cancelled caller leaves the slice running; the next call takes its push
            push = await asyncio.shield(self._inflight)
            self._inflight = None
            if push is not None:
                return push

    async def get_message(self, ignore_subscribe_messages: bool = False, timeout: Optional[float] = 0.0) -> Optional[Dict[str, Any]]:
        """The next message, or None after ``timeout`` seconds (0: do not wait; None: wait)."""
        push = await self._next_push(timeout)
        if push is None:
            return None
        return self.handle_message(push, ignore_subscribe_messages)

    async def listen(self) -> AsyncIterator[Dict[str, Any]]:
        while self.subscribed:
            push = await self._next_push(1.0)
            if push is None:
                continue
            message = self.handle_message(push)
            if message is not None:
                yield message

    async def run(self, poll_timeout: float = 1.0) -> None:
        """Call the handlers until cancelled (every subscription needs a handler)."""
        self._check_handlers()
        while True:
            await self.get_message(ignore_subscribe_messages=True, timeout=poll_timeout)

    async def aclose(self) -> None:
        self._native.close()

    close = aclose
    reset = aclose

    async def __aenter__(self) -> "PubSub":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
