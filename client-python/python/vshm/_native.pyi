"""Stubs of the native module ``vshm._native`` (Rust, PyO3, abi3).

The contract with the Python layer is in docs/python.md ("Native module").
Every blocking call releases the GIL, is bounded (the request's timeout
plus the client's transport margin) and checks for signals at least every
100 ms: KeyboardInterrupt abandons the request (its late reply is
discarded) and leaves the client usable.
"""

from os import PathLike
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

__version__: str

Arg = Union[bytes, bytearray, memoryview, str, int, float]
"""A command argument: bytes-like as is, str as UTF-8, int as decimal,
float as repr() (bool and anything else: TypeError, before sending)."""

Route = Union[
    None,
    str,  # "auto", "all_nodes", "all_primaries", "random"
    Tuple[str, Any],  # ("key", key), ("slot", 0..16383)
    Tuple[str, Any, Any],  # ("key", key, replica), ("slot", n, replica), ("address", host, port)
]

class VshmError(Exception):
    """Base class of every vshm error."""

class ConnectionError(VshmError):
    """Transport failure: daemon gone (the next call re-registers), server
    unreachable, or the client is closed."""

class TimeoutError(VshmError):
    """The request's deadline passed; its late reply is discarded."""

class ResponseError(VshmError):
    """The server's error reply. str(e) is the full message."""

    code: Optional[str]
    """The message's first word, e.g. "WRONGTYPE" (None on instances not
    made by the native module)."""

class InvalidRequest(VshmError):
    """Refused by the core before sending (the message names the
    alternative, e.g. SUBSCRIBE -> the pub/sub API)."""

