"""The sync client: a native client (``vshm._native.NativeClient``) plus redis-py-named command
methods and response callbacks."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Optional

from . import callbacks
from ._common import Factory, prepare
from .commands import Commands
from .exceptions import WatchError

_NO_ROUTE = object()


class Client(Commands):
    """A vshm client (thread-safe: one client can serve every thread of a process).

    Make one with :meth:`from_url` (the in-process core) or :meth:`from_daemon` (through
    ``vshmd``). A client made before ``os.fork()`` works in the child as it is.
    """

    def __init__(self, native: Any, factory: Optional[Factory] = None) -> None:
        self._native = native
        self._factory = factory

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_url(cls, url: str, **options: Any) -> "Client":
        """A client of the in-process (embedded) core for ``url``
        (``valkey://[user:pass@]host:port[/db][?cluster=1&protocol=3...]``; also ``redis://``,
        ``valkeys://``/``rediss://`` for TLS).

        Options: ``timeout`` (request deadline, seconds), ``connect_timeout``, ``client_name``,
        ``username``, ``password``, ``read_from_replica``, ``sq_size``, ``cq_size``,
        ``decode_responses``, ``encoding``.
        """
        factory = Factory("url", url, options)
        return cls(factory.make(), factory)

    @classmethod
    def from_daemon(cls, path: str, **options: Any) -> "Client":
        """A client of the ``vshmd`` daemon listening on the unix socket ``path`` (same
        options as :meth:`from_url`; the daemon's configuration names the servers)."""
        factory = Factory("daemon", path, options)
        return cls(factory.make(), factory)

    # --- the one way commands go out ----------------------------------------------------
    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Send one command and return its reply, converted as redis-py does.

        Raises :class:`vshm.ResponseError` for an error reply, :class:`vshm.InvalidRequest`
        for a refused connection-state command, ``TypeError`` for an argument that is not
        bytes/str/int/float (nothing is sent then). Options: ``request_timeout`` (seconds, this
        call's deadline), ``route`` (passed to the native client), and callback options.
        """
        args = prepare(args)
        timeout = options.pop("request_timeout", None)
        route = options.pop("route", None)
        if route is None:
            reply = self._native.execute(args, timeout)
        else:
            reply = self._native.execute(args, timeout, route)
        return callbacks.apply(callbacks.command_name(args), reply, options)

    # --- properties and lifetime --------------------------------------------------------
    @property
    def native(self) -> Any:
        """The ``vshm._native.NativeClient`` behind this client."""
        return self._native

    @property
    def is_cluster(self) -> bool:
        return bool(self._native.is_cluster)

    @property
    def closed(self) -> bool:
        return bool(self._native.closed)

    @property
    def decode_responses(self) -> bool:
        return bool(self._native.decode_responses)

    def close(self) -> None:
        """Close the client (idempotent); later calls raise :class:`vshm.ConnectionError`."""
        self._native.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        target = self._factory.target if self._factory else "?"
        kind = self._factory.kind if self._factory else "native"
        return f"<vshm.Client {kind}={target!r} cluster={self.is_cluster}>"

    # --- pipelines, transactions, scripts, pub/sub --------------------------------------
    def pipeline(self, transaction: bool = False, shard_hint: Any = None) -> "Pipeline":
        """A pipeline: commands are queued and sent together by ``execute()``. With
        ``transaction=True`` they run as MULTI/EXEC (cluster: all keys in one slot)."""
        from .pipeline import Pipeline

        return Pipeline(self, transaction)

    def transaction(
        self, func: Callable[["Pipeline"], Any], *watches: Any,
        shard_hint: Any = None, value_from_callable: bool = False,
        watch_delay: Optional[float] = None,
    ) -> Any:
        """Run ``func(pipe)`` with ``watches`` watched, retrying on :class:`WatchError`
        (redis-py's helper). Returns ``pipe.execute()``'s result (or ``func``'s with
        ``value_from_callable=True``)."""
        import time

        with self.pipeline(transaction=True) as pipe:
            while True:
                try:
                    if watches:
                        pipe.watch(*watches)
                    func_value = func(pipe)
                    exec_value = pipe.execute()
                    return func_value if value_from_callable else exec_value
                except WatchError:
                    if watch_delay is not None and watch_delay > 0:
                        time.sleep(watch_delay)
                    continue

    def register_script(self, script: Any) -> "Script":
        """A callable :class:`vshm.script.Script` (EVALSHA, loading the script on NOSCRIPT)."""
        from .script import Script

        return Script(self, script)

    def _run_script(self, code: bytes, keys: list, args: list) -> Any:
        return self._native.execute_script(code, keys, args)

    def pubsub(self, ignore_subscribe_messages: bool = False, **kwargs: Any) -> "PubSub":
        """A :class:`vshm.pubsub.PubSub` on a native client of its own (same URL/daemon and
        options as this client)."""
        from .pubsub import PubSub

        if self._factory is None:
            raise TypeError("pubsub() needs a client made by from_url or from_daemon")
        return PubSub(self._factory.make(), ignore_subscribe_messages=ignore_subscribe_messages)

    # --- iterators ----------------------------------------------------------------------
    def scan_iter(
        self, match: Optional[Any] = None, count: Optional[int] = None,
        _type: Optional[str] = None, **kwargs: Any,
    ) -> Iterator[Any]:
        """Every key (matching ``match``/``_type``); on a cluster, of every primary (through
        the core's cluster scan)."""
        if self.is_cluster:
            cursor = 0
            m = _b(match)
            t = _b(_type)
            while True:
                cursor, keys = self._native.cluster_scan(cursor, m, count or 10, t)
                yield from keys
                if cursor == 0:
                    return
        cursor = 0
        while True:
            cursor, data = self.scan(cursor=cursor, match=match, count=count, _type=_type)
            yield from data
            if cursor == 0:
                return

    def sscan_iter(self, name: Any, match: Optional[Any] = None, count: Optional[int] = None) -> Iterator[Any]:
        cursor = 0
        while True:
            cursor, data = self.sscan(name, cursor=cursor, match=match, count=count)
            yield from data
            if cursor == 0:
                return

    def hscan_iter(
        self, name: Any, match: Optional[Any] = None, count: Optional[int] = None,
        no_values: Optional[bool] = None,
    ) -> Iterator[Any]:
        cursor = 0
        while True:
            cursor, data = self.hscan(name, cursor=cursor, match=match, count=count, no_values=no_values)
            if no_values:
                yield from data
            else:
                yield from data.items()
            if cursor == 0:
                return

    def zscan_iter(
        self, name: Any, match: Optional[Any] = None, count: Optional[int] = None,
        score_cast_func: Any = float,
    ) -> Iterator[Any]:
        cursor = 0
        while True:
            cursor, data = self.zscan(name, cursor=cursor, match=match, count=count,
                                      score_cast_func=score_cast_func)
            yield from data
            if cursor == 0:
                return


def _b(x: Any) -> Optional[bytes]:
    if x is None:
        return None
    if isinstance(x, str):
        return x.encode("utf-8")
    return bytes(x)


from .pipeline import Pipeline  # noqa: E402,F401  (for the annotations)
from .pubsub import PubSub  # noqa: E402,F401
from .script import Script  # noqa: E402,F401
