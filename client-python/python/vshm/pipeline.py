"""Pipelines and transactions (redis-py's ``Pipeline``).

``client.pipeline()`` queues commands; ``execute()`` sends them as one batch (the core's batch
op: one round trip per node) and returns their replies in order. With ``transaction=True`` (or
after ``multi()``) the batch is atomic: MULTI/EXEC, on a cluster all keys in one slot.

``watch(*keys)`` puts the pipeline in immediate mode (commands run at once, as in redis-py)
until ``multi()``; if a watched key changed between ``watch()`` and ``execute()``,
``execute()`` raises :class:`vshm.WatchError` and nothing ran.

How WATCH works here: the connections behind a vshm client are shared, so a server-side WATCH
cannot stay open between requests. Instead ``watch()`` takes a fingerprint of each watched key
(SHA-1 of its ``DUMP``, by a small script), and ``execute()`` sends the transaction as one Lua
script that compares the fingerprints and, only if none changed, runs the queued commands
(atomically, like MULTI/EXEC; error replies in place). Differences from a server WATCH: a key
rewritten with the same value, or whose TTL alone changed, does not count as changed; a command
the server refuses (unknown, wrong arity, not allowed in scripts) is an error in place rather
than aborting the transaction. See docs/python.md.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from . import callbacks
from ._common import prepare
from .commands import Commands
from .exceptions import VshmError, WatchError


# watch(): one fingerprint per key ("" for a missing key).
WATCH_SNAPSHOT_LUA = b"""
local r = {}
for i = 1, #KEYS do
  local d = redis.call('DUMP', KEYS[i])
  if d then r[i] = redis.sha1hex(d) else r[i] = '' end
end
return r
"""

# execute() of a watched transaction: KEYS = watched keys, ARGV = their fingerprints, then each
# queued command as its argument count followed by its arguments. nil if a key changed.
WATCH_EXEC_LUA = b"""
local n = #KEYS
for i = 1, n do
  local d = redis.call('DUMP', KEYS[i])
  local f = ''
  if d then f = redis.sha1hex(d) end
  if f ~= ARGV[i] then return false end
end
local out = {}
local i = n + 1
local j = 1
while i <= #ARGV do
  local argc = tonumber(ARGV[i])
  local cmd = {}
  for a = 1, argc do cmd[a] = ARGV[i + a] end
  i = i + argc + 1
  local ok, r = pcall(redis.call, unpack(cmd))
  if ok or (type(r) == 'table' and r.err) then
    out[j] = r
  else
    out[j] = redis.error_reply(tostring(r))
  end
  j = j + 1
end
return out
"""


class PipelineState:
    """The queue and the watch/multi state; shared by the sync and asyncio pipelines."""

    def __init__(self, transaction: bool) -> None:
        self.transaction = transaction
        self.command_stack: List[Tuple[Tuple[Any, ...], dict]] = []
        self.watches: List[Any] = []
        self.fingerprints: List[Any] = []
        self.watching = False
        self.explicit_transaction = False

    def immediate(self) -> bool:
        return self.watching and not self.explicit_transaction

    def queue(self, args: Tuple[Any, ...], options: dict) -> None:
        self.command_stack.append((prepare(args), options))

    def watch(self, names: Tuple[Any, ...]) -> None:
        if self.explicit_transaction:
            raise VshmError("Cannot issue a WATCH after a MULTI")
        if not names:
            raise ValueError("watch() needs at least one key")

    def add_watches(self, names: Tuple[Any, ...], fingerprints: Any) -> None:
        if not isinstance(fingerprints, list) or len(fingerprints) != len(names):
            raise VshmError(f"unexpected WATCH snapshot reply: {fingerprints!r}")
        self.watches.extend(names)
        self.fingerprints.extend(fingerprints)
        self.watching = True

    def multi(self) -> None:
        if self.explicit_transaction:
            raise VshmError("Cannot issue nested calls to MULTI")
        if self.command_stack:
            raise VshmError("Commands without an initial WATCH have already been issued")
        self.explicit_transaction = True

    def batch(self) -> Tuple[List[Tuple[Any, ...]], bool, Optional[Tuple[list, list]]]:
        """(commands, transaction, watched) for the native call: ``watched`` is None for a
        plain batch, else the (keys, args) of :data:`WATCH_EXEC_LUA`."""
        transaction = self.transaction or self.explicit_transaction
        commands = [args for args, _ in self.command_stack]
        if not (transaction and self.watches):
            return commands, transaction, None
        argv: List[Any] = list(self.fingerprints)
        for args in commands:
            argv.append(len(args))
            argv.extend(args)
        return commands, True, (list(self.watches), argv)

    def results(self, stack: List[Tuple[Tuple[Any, ...], dict]], transaction: bool,
                replies: Any, raise_on_error: bool) -> List[Any]:
        if replies is None:
            if transaction:
                raise WatchError("Watched variable changed.")
            replies = []
        out = [
            callbacks.apply(callbacks.command_name(args), reply, options)
            for (args, options), reply in zip(stack, replies)
        ]
        if raise_on_error:
            for r in out:
                if isinstance(r, Exception):
                    raise r
        return out

    def reset(self) -> None:
        self.command_stack = []
        self.watches = []
        self.fingerprints = []
        self.watching = False
        self.explicit_transaction = False

    def unwatch(self) -> None:
        self.watches = []
        self.fingerprints = []
        self.watching = False


class Pipeline(Commands):
    """Queue commands, send them with :meth:`execute`. Not thread-safe (one per thread)."""

    def __init__(self, client: Any, transaction: bool = False) -> None:
        self._client = client
        self._state = PipelineState(transaction)

    @property
    def command_stack(self) -> List[Tuple[Tuple[Any, ...], dict]]:
        return self._state.command_stack

    @property
    def watching(self) -> bool:
        return self._state.watching

    def __len__(self) -> int:
        return len(self._state.command_stack)

    def __bool__(self) -> bool:
        return True

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.reset()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._state.immediate():
            return self._client.execute_command(*args, **options)
        self._state.queue(args, options)
        return self

    def watch(self, *names: Any) -> None:
        """Watch keys: ``execute()`` raises :class:`vshm.WatchError` if one changed (see the
        module documentation for how)."""
        self._state.watch(names)
        self._state.add_watches(
            names, self._client._native.execute_script(WATCH_SNAPSHOT_LUA, list(names), [])
        )

    def unwatch(self) -> None:
        self._state.unwatch()

    def multi(self) -> None:
        self._state.multi()

    def reset(self) -> None:
        self._state.reset()

    def _run_script(self, code: bytes, keys: list, args: list) -> Any:
        return self.execute_command("EVAL", code, len(keys), *keys, *args)

    def execute(self, raise_on_error: bool = True, request_timeout: Optional[float] = None) -> List[Any]:
        """Send the queued commands; their replies in order (redis-py: with
        ``raise_on_error`` the first error reply is raised, else errors are in place)."""
        state = self._state
        stack = state.command_stack
        if not stack:
            state.reset()
            return []
        commands, transaction, watched = state.batch()
        native = self._client._native
        try:
            if watched is None:
                replies = native.execute_batch(
                    commands, transaction, timeout=request_timeout
                )
            else:
                replies = native.execute_script(WATCH_EXEC_LUA, watched[0], watched[1],
                                                timeout=request_timeout)
        finally:
            state.reset()
        return state.results(stack, transaction, replies, raise_on_error)
