"""redis-py response callbacks: turn the native reply of a command into what redis-py returns.

The native module converts every reply once (bulk -> bytes or str, integer -> int, array -> list,
map -> dict, ...). redis-py users rely on a few more conversions (``SET`` -> ``True``, ``HGETALL``
-> ``dict``, ``ZRANGE ... WITHSCORES`` -> ``[(member, float)]``, ``INFO`` -> ``dict``). They are
applied here, by command name, for the sync client, the asyncio client and pipelines alike.

The shapes are redis-py's RESP2 shapes whatever protocol the core speaks to the server: a RESP3
map reply is turned into the same ``dict``/``list`` a RESP2 reply gives in redis-py.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

Callback = Callable[..., Any]


def str_if_bytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return value


def _is_ok(value: Any) -> bool:
    return str_if_bytes(value) == "OK"


def bool_ok(response: Any, **options: Any) -> Any:
    """``+OK`` -> True (other replies unchanged)."""
    if isinstance(response, (bytes, str)) and _is_ok(response):
        return True
    return response


def to_bool(response: Any, **options: Any) -> Any:
    if response is None:
        return None
    return bool(response)


def to_float(response: Any, **options: Any) -> Optional[float]:
    if response is None:
        return None
    return float(response)


def list_of_bool(response: Any, **options: Any) -> Any:
    if not isinstance(response, list):
        return response
    return [bool(x) for x in response]


def list_of_float(response: Any, **options: Any) -> Any:
    if not isinstance(response, list):
        return response
    return [None if x is None else float(x) for x in response]


def parse_set_result(response: Any, **options: Any) -> Any:
    if options.get("get"):
        return response
    if response is None:
        return None
    return _is_ok(response)


def parse_ping(response: Any, **options: Any) -> Any:
    if isinstance(response, list):  # PING inside a subscribed connection (not used) or RESP3
        return str_if_bytes(response[0]) == "pong"
    return str_if_bytes(response) == "PONG"


def pairs_to_dict(response: Any, **options: Any) -> Any:
    """A flat ``[k1, v1, k2, v2, ...]`` (RESP2) or a map (RESP3) -> ``dict``."""
    if response is None:
        return {}
    if isinstance(response, dict):
        return response
    if isinstance(response, list):
        if response and isinstance(response[0], list):
            return {k: v for k, v in response}  # a map the native gave as a list of pairs
        it = iter(response)
        return dict(zip(it, it))
    return response


def to_set(response: Any, **options: Any) -> Any:
    if response is None:
        return set()
    if isinstance(response, set):
        return response
    return set(response)


def to_tuple(response: Any, **options: Any) -> Any:
    if response is None:
        return None
    return tuple(response)


def zset_score_pairs(response: Any, **options: Any) -> Any:
    """``WITHSCORES`` replies -> ``[(member, score)]`` (score through ``score_cast_func``)."""
    if not response or not options.get("withscores"):
        return response
    cast = options.get("score_cast_func", float)
    if isinstance(response, dict):
        return [(k, cast(v)) for k, v in response.items()]
    if isinstance(response[0], list):  # RESP3: [[member, score], ...]
        return [(m, cast(s)) for m, s in response]
    it = iter(response)
    return [(m, cast(s)) for m, s in zip(it, it)]


def zpop_pairs(response: Any, **options: Any) -> Any:
    """ZPOPMIN/ZPOPMAX -> ``[(member, score)]``."""
    if not response:
        return []
    if isinstance(response[0], list):
        return [(m, float(s)) for m, s in response]
    it = iter(response)
    return [(m, float(s)) for m, s in zip(it, it)]


def bzpop(response: Any, **options: Any) -> Any:
    if not response:
        return None
    return (response[0], response[1], float(response[2]))


def parse_zadd(response: Any, **options: Any) -> Any:
    if response is None:
        return None
    if options.get("as_score"):
        return float(response)
    return int(response)


def parse_zscan(response: Any, **options: Any) -> Any:
    cursor, r = response
    return int(cursor), zset_score_pairs(r, withscores=True, **_without(options, "withscores"))


def parse_scan(response: Any, **options: Any) -> Any:
    cursor, r = response
    return int(cursor), r


def parse_hscan(response: Any, **options: Any) -> Any:
    cursor, r = response
    if options.get("no_values"):
        return int(cursor), r or []
    return int(cursor), pairs_to_dict(r) if r else {}


def _without(options: Dict[str, Any], key: str) -> Dict[str, Any]:
    return {k: v for k, v in options.items() if k != key}


def parse_info(response: Any, **options: Any) -> Any:
    """``INFO`` text -> dict, as redis-py; a cluster reply (node -> text) -> node -> dict."""
    if isinstance(response, dict):  # cluster: one reply per node, keyed "host:port"
        return {str_if_bytes(k): parse_info(v) for k, v in response.items()}
    text = str_if_bytes(response)
    info: Dict[str, Any] = {}

    def get_value(value: str) -> Any:
        if "," not in value and "=" not in value:
            try:
                return float(value) if "." in value else int(value)
            except ValueError:
                return value
        if "=" not in value:
            return [get_value(v) for v in value.split(",") if v]
        sub: Dict[str, Any] = {}
        for item in value.split(","):
            if not item:
                continue
            if "=" in item:
                k, v = item.rsplit("=", 1)
                sub[k] = get_value(v)
            else:
                sub[item] = True
        return sub

    for line in text.splitlines():
        if line and not line.startswith("#"):
            if ":" in line:
                key, value = line.split(":", 1)
                if key == "cmdstat_host":
                    key, value = line.rsplit(":", 1)
                if key == "module":
                    info.setdefault("modules", []).append(get_value(value))
                else:
                    info[key] = get_value(value)
            else:
                info.setdefault("__raw__", []).append(line)
    return info


def parse_config_get(response: Any, **options: Any) -> Any:
    d = pairs_to_dict(response)
    if isinstance(d, dict):
        return {str_if_bytes(k): str_if_bytes(v) for k, v in d.items()}
    return d


def parse_client_info(response: Any, **options: Any) -> Any:
    out: Dict[str, str] = {}
    for item in str_if_bytes(response).split():
        k, _, v = item.partition("=")
        out[k] = v
    return out


def parse_client_list(response: Any, **options: Any) -> Any:
    return [parse_client_info(line) for line in str_if_bytes(response).splitlines() if line]


def parse_stream_list(response: Any) -> Any:
    """Stream entries -> ``[(id, {field: value})]`` (a deleted entry's fields are ``None``)."""
    if response is None:
        return None
    out = []
    for r in response:
        if r is not None:
            fields = r[1]
            out.append((r[0], pairs_to_dict(fields) if fields is not None else None))
        else:
            out.append((None, None))
    return out


def parse_xrange(response: Any, **options: Any) -> Any:
    return parse_stream_list(response)


def parse_xread(response: Any, **options: Any) -> Any:
    """XREAD/XREADGROUP -> ``[[stream, [(id, fields)]]]`` (redis-py RESP2 shape); no data -> ``[]``."""
    if response is None:
        return []
    if isinstance(response, dict):
        return [[k, parse_stream_list(v)] for k, v in response.items()]
    return [[r[0], parse_stream_list(r[1])] for r in response]


def parse_xclaim(response: Any, **options: Any) -> Any:
    if options.get("parse_justid"):
        return response
    return parse_stream_list(response)


def parse_xautoclaim(response: Any, **options: Any) -> Any:
    if options.get("parse_justid"):
        return response[1]
    return [response[0], parse_stream_list(response[1]), response[2] if len(response) > 2 else []]


def parse_xpending(response: Any, **options: Any) -> Any:
    if options.get("parse_detail"):
        return [
            {
                "message_id": r[0],
                "consumer": r[1],
                "time_since_delivered": r[2],
                "times_delivered": r[3],
            }
            for r in response
        ]
    consumers = [{"name": n, "pending": int(p)} for n, p in (response[3] or [])]
    return {
        "pending": response[0],
        "min": response[1],
        "max": response[2],
        "consumers": consumers,
    }


def _str_keys(d: Any) -> Any:
    if isinstance(d, dict):
        return {str_if_bytes(k): v for k, v in d.items()}
    return d


def parse_xinfo_stream(response: Any, **options: Any) -> Any:
    data = _str_keys(pairs_to_dict(response))
    if not options.get("full"):
        for k in ("first-entry", "last-entry"):
            if data.get(k) is not None:
                e = data[k]
                data[k] = (e[0], pairs_to_dict(e[1]))
    return data


def parse_list_of_dicts(response: Any, **options: Any) -> Any:
    return [_str_keys(pairs_to_dict(r)) for r in response]


def parse_time(response: Any, **options: Any) -> Any:
    return int(response[0]), int(response[1])


def parse_script_load(response: Any, **options: Any) -> Any:
    return str_if_bytes(response)


def parse_blpop(response: Any, **options: Any) -> Any:
    if not response:
        return None
    return tuple(response)


def parse_lmpop(response: Any, **options: Any) -> Any:
    return response


# Command name (upper case, subcommand joined with a space) -> callback.
CALLBACKS: Dict[str, Callback] = {}


def _register(names: str, cb: Callback) -> None:
    for name in names.split(","):
        CALLBACKS[name.strip()] = cb


_register(
    "MSET,RENAME,FLUSHDB,FLUSHALL,HMSET,LSET,LTRIM,SETEX,PSETEX,XGROUP CREATE,XGROUP SETID,"
    "XGROUP CREATECONSUMER,SCRIPT FLUSH,SCRIPT KILL,FUNCTION FLUSH,FUNCTION DELETE,FUNCTION KILL,"
    "FUNCTION RESTORE,CONFIG SET,CONFIG RESETSTAT,RESTORE,SWAPDB,DEBUG OBJECT,CLIENT KILL,"
    "CLIENT PAUSE,CLIENT UNPAUSE,PFMERGE,MIGRATE,BGREWRITEAOF,BGSAVE,SAVE,SHUTDOWN,READWRITE,"
    "READONLY,CLUSTER MEET,CLUSTER RESET",
    bool_ok,
)
_register(
    "COPY,EXPIRE,EXPIREAT,PEXPIRE,PEXPIREAT,HEXISTS,HSETNX,MOVE,MSETNX,PERSIST,RENAMENX,"
    "SISMEMBER,SMOVE,SETNX,PFADD",
    to_bool,
)
_register("SMISMEMBER,SCRIPT EXISTS", list_of_bool)
_register("INCRBYFLOAT,HINCRBYFLOAT,ZINCRBY,ZSCORE", to_float)
_register("ZMSCORE", list_of_float)
_register("SET", parse_set_result)
_register("PING", parse_ping)
_register("HGETALL,CONFIG GET", pairs_to_dict)
CALLBACKS["CONFIG GET"] = parse_config_get
_register("SMEMBERS,SDIFF,SINTER,SUNION", to_set)
_register(
    "ZRANGE,ZRANGEBYSCORE,ZREVRANGE,ZREVRANGEBYSCORE,ZRANGEBYLEX,ZUNION,ZINTER,ZDIFF",
    zset_score_pairs,
)
_register("ZPOPMIN,ZPOPMAX", zpop_pairs)
_register("BZPOPMIN,BZPOPMAX", bzpop)
_register("ZADD", parse_zadd)
_register("SCAN,SSCAN", parse_scan)
_register("HSCAN", parse_hscan)
_register("ZSCAN", parse_zscan)
_register("INFO", parse_info)
_register("CLIENT INFO", parse_client_info)
_register("CLIENT LIST", parse_client_list)
_register("CLIENT GETNAME", lambda r, **o: str_if_bytes(r))
_register("XRANGE,XREVRANGE", parse_xrange)
_register("XREAD,XREADGROUP", parse_xread)
_register("XCLAIM", parse_xclaim)
_register("XAUTOCLAIM", parse_xautoclaim)
_register("XPENDING", parse_xpending)
_register("XINFO STREAM", parse_xinfo_stream)
_register("XINFO GROUPS,XINFO CONSUMERS", parse_list_of_dicts)
_register("TIME", parse_time)
_register("SCRIPT LOAD", parse_script_load)
_register("BLPOP,BRPOP", parse_blpop)
_register("TYPE", lambda r, **o: r)

# Commands whose second word is a subcommand (for the callback lookup).
SUBCOMMAND_CMDS = frozenset(
    {"XGROUP", "XINFO", "SCRIPT", "FUNCTION", "CONFIG", "CLIENT", "CLUSTER", "DEBUG", "OBJECT",
     "MEMORY", "COMMAND", "ACL", "LATENCY", "SLOWLOG", "MODULE", "PUBSUB"}
)


def command_name(args: tuple) -> str:
    """The callback key of a command: ``"SET"``, ``"XGROUP CREATE"``, ..."""
    first = args[0]
    if isinstance(first, (bytes, bytearray, memoryview)):
        name = bytes(first).decode("latin-1").upper()
    elif isinstance(first, str):
        name = first.upper()
    else:
        return ""
    if " " in name:  # "CONFIG GET" given as one argument
        return name
    if name in SUBCOMMAND_CMDS and len(args) > 1:
        sub = args[1]
        if isinstance(sub, (bytes, bytearray, memoryview)):
            sub = bytes(sub).decode("latin-1")
        if isinstance(sub, str):
            return name + " " + sub.upper()
    return name


def apply(name: str, response: Any, options: Dict[str, Any]) -> Any:
    """Apply the callback of ``name`` (``options`` may hold ``callback`` to override it)."""
    if isinstance(response, Exception):
        return response
    cb = options.get("callback") or CALLBACKS.get(name)
    if cb is None:
        return response
    return cb(response, **{k: v for k, v in options.items() if k != "callback"})
