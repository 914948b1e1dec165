"""Command methods of the data types: hashes, lists (with blocking pops), sets, sorted sets and
streams. Part of the :class:`vshm.commands.Commands` mixin; see there."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

KeyT = Union[bytes, str, memoryview]
EncodableT = Union[bytes, bytearray, memoryview, str, int, float]


def _list(keys: Any, args: Sequence[Any] = ()) -> List[Any]:
    if isinstance(keys, (bytes, str, memoryview, bytearray, int, float)):
        out = [keys]
    else:
        out = list(keys)
    out.extend(args)
    return out


def _timeout(timeout: Optional[float]) -> Union[int, float]:
    return 0 if timeout is None else timeout


class DataCommands:
    def execute_command(self, *args: Any, **options: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    # --- hashes -------------------------------------------------------------------------
    def hget(self, name: KeyT, key: KeyT) -> Any:
        return self.execute_command("HGET", name, key)

    def hset(
        self,
        name: KeyT,
        key: Optional[KeyT] = None,
        value: Optional[EncodableT] = None,
        mapping: Optional[Mapping[Any, Any]] = None,
        items: Optional[Sequence[Any]] = None,
    ) -> Any:
        if key is None and not mapping and not items:
            raise ValueError("'hset' with no key value pairs")
        pieces: List[Any] = []
        if items:
            pieces.extend(items)
        if key is not None:
            pieces += [key, value]
        if mapping:
            for k, v in mapping.items():
                pieces += [k, v]
        return self.execute_command("HSET", name, *pieces)

    def hsetnx(self, name: KeyT, key: KeyT, value: EncodableT) -> Any:
        return self.execute_command("HSETNX", name, key, value)

    def hmset(self, name: KeyT, mapping: Mapping[Any, Any]) -> Any:
        pieces: List[Any] = []
        for k, v in mapping.items():
            pieces += [k, v]
        return self.execute_command("HMSET", name, *pieces)

    def hmget(self, name: KeyT, keys: Any, *args: Any) -> Any:
        return self.execute_command("HMGET", name, *_list(keys, args))

    def hgetall(self, name: KeyT) -> Any:
        return self.execute_command("HGETALL", name)

    def hdel(self, name: KeyT, *keys: KeyT) -> Any:
        return self.execute_command("HDEL", name, *keys)

    def hexists(self, name: KeyT, key: KeyT) -> Any:
        return self.execute_command("HEXISTS", name, key)

    def hincrby(self, name: KeyT, key: KeyT, amount: int = 1) -> Any:
        return self.execute_command("HINCRBY", name, key, amount)

    def hincrbyfloat(self, name: KeyT, key: KeyT, amount: float = 1.0) -> Any:
        return self.execute_command("HINCRBYFLOAT", name, key, amount)

    def hkeys(self, name: KeyT) -> Any:
        return self.execute_command("HKEYS", name)

    def hvals(self, name: KeyT) -> Any:
        return self.execute_command("HVALS", name)

    def hlen(self, name: KeyT) -> Any:
        return self.execute_command("HLEN", name)

    def hstrlen(self, name: KeyT, key: KeyT) -> Any:
        return self.execute_command("HSTRLEN", name, key)

    def hscan(
        self, name: KeyT, cursor: int = 0, match: Optional[KeyT] = None,
        count: Optional[int] = None, no_values: Optional[bool] = None,
    ) -> Any:
        pieces: List[Any] = ["HSCAN", name, cursor]
        if match is not None:
            pieces += ["MATCH", match]
        if count is not None:
            pieces += ["COUNT", count]
        if no_values:
            pieces.append("NOVALUES")
        return self.execute_command(*pieces, no_values=bool(no_values))

    # --- lists --------------------------------------------------------------------------
    def lpush(self, name: KeyT, *values: EncodableT) -> Any:
        return self.execute_command("LPUSH", name, *values)

    def rpush(self, name: KeyT, *values: EncodableT) -> Any:
        return self.execute_command("RPUSH", name, *values)

    def lpushx(self, name: KeyT, *values: EncodableT) -> Any:
        return self.execute_command("LPUSHX", name, *values)

    def rpushx(self, name: KeyT, *values: EncodableT) -> Any:
        return self.execute_command("RPUSHX", name, *values)

    def lpop(self, name: KeyT, count: Optional[int] = None) -> Any:
        if count is not None:
            return self.execute_command("LPOP", name, count)
        return self.execute_command("LPOP", name)

    def rpop(self, name: KeyT, count: Optional[int] = None) -> Any:
        if count is not None:
            return self.execute_command("RPOP", name, count)
        return self.execute_command("RPOP", name)

    def lrange(self, name: KeyT, start: int, end: int) -> Any:
        return self.execute_command("LRANGE", name, start, end)

    def llen(self, name: KeyT) -> Any:
        return self.execute_command("LLEN", name)

    def lindex(self, name: KeyT, index: int) -> Any:
        return self.execute_command("LINDEX", name, index)

    def lset(self, name: KeyT, index: int, value: EncodableT) -> Any:
        return self.execute_command("LSET", name, index, value)

    def lrem(self, name: KeyT, count: int, value: EncodableT) -> Any:
        return self.execute_command("LREM", name, count, value)

    def ltrim(self, name: KeyT, start: int, end: int) -> Any:
        return self.execute_command("LTRIM", name, start, end)

    def linsert(self, name: KeyT, where: str, refvalue: EncodableT, value: EncodableT) -> Any:
        return self.execute_command("LINSERT", name, where, refvalue, value)

    def lpos(
        self, name: KeyT, value: EncodableT, rank: Optional[int] = None,
        count: Optional[int] = None, maxlen: Optional[int] = None,
    ) -> Any:
        pieces: List[Any] = ["LPOS", name, value]
        if rank is not None:
            pieces += ["RANK", rank]
        if count is not None:
            pieces += ["COUNT", count]
        if maxlen is not None:
            pieces += ["MAXLEN", maxlen]
        return self.execute_command(*pieces)

    def lmove(self, first_list: KeyT, second_list: KeyT, src: str = "LEFT", dest: str = "RIGHT") -> Any:
        return self.execute_command("LMOVE", first_list, second_list, src, dest)

    def rpoplpush(self, src: KeyT, dst: KeyT) -> Any:
        return self.execute_command("RPOPLPUSH", src, dst)

    def blpop(self, keys: Any, timeout: Optional[float] = 0) -> Any:
        """``(key, value)``, or ``None`` when ``timeout`` seconds passed (0: wait forever)."""
        return self.execute_command("BLPOP", *_list(keys), _timeout(timeout))

    def brpop(self, keys: Any, timeout: Optional[float] = 0) -> Any:
        return self.execute_command("BRPOP", *_list(keys), _timeout(timeout))

    def blmove(
        self, first_list: KeyT, second_list: KeyT, timeout: float,
        src: str = "LEFT", dest: str = "RIGHT",
    ) -> Any:
        return self.execute_command("BLMOVE", first_list, second_list, src, dest, timeout)

    def brpoplpush(self, src: KeyT, dst: KeyT, timeout: Optional[float] = 0) -> Any:
        return self.execute_command("BRPOPLPUSH", src, dst, _timeout(timeout))

    # --- sets ---------------------------------------------------------------------------
    def sadd(self, name: KeyT, *values: EncodableT) -> Any:
        return self.execute_command("SADD", name, *values)

    def srem(self, name: KeyT, *values: EncodableT) -> Any:
        return self.execute_command("SREM", name, *values)

    def smembers(self, name: KeyT) -> Any:
        return self.execute_command("SMEMBERS", name)

    def sismember(self, name: KeyT, value: EncodableT) -> Any:
        return self.execute_command("SISMEMBER", name, value)

    def smismember(self, name: KeyT, values: Any, *args: Any) -> Any:
        return self.execute_command("SMISMEMBER", name, *_list(values, args))

    def scard(self, name: KeyT) -> Any:
        return self.execute_command("SCARD", name)

    def spop(self, name: KeyT, count: Optional[int] = None) -> Any:
        if count is not None:
            return self.execute_command("SPOP", name, count)
        return self.execute_command("SPOP", name)

    def srandmember(self, name: KeyT, number: Optional[int] = None) -> Any:
        if number is not None:
            return self.execute_command("SRANDMEMBER", name, number)
        return self.execute_command("SRANDMEMBER", name)

    def smove(self, src: KeyT, dst: KeyT, value: EncodableT) -> Any:
        return self.execute_command("SMOVE", src, dst, value)

    def sinter(self, keys: Any, *args: Any) -> Any:
        return self.execute_command("SINTER", *_list(keys, args))

    def sunion(self, keys: Any, *args: Any) -> Any:
        return self.execute_command("SUNION", *_list(keys, args))

    def sdiff(self, keys: Any, *args: Any) -> Any:
        return self.execute_command("SDIFF", *_list(keys, args))

    def sinterstore(self, dest: KeyT, keys: Any, *args: Any) -> Any:
        return self.execute_command("SINTERSTORE", dest, *_list(keys, args))

    def sunionstore(self, dest: KeyT, keys: Any, *args: Any) -> Any:
        return self.execute_command("SUNIONSTORE", dest, *_list(keys, args))

    def sdiffstore(self, dest: KeyT, keys: Any, *args: Any) -> Any:
        return self.execute_command("SDIFFSTORE", dest, *_list(keys, args))

    def sscan(
        self, name: KeyT, cursor: int = 0, match: Optional[KeyT] = None,
        count: Optional[int] = None,
    ) -> Any:
        pieces: List[Any] = ["SSCAN", name, cursor]
        if match is not None:
            pieces += ["MATCH", match]
        if count is not None:
            pieces += ["COUNT", count]
        return self.execute_command(*pieces)

    # --- sorted sets --------------------------------------------------------------------
    def zadd(
        self, name: KeyT, mapping: Mapping[Any, Any], nx: bool = False, xx: bool = False,
        ch: bool = False, incr: bool = False, gt: bool = False, lt: bool = False,
    ) -> Any:
        if not mapping:
            raise ValueError("ZADD requires at least one element/score pair")
        if nx and xx:
            raise ValueError("ZADD allows either 'nx' or 'xx', not both")
        if incr and len(mapping) != 1:
            raise ValueError("ZADD option 'incr' only works when passing a single element/score pair")
        pieces: List[Any] = ["ZADD", name]
        options: Dict[str, Any] = {}
        for flag, on in (("NX", nx), ("XX", xx), ("GT", gt), ("LT", lt), ("CH", ch)):
            if on:
                pieces.append(flag)
        if incr:
            pieces.append("INCR")
            options["as_score"] = True
        for member, score in mapping.items():
            pieces += [score, member]
        return self.execute_command(*pieces, **options)

    def zincrby(self, name: KeyT, amount: float, value: EncodableT) -> Any:
        return self.execute_command("ZINCRBY", name, amount, value)

    def zrem(self, name: KeyT, *values: EncodableT) -> Any:
        return self.execute_command("ZREM", name, *values)

    def zcard(self, name: KeyT) -> Any:
        return self.execute_command("ZCARD", name)

    def zcount(self, name: KeyT, min: Any, max: Any) -> Any:
        return self.execute_command("ZCOUNT", name, min, max)

    def zscore(self, name: KeyT, value: EncodableT) -> Any:
        return self.execute_command("ZSCORE", name, value)

    def zmscore(self, key: KeyT, members: Sequence[EncodableT]) -> Any:
        if not members:
            raise ValueError("ZMSCORE members must be a non-empty list")
        return self.execute_command("ZMSCORE", key, *members)

    def zrank(self, name: KeyT, value: EncodableT) -> Any:
        return self.execute_command("ZRANK", name, value)

    def zrevrank(self, name: KeyT, value: EncodableT) -> Any:
        return self.execute_command("ZREVRANK", name, value)

    def zrange(
        self, name: KeyT, start: Any, end: Any, desc: bool = False, withscores: bool = False,
        score_cast_func: Any = float, byscore: bool = False, bylex: bool = False,
        offset: Optional[int] = None, num: Optional[int] = None,
    ) -> Any:
        pieces: List[Any] = ["ZRANGE", name, start, end]
        if byscore:
            pieces.append("BYSCORE")
        if bylex:
            pieces.append("BYLEX")
        if desc:
            pieces.append("REV")
        if offset is not None and num is not None:
            pieces += ["LIMIT", offset, num]
        if withscores:
            pieces.append("WITHSCORES")
        return self.execute_command(*pieces, withscores=withscores, score_cast_func=score_cast_func)

    def zrevrange(
        self, name: KeyT, start: int, end: int, withscores: bool = False,
        score_cast_func: Any = float,
    ) -> Any:
        pieces: List[Any] = ["ZREVRANGE", name, start, end]
        if withscores:
            pieces.append("WITHSCORES")
        return self.execute_command(*pieces, withscores=withscores, score_cast_func=score_cast_func)

    def zrangebyscore(
        self, name: KeyT, min: Any, max: Any, start: Optional[int] = None,
        num: Optional[int] = None, withscores: bool = False, score_cast_func: Any = float,
    ) -> Any:
        pieces: List[Any] = ["ZRANGEBYSCORE", name, min, max]
        if start is not None and num is not None:
            pieces += ["LIMIT", start, num]
        if withscores:
            pieces.append("WITHSCORES")
        return self.execute_command(*pieces, withscores=withscores, score_cast_func=score_cast_func)

    def zrevrangebyscore(
        self, name: KeyT, max: Any, min: Any, start: Optional[int] = None,
        num: Optional[int] = None, withscores: bool = False, score_cast_func: Any = float,
    ) -> Any:
        pieces: List[Any] = ["ZREVRANGEBYSCORE", name, max, min]
        if start is not None and num is not None:
            pieces += ["LIMIT", start, num]
        if withscores:
            pieces.append("WITHSCORES")
        return self.execute_command(*pieces, withscores=withscores, score_cast_func=score_cast_func)

    def zrangebylex(
        self, name: KeyT, min: Any, max: Any, start: Optional[int] = None,
        num: Optional[int] = None,
    ) -> Any:
        pieces: List[Any] = ["ZRANGEBYLEX", name, min, max]
        if start is not None and num is not None:
            pieces += ["LIMIT", start, num]
        return self.execute_command(*pieces)

    def zremrangebyrank(self, name: KeyT, min: int, max: int) -> Any:
        return self.execute_command("ZREMRANGEBYRANK", name, min, max)

    def zremrangebyscore(self, name: KeyT, min: Any, max: Any) -> Any:
        return self.execute_command("ZREMRANGEBYSCORE", name, min, max)

    def zpopmin(self, name: KeyT, count: Optional[int] = None) -> Any:
        return self.execute_command("ZPOPMIN", name, *([count] if count is not None else []))

    def zpopmax(self, name: KeyT, count: Optional[int] = None) -> Any:
        return self.execute_command("ZPOPMAX", name, *([count] if count is not None else []))

    def bzpopmin(self, keys: Any, timeout: Optional[float] = 0) -> Any:
        return self.execute_command("BZPOPMIN", *_list(keys), _timeout(timeout))

    def bzpopmax(self, keys: Any, timeout: Optional[float] = 0) -> Any:
        return self.execute_command("BZPOPMAX", *_list(keys), _timeout(timeout))

    def zunionstore(self, dest: KeyT, keys: Any, aggregate: Optional[str] = None) -> Any:
        return self._zstore("ZUNIONSTORE", dest, keys, aggregate)

    def zinterstore(self, dest: KeyT, keys: Any, aggregate: Optional[str] = None) -> Any:
        return self._zstore("ZINTERSTORE", dest, keys, aggregate)

    def _zstore(self, command: str, dest: KeyT, keys: Any, aggregate: Optional[str]) -> Any:
        pieces: List[Any] = [command, dest]
        if isinstance(keys, dict):
            pieces.append(len(keys))
            pieces.extend(keys.keys())
            pieces.append("WEIGHTS")
            pieces.extend(keys.values())
        else:
            keys = _list(keys)
            pieces.append(len(keys))
            pieces.extend(keys)
        if aggregate:
            pieces += ["AGGREGATE", aggregate]
        return self.execute_command(*pieces)

    def zscan(
        self, name: KeyT, cursor: int = 0, match: Optional[KeyT] = None,
        count: Optional[int] = None, score_cast_func: Any = float,
    ) -> Any:
        pieces: List[Any] = ["ZSCAN", name, cursor]
        if match is not None:
            pieces += ["MATCH", match]
        if count is not None:
            pieces += ["COUNT", count]
        return self.execute_command(*pieces, score_cast_func=score_cast_func)


class StreamCommands:
    def execute_command(self, *args: Any, **options: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def xadd(
        self, name: KeyT, fields: Mapping[Any, Any], id: Any = "*",
        maxlen: Optional[int] = None, approximate: bool = True, nomkstream: bool = False,
        minid: Optional[Any] = None, limit: Optional[int] = None,
    ) -> Any:
        if not fields:
            raise ValueError("XADD fields must be a non-empty dict")
        if maxlen is not None and minid is not None:
            raise ValueError("Only one of ``maxlen`` or ``minid`` may be specified")
        pieces: List[Any] = ["XADD", name]
        if nomkstream:
            pieces.append("NOMKSTREAM")
        pieces.extend(_trim(maxlen, minid, approximate, limit))
        pieces.append(id)
        for k, v in fields.items():
            pieces += [k, v]
        return self.execute_command(*pieces)

    def xlen(self, name: KeyT) -> Any:
        return self.execute_command("XLEN", name)

    def xrange(self, name: KeyT, min: Any = "-", max: Any = "+", count: Optional[int] = None) -> Any:
        pieces: List[Any] = ["XRANGE", name, min, max]
        if count is not None:
            pieces += ["COUNT", count]
        return self.execute_command(*pieces)

    def xrevrange(self, name: KeyT, max: Any = "+", min: Any = "-", count: Optional[int] = None) -> Any:
        pieces: List[Any] = ["XREVRANGE", name, max, min]
        if count is not None:
            pieces += ["COUNT", count]
        return self.execute_command(*pieces)

    def xread(
        self, streams: Mapping[Any, Any], count: Optional[int] = None, block: Optional[int] = None,
    ) -> Any:
        """``streams``: {stream: last_id}; ``block`` in milliseconds."""
        if not isinstance(streams, dict) or not streams:
            raise TypeError("xread streams must be a non empty dict")
        pieces: List[Any] = ["XREAD"]
        if count is not None:
            pieces += ["COUNT", count]
        if block is not None:
            pieces += ["BLOCK", block]
        pieces.append("STREAMS")
        pieces.extend(streams.keys())
        pieces.extend(streams.values())
        return self.execute_command(*pieces)

    def xreadgroup(
        self, groupname: KeyT, consumername: KeyT, streams: Mapping[Any, Any],
        count: Optional[int] = None, block: Optional[int] = None, noack: bool = False,
    ) -> Any:
        if not isinstance(streams, dict) or not streams:
            raise TypeError("xreadgroup streams must be a non empty dict")
        pieces: List[Any] = ["XREADGROUP", "GROUP", groupname, consumername]
        if count is not None:
            pieces += ["COUNT", count]
        if block is not None:
            pieces += ["BLOCK", block]
        if noack:
            pieces.append("NOACK")
        pieces.append("STREAMS")
        pieces.extend(streams.keys())
        pieces.extend(streams.values())
        return self.execute_command(*pieces)

    def xgroup_create(
        self, name: KeyT, groupname: KeyT, id: Any = "$", mkstream: bool = False,
        entries_read: Optional[int] = None,
    ) -> Any:
        pieces: List[Any] = ["XGROUP CREATE", name, groupname, id]
        if mkstream:
            pieces.append("MKSTREAM")
        if entries_read is not None:
            pieces += ["ENTRIESREAD", entries_read]
        return self.execute_command(*pieces)

    def xgroup_destroy(self, name: KeyT, groupname: KeyT) -> Any:
        return self.execute_command("XGROUP DESTROY", name, groupname)

    def xgroup_setid(self, name: KeyT, groupname: KeyT, id: Any) -> Any:
        return self.execute_command("XGROUP SETID", name, groupname, id)

    def xgroup_createconsumer(self, name: KeyT, groupname: KeyT, consumername: KeyT) -> Any:
        return self.execute_command("XGROUP CREATECONSUMER", name, groupname, consumername)

    def xgroup_delconsumer(self, name: KeyT, groupname: KeyT, consumername: KeyT) -> Any:
        return self.execute_command("XGROUP DELCONSUMER", name, groupname, consumername)

    def xack(self, name: KeyT, groupname: KeyT, *ids: Any) -> Any:
        return self.execute_command("XACK", name, groupname, *ids)

    def xdel(self, name: KeyT, *ids: Any) -> Any:
        return self.execute_command("XDEL", name, *ids)

    def xtrim(
        self, name: KeyT, maxlen: Optional[int] = None, approximate: bool = True,
        minid: Optional[Any] = None, limit: Optional[int] = None,
    ) -> Any:
        if maxlen is None and minid is None:
            raise ValueError("One of ``maxlen`` or ``minid`` must be specified")
        return self.execute_command("XTRIM", name, *_trim(maxlen, minid, approximate, limit))

    def xpending(self, name: KeyT, groupname: KeyT) -> Any:
        return self.execute_command("XPENDING", name, groupname)

    def xpending_range(
        self, name: KeyT, groupname: KeyT, min: Any, max: Any, count: int,
        consumername: Optional[KeyT] = None, idle: Optional[int] = None,
    ) -> Any:
        pieces: List[Any] = ["XPENDING", name, groupname]
        if idle is not None:
            pieces += ["IDLE", idle]
        pieces += [min, max, count]
        if consumername is not None:
            pieces.append(consumername)
        return self.execute_command(*pieces, parse_detail=True)

    def xclaim(
        self, name: KeyT, groupname: KeyT, consumername: KeyT, min_idle_time: int,
        message_ids: Sequence[Any], justid: bool = False,
    ) -> Any:
        pieces: List[Any] = ["XCLAIM", name, groupname, consumername, min_idle_time]
        pieces.extend(message_ids)
        if justid:
            pieces.append("JUSTID")
        return self.execute_command(*pieces, parse_justid=justid)

    def xautoclaim(
        self, name: KeyT, groupname: KeyT, consumername: KeyT, min_idle_time: int,
        start_id: Any = "0-0", count: Optional[int] = None, justid: bool = False,
    ) -> Any:
        pieces: List[Any] = ["XAUTOCLAIM", name, groupname, consumername, min_idle_time, start_id]
        if count is not None:
            pieces += ["COUNT", count]
        if justid:
            pieces.append("JUSTID")
        return self.execute_command(*pieces, parse_justid=justid)

    def xinfo_stream(self, name: KeyT, full: bool = False) -> Any:
        pieces: List[Any] = ["XINFO STREAM", name]
        if full:
            pieces.append("FULL")
        return self.execute_command(*pieces, full=full)

    def xinfo_groups(self, name: KeyT) -> Any:
        return self.execute_command("XINFO GROUPS", name)

    def xinfo_consumers(self, name: KeyT, groupname: KeyT) -> Any:
        return self.execute_command("XINFO CONSUMERS", name, groupname)


def _trim(maxlen: Optional[int], minid: Any, approximate: bool, limit: Optional[int]) -> List[Any]:
    pieces: List[Any] = []
    if maxlen is not None:
        if not isinstance(maxlen, int) or isinstance(maxlen, bool) or maxlen < 0:
            raise TypeError("maxlen must be a non-negative integer")
        pieces.append("MAXLEN")
    elif minid is not None:
        pieces.append("MINID")
    else:
        return pieces
    if approximate:
        pieces.append("~")
    pieces.append(maxlen if maxlen is not None else minid)
    if limit is not None:
        pieces += ["LIMIT", limit]
    return pieces
