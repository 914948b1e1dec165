"""redis-py-named command methods, as a mixin over ``execute_command``.

Every method builds the command's arguments and returns ``self.execute_command(...)``: the sync
client returns the reply, the asyncio client a coroutine, a pipeline queues the command and
returns the pipeline. Reply conversions (``SET`` -> ``True``, ``HGETALL`` -> ``dict``, ...) are
the response callbacks of :mod:`vshm.callbacks`, applied by ``execute_command``.

Names, parameters and return types follow redis-py (``redis.commands.core``). Iterators
(``scan_iter`` and friends) are in the clients, because the asyncio ones are async generators.
"""

from __future__ import annotations

import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

KeyT = Union[bytes, str, memoryview]
EncodableT = Union[bytes, bytearray, memoryview, str, int, float]
ExpiryT = Union[int, datetime.timedelta]
AbsExpiryT = Union[int, datetime.datetime]


def _seconds(value: ExpiryT) -> int:
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds())
    return value


def _millis(value: ExpiryT) -> int:
    if isinstance(value, datetime.timedelta):
        return int(value.total_seconds() * 1000)
    return value


def _unix(value: AbsExpiryT, ms: bool) -> int:
    if isinstance(value, datetime.datetime):
        t = value.timestamp()
        return int(t * 1000) if ms else int(t)
    return value


def _list(keys: Any, args: Sequence[Any] = ()) -> List[Any]:
    """redis-py's list_or_args: ``keys`` may be one key or an iterable of keys."""
    if isinstance(keys, (bytes, str, memoryview, bytearray, int, float)):
        out = [keys]
    else:
        out = list(keys)
    out.extend(args)
    return out


def _expiry_flags(nx: bool, xx: bool, gt: bool, lt: bool) -> List[str]:
    flags = []
    if nx:
        flags.append("NX")
    if xx:
        flags.append("XX")
    if gt:
        flags.append("GT")
    if lt:
        flags.append("LT")
    return flags