class NativeClient:
    """One client of the vshm core. Thread-safe: one instance may be used
    by many threads at once. Works in a child after fork() (it
    re-registers; requests submitted before the fork complete with
    ConnectionError in the child)."""

    @staticmethod
    def from_url(
        url: str,
        *,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        client_name: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        read_from_replica: bool = False,
        sq_size: Optional[int] = None,
        cq_size: Optional[int] = None,
        decode_responses: bool = False,
        encoding: str = "utf-8",
    ) -> "NativeClient":
        """A client of the in-process core (one per process, started on
        first use). url: ``valkey://[user[:pass]@]host[:port][,host:port...][/db]``
        ``[?cluster=1&db=0&protocol=3&name=..&timeout_ms=..&connect_timeout_ms=..``
        ``&read_from=primary|prefer_replica|round_robin_replicas&max_inflight=..&threads=..&tls=1&ca_file=..]``;
        also ``redis://``, ``valkeys://``/``rediss://`` (TLS). Keyword
        options override the URL. timeout: default request timeout in
        seconds (the core's default: 0.25). Raises ValueError for a bad URL
        or option, ConnectionError when the server cannot be reached."""

    @staticmethod
    def from_daemon(
        path: Union[str, "PathLike[str]"],
        *,
        timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        client_name: Optional[str] = None,
        username: None = None,
        password: None = None,
        read_from_replica: bool = False,
        sq_size: Optional[int] = None,
        cq_size: Optional[int] = None,
        decode_responses: bool = False,
        encoding: str = "utf-8",
        auth_profile: Optional[str] = None,
        database: Optional[int] = None,
    ) -> "NativeClient":
        """A client served by vshmd listening on the Unix socket ``path``.
        Servers, credentials and replica reads are vshmd's configuration:
        username/password/read_from_replica raise ValueError (use
        auth_profile, one of the daemon's auth profiles). After a daemon
        restart the in-flight requests fail with ConnectionError and the
        next call re-registers. connect_timeout defaults to 5 s."""

    def execute(
        self, args: Sequence[Arg], timeout: Optional[float] = None, route: Route = None
    ) -> Any:
        """Run one command and return its reply (see "Reply conversion").
        Raises ResponseError for an error reply; TypeError/ValueError for
        bad arguments (nothing is sent)."""

    def submit(
        self, args: Sequence[Arg], timeout: Optional[float] = None, route: Route = None
    ) -> int:
        """Send one command without waiting; returns the request id. Its
        completion comes from drain() or wait(id)."""

    def submit_batch(
        self,
        commands: Sequence[Sequence[Arg]],
        transaction: bool,
        watch: Optional[Sequence[Arg]] = None,
        timeout: Optional[float] = None,
    ) -> int: ...
    def submit_script(
        self,
        code: Union[bytes, str],
        keys: Sequence[Arg],
        args: Sequence[Arg],
        timeout: Optional[float] = None,
    ) -> int: ...
    def execute_batch(
        self,
        commands: Sequence[Sequence[Arg]],
        transaction: bool,
        watch: Optional[Sequence[Arg]] = None,
        timeout: Optional[float] = None,
    ) -> Optional[List[Any]]:
        """Pipeline (transaction=False): one result per command, error
        replies in place as ResponseError instances (not raised).
        Transaction (MULTI/EXEC, all keys in one slot on a cluster): the
        EXEC results with errors in place, or None when a WATCHed key
        changed. An aborted transaction (EXECABORT) raises ResponseError.
        watch without transaction, or an empty batch: ValueError."""

    def execute_script(
        self,
        code: Union[bytes, str],
        keys: Sequence[Arg],
        args: Sequence[Arg],
        timeout: Optional[float] = None,
    ) -> Any:
        """Run a Lua script by its SHA1 (EVALSHA; the core loads it on
        NOSCRIPT and caches the hash). Routed by the first key."""

    def fileno(self) -> int:
        """An eventfd that becomes readable when completions arrive (for
        loop.add_reader). Owned by the client (do not close it); the same
        number for the client's lifetime, also after a re-registration or
        in a forked child (where it is a fresh eventfd). Spurious
        readiness is possible (drain() then returns [])."""

    def drain(self) -> List[Tuple[int, Any, bool]]:
        """Non-blocking: every completed submitted request as (id,
        value_or_exception, is_error); resets fileno(). Requests past their
        bound (timeout + margin) are returned failed with TimeoutError, so
        call drain() also from a timer while requests are pending."""

    def wait(self, id: int, timeout: Optional[float] = None) -> Any:
        """Block until submitted request ``id`` completes and return its
        value (raise its error). timeout None: the request's own bound. On
        timeout or KeyboardInterrupt the request is abandoned. ValueError
        for an unknown id (never submitted, or already taken by drain)."""

    def subscribe(self, kind: int, channels: Sequence[Arg]) -> int:
        """kind 0: SUBSCRIBE, 1: PSUBSCRIBE, 2: SSUBSCRIBE. Returns once the
        server confirmed, with this client's subscription count; one
        confirmation per channel is queued for get_push ([b"subscribe",
        b"ch", n]). Subscriptions survive re-registrations (replayed)."""

    def unsubscribe(self, kind: int, channels: Sequence[Arg]) -> int:
        """An empty list: every channel of that kind. Delivery stops at
        once; confirmations ([b"unsubscribe", b"ch", n]) are queued."""

    def get_push(self, timeout: Optional[float] = None) -> Optional[List[Any]]:
        """The next pub/sub message: [b"message", ch, data],
        [b"pmessage", pattern, ch, data], [b"smessage", ch, data], or a
        (un)subscribe confirmation [kind, ch, count]. None when nothing
        came within timeout seconds (0: poll; None: wait until one comes,
        interruptible with Ctrl-C). ConnectionError if the daemon went away
        (the next call re-registers and resubscribes)."""

    def cluster_scan(
        self,
        cursor: int,
        match: Optional[Arg] = None,
        count: int = 0,
        type: Optional[Arg] = None,
        timeout: Optional[float] = None,
    ) -> Tuple[int, List[Any]]:
        """One SCAN step over every node of a cluster (plain SCAN on a
        standalone server): (next_cursor, keys); start at 0, done at 0."""

    def close(self) -> None:
        """Idempotent. Later calls (drain() included) raise ConnectionError:
        an event loop layer fails its own pending futures on close. Threads
        blocked in wait(id) get ConnectionError."""

    @property
    def closed(self) -> bool: ...
    @property
    def is_cluster(self) -> bool:
        """In-process: the URL's cluster=1. Through vshmd: asked once from
        the servers (INFO cluster) on first read, then cached."""

    @property
    def decode_responses(self) -> bool: ...