class CoreCommands:
    """Strings, counters, keys and expiry, server."""

    def execute_command(self, *args: Any, **options: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    # --- strings ------------------------------------------------------------------------
    def get(self, name: KeyT) -> Any:
        return self.execute_command("GET", name)

    def set(
        self,
        name: KeyT,
        value: EncodableT,
        ex: Optional[ExpiryT] = None,
        px: Optional[ExpiryT] = None,
        nx: bool = False,
        xx: bool = False,
        keepttl: bool = False,
        get: bool = False,
        exat: Optional[AbsExpiryT] = None,
        pxat: Optional[AbsExpiryT] = None,
    ) -> Any:
        pieces: List[Any] = ["SET", name, value]
        options: Dict[str, Any] = {}
        if ex is not None:
            pieces += ["EX", _seconds(ex)]
        if px is not None:
            pieces += ["PX", _millis(px)]
        if exat is not None:
            pieces += ["EXAT", _unix(exat, False)]
        if pxat is not None:
            pieces += ["PXAT", _unix(pxat, True)]
        if keepttl:
            pieces.append("KEEPTTL")
        if nx:
            pieces.append("NX")
        if xx:
            pieces.append("XX")
        if get:
            pieces.append("GET")
            options["get"] = True
        return self.execute_command(*pieces, **options)

    def __getitem__(self, name: KeyT) -> Any:
        return self.get(name)

    def __setitem__(self, name: KeyT, value: EncodableT) -> None:
        self.set(name, value)

    def setex(self, name: KeyT, time: ExpiryT, value: EncodableT) -> Any:
        return self.execute_command("SETEX", name, _seconds(time), value)

    def psetex(self, name: KeyT, time_ms: ExpiryT, value: EncodableT) -> Any:
        return self.execute_command("PSETEX", name, _millis(time_ms), value)

    def setnx(self, name: KeyT, value: EncodableT) -> Any:
        return self.execute_command("SETNX", name, value)

    def getset(self, name: KeyT, value: EncodableT) -> Any:
        return self.execute_command("GETSET", name, value)

    def getdel(self, name: KeyT) -> Any:
        return self.execute_command("GETDEL", name)

    def getex(
        self,
        name: KeyT,
        ex: Optional[ExpiryT] = None,
        px: Optional[ExpiryT] = None,
        exat: Optional[AbsExpiryT] = None,
        pxat: Optional[AbsExpiryT] = None,
        persist: bool = False,
    ) -> Any:
        pieces: List[Any] = ["GETEX", name]
        if ex is not None:
            pieces += ["EX", _seconds(ex)]
        if px is not None:
            pieces += ["PX", _millis(px)]
        if exat is not None:
            pieces += ["EXAT", _unix(exat, False)]
        if pxat is not None:
            pieces += ["PXAT", _unix(pxat, True)]
        if persist:
            pieces.append("PERSIST")
        return self.execute_command(*pieces)

    def mget(self, keys: Any, *args: Any) -> Any:
        return self.execute_command("MGET", *_list(keys, args))

    def mset(self, mapping: Mapping[Any, Any]) -> Any:
        pieces: List[Any] = []
        for k, v in mapping.items():
            pieces += [k, v]
        return self.execute_command("MSET", *pieces)

    def msetnx(self, mapping: Mapping[Any, Any]) -> Any:
        pieces: List[Any] = []
        for k, v in mapping.items():
            pieces += [k, v]
        return self.execute_command("MSETNX", *pieces)

    def append(self, key: KeyT, value: EncodableT) -> Any:
        return self.execute_command("APPEND", key, value)

    def strlen(self, name: KeyT) -> Any:
        return self.execute_command("STRLEN", name)

    def getrange(self, key: KeyT, start: int, end: int) -> Any:
        return self.execute_command("GETRANGE", key, start, end)

    def setrange(self, name: KeyT, offset: int, value: EncodableT) -> Any:
        return self.execute_command("SETRANGE", name, offset, value)

    def getbit(self, name: KeyT, offset: int) -> Any:
        return self.execute_command("GETBIT", name, offset)

    def setbit(self, name: KeyT, offset: int, value: int) -> Any:
        return self.execute_command("SETBIT", name, offset, 1 if value else 0)

    def bitcount(self, key: KeyT, start: Optional[int] = None, end: Optional[int] = None) -> Any:
        pieces: List[Any] = ["BITCOUNT", key]
        if start is not None and end is not None:
            pieces += [start, end]
        return self.execute_command(*pieces)

    # --- counters -----------------------------------------------------------------------
    def incr(self, name: KeyT, amount: int = 1) -> Any:
        return self.incrby(name, amount)

    def incrby(self, name: KeyT, amount: int = 1) -> Any:
        return self.execute_command("INCRBY", name, amount)

    def incrbyfloat(self, name: KeyT, amount: float = 1.0) -> Any:
        return self.execute_command("INCRBYFLOAT", name, amount)

    def decr(self, name: KeyT, amount: int = 1) -> Any:
        return self.decrby(name, amount)

    def decrby(self, name: KeyT, amount: int = 1) -> Any:
        return self.execute_command("DECRBY", name, amount)

    # --- keys and expiry ----------------------------------------------------------------
    def delete(self, *names: KeyT) -> Any:
        return self.execute_command("DEL", *names)

    def __delitem__(self, name: KeyT) -> None:
        self.delete(name)

    def unlink(self, *names: KeyT) -> Any:
        return self.execute_command("UNLINK", *names)

    def exists(self, *names: KeyT) -> Any:
        return self.execute_command("EXISTS", *names)

    __contains__ = exists

    def type(self, name: KeyT) -> Any:
        return self.execute_command("TYPE", name)

    def keys(self, pattern: KeyT = "*") -> Any:
        return self.execute_command("KEYS", pattern)

    def rename(self, src: KeyT, dst: KeyT) -> Any:
        return self.execute_command("RENAME", src, dst)

    def renamenx(self, src: KeyT, dst: KeyT) -> Any:
        return self.execute_command("RENAMENX", src, dst)

    def copy(self, source: KeyT, destination: KeyT, replace: bool = False) -> Any:
        pieces: List[Any] = ["COPY", source, destination]
        if replace:
            pieces.append("REPLACE")
        return self.execute_command(*pieces)

    def touch(self, *names: KeyT) -> Any:
        return self.execute_command("TOUCH", *names)

    def randomkey(self) -> Any:
        return self.execute_command("RANDOMKEY")

    def dump(self, name: KeyT) -> Any:
        return self.execute_command("DUMP", name)

    def restore(self, name: KeyT, ttl: int, value: bytes, replace: bool = False) -> Any:
        pieces: List[Any] = ["RESTORE", name, ttl, value]
        if replace:
            pieces.append("REPLACE")
        return self.execute_command(*pieces)

    def expire(
        self, name: KeyT, time: ExpiryT, nx: bool = False, xx: bool = False,
        gt: bool = False, lt: bool = False,
    ) -> Any:
        return self.execute_command("EXPIRE", name, _seconds(time), *_expiry_flags(nx, xx, gt, lt))

    def pexpire(
        self, name: KeyT, time: ExpiryT, nx: bool = False, xx: bool = False,
        gt: bool = False, lt: bool = False,
    ) -> Any:
        return self.execute_command("PEXPIRE", name, _millis(time), *_expiry_flags(nx, xx, gt, lt))

    def expireat(
        self, name: KeyT, when: AbsExpiryT, nx: bool = False, xx: bool = False,
        gt: bool = False, lt: bool = False,
    ) -> Any:
        return self.execute_command(
            "EXPIREAT", name, _unix(when, False), *_expiry_flags(nx, xx, gt, lt)
        )

    def pexpireat(
        self, name: KeyT, when: AbsExpiryT, nx: bool = False, xx: bool = False,
        gt: bool = False, lt: bool = False,
    ) -> Any:
        return self.execute_command(
            "PEXPIREAT", name, _unix(when, True), *_expiry_flags(nx, xx, gt, lt)
        )

    def persist(self, name: KeyT) -> Any:
        return self.execute_command("PERSIST", name)

    def ttl(self, name: KeyT) -> Any:
        return self.execute_command("TTL", name)

    def pttl(self, name: KeyT) -> Any:
        return self.execute_command("PTTL", name)

    def expiretime(self, key: KeyT) -> Any:
        return self.execute_command("EXPIRETIME", key)

    def scan(
        self, cursor: int = 0, match: Optional[KeyT] = None, count: Optional[int] = None,
        _type: Optional[str] = None,
    ) -> Any:
        pieces: List[Any] = ["SCAN", cursor]
        if match is not None:
            pieces += ["MATCH", match]
        if count is not None:
            pieces += ["COUNT", count]
        if _type is not None:
            pieces += ["TYPE", _type]
        return self.execute_command(*pieces)

    # --- server -------------------------------------------------------------------------
    def ping(self) -> Any:
        return self.execute_command("PING")

    def echo(self, value: EncodableT) -> Any:
        return self.execute_command("ECHO", value)

    def info(self, section: Optional[str] = None, *args: str) -> Any:
        if section is None:
            return self.execute_command("INFO")
        return self.execute_command("INFO", section, *args)

    def dbsize(self) -> Any:
        return self.execute_command("DBSIZE")

    def flushdb(self, asynchronous: bool = False) -> Any:
        return self.execute_command("FLUSHDB", *(["ASYNC"] if asynchronous else []))

    def flushall(self, asynchronous: bool = False) -> Any:
        return self.execute_command("FLUSHALL", *(["ASYNC"] if asynchronous else []))

    def time(self) -> Any:
        return self.execute_command("TIME")

    def config_get(self, pattern: str = "*", *args: str) -> Any:
        return self.execute_command("CONFIG GET", pattern, *args)

    def config_set(self, name: str, value: EncodableT, *args: Any) -> Any:
        return self.execute_command("CONFIG SET", name, value, *args)

    def client_id(self) -> Any:
        return self.execute_command("CLIENT ID")

    def client_getname(self) -> Any:
        return self.execute_command("CLIENT GETNAME")

    def client_info(self) -> Any:
        return self.execute_command("CLIENT INFO")

    def client_list(self) -> Any:
        return self.execute_command("CLIENT LIST")

    def memory_usage(self, key: KeyT, samples: Optional[int] = None) -> Any:
        pieces: List[Any] = ["MEMORY USAGE", key]
        if samples is not None:
            pieces += ["SAMPLES", samples]
        return self.execute_command(*pieces)

    def object(self, infotype: str, key: KeyT) -> Any:
        return self.execute_command("OBJECT", infotype, key)

    def wait(self, num_replicas: int, timeout: int) -> Any:
        return self.execute_command("WAIT", num_replicas, timeout)

    # --- pub/sub publishing (subscribing is PubSub's) -----------------------------------
    def publish(self, channel: KeyT, message: EncodableT) -> Any:
        return self.execute_command("PUBLISH", channel, message)

    def spublish(self, shard_channel: KeyT, message: EncodableT) -> Any:
        return self.execute_command("SPUBLISH", shard_channel, message)

    def pubsub_channels(self, pattern: KeyT = "*") -> Any:
        return self.execute_command("PUBSUB CHANNELS", pattern)

    def pubsub_numsub(self, *args: KeyT) -> Any:
        return self.execute_command("PUBSUB NUMSUB", *args)

    # --- scripting and functions --------------------------------------------------------
    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self.execute_command("EVAL", script, numkeys, *keys_and_args)

    def eval_ro(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self.execute_command("EVAL_RO", script, numkeys, *keys_and_args)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def script_load(self, script: str) -> Any:
        return self.execute_command("SCRIPT LOAD", script)

    def script_exists(self, *args: str) -> Any:
        return self.execute_command("SCRIPT EXISTS", *args)

    def script_flush(self, sync_type: Optional[str] = None) -> Any:
        return self.execute_command("SCRIPT FLUSH", *([sync_type] if sync_type else []))

    def fcall(self, function: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self.execute_command("FCALL", function, numkeys, *keys_and_args)

    def fcall_ro(self, function: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self.execute_command("FCALL_RO", function, numkeys, *keys_and_args)

    def function_load(self, code: str, replace: bool = False) -> Any:
        pieces: List[Any] = ["FUNCTION LOAD"]
        if replace:
            pieces.append("REPLACE")
        pieces.append(code)
        return self.execute_command(*pieces)

    def function_delete(self, library: str) -> Any:
        return self.execute_command("FUNCTION DELETE", library)

    def function_flush(self, mode: str = "SYNC") -> Any:
        return self.execute_command("FUNCTION FLUSH", mode)

    def function_list(self, library: Optional[str] = "*", withcode: bool = False) -> Any:
        pieces: List[Any] = ["FUNCTION LIST"]
        if library is not None:
            pieces += ["LIBRARYNAME", library]
        if withcode:
            pieces.append("WITHCODE")
        return self.execute_command(*pieces)


from .commands_data import DataCommands  # noqa: E402  (the second half of the mixin)
from .commands_data import StreamCommands  # noqa: E402


class Commands(CoreCommands, DataCommands, StreamCommands):
    """Every command method (the mixin of the clients and pipelines)."""


__all__ = ["Commands"]
