//! Command classification: pure functions over argv, no I/O.
//!
//! * [`command_name`]: the upper-cased name, with the subcommand for
//!   container commands (`"CLIENT SETNAME"`, `"CONFIG GET"`).
//! * [`refusal`]: connection-state commands the engine refuses, with the
//!   supported way to get the same effect.
//! * [`block_timeout`]: whether a command blocks server-side, and for how
//!   long it may.
//! * [`is_read_only`]: commands a replica can serve.
//! * [`response_policy`]: how replies of a command sent to several nodes
//!   combine (mirrors redis-rs's table, which it does not export).

use std::time::Duration;

use redis::cluster_routing::{AggregateOp, LogicalAggregateOp, ResponsePolicy};

/// Commands whose second argument names a subcommand.
const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE",
    "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

fn upper(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_uppercase()
}

/// The command's name in upper case; container commands (`CLIENT`,
/// `CONFIG`, ...) include their subcommand: `"CLIENT SETNAME"`. Empty argv
/// gives `""`.
pub fn command_name(args: &[Vec<u8>]) -> String {
    let Some(first) = args.first() else {
        return String::new();
    };
    let mut name = upper(first);
    if CONTAINERS.contains(&name.as_str()) {
        if let Some(sub) = args.get(1) {
            name.push(' ');
            name.push_str(&upper(sub));
        }
    }
    name
}

/// Why a command is refused for its name before it is sent: a command
/// name (and a container command's subcommand) is printable ASCII. The
/// server echoes an unknown name in its error reply, and the `redis`
/// crate's parser rejects an error line that is not UTF-8 by dropping the
/// connection, which all clients of the backend share: one client's
/// malformed name would fail the others' requests in flight on it.
pub fn bad_name(args: &[Vec<u8>]) -> Option<&'static str> {
    let printable = |a: &[u8]| !a.is_empty() && a.iter().all(|b| (0x21..=0x7e).contains(b));
    let first = args.first()?;
    if !printable(first) {
        return Some("the command name must be printable ASCII");
    }
    if CONTAINERS.contains(&upper(first).as_str()) {
        if let Some(sub) = args.get(1) {
            if !printable(sub) {
                return Some("the subcommand name must be printable ASCII");
            }
        }
    }
    None
}

/// Why a connection-state command is refused, naming the supported way;
/// `None` for commands the engine runs. All clients of a backend share its
/// connections, so a command that changes a connection's state would leak
/// into every other client's requests.
pub fn refusal(name: &str) -> Option<&'static str> {
    let first = name.split(' ').next().unwrap_or("");
    Some(match (first, name) {
        ("SELECT", _) | ("SWAPDB", _) => {
            "SELECT is not supported on shared connections: set `database` in the connection config"
        }
        ("AUTH", _) => {
            "AUTH is not supported on shared connections: set `username`/`password` in the connection config"
        }
        ("HELLO", _) => {
            "HELLO is not supported on shared connections: set `protocol` (and `username`/`password`) in the connection config"
        }
        (_, "CLIENT SETNAME") => {
            "CLIENT SETNAME is not supported on shared connections: set `client_name` in the connection config"
        }
        (_, "CLIENT TRACKING") | (_, "CLIENT CACHING") => {
            "CLIENT TRACKING/CACHING change the shared connection's state and are not supported"
        }
        (_, "CLIENT REPLY") => {
            "CLIENT REPLY would desynchronize the shared connection and is not supported"
        }
        (_, "CLIENT SETINFO") | (_, "CLIENT NO-EVICT") | (_, "CLIENT NO-TOUCH") => {
            "this CLIENT subcommand changes the shared connection's state and is not supported"
        }
        ("MULTI", _) | ("EXEC", _) | ("DISCARD", _) | ("WATCH", _) | ("UNWATCH", _) => {
            "MULTI/EXEC/DISCARD/WATCH/UNWATCH are not supported as single commands: use the batch API (atomic batch with watch keys)"
        }
        ("SUBSCRIBE", _)
        | ("PSUBSCRIBE", _)
        | ("SSUBSCRIBE", _)
        | ("UNSUBSCRIBE", _)
        | ("PUNSUBSCRIBE", _)
        | ("SUNSUBSCRIBE", _) => {
            "subscribe commands are not supported as single commands: use the pub/sub API"
        }
        ("MONITOR", _) => "MONITOR is not supported: it takes over the connection",
        ("SYNC", _) | ("PSYNC", _) => {
            "SYNC/PSYNC are not supported: they take over the connection"
        }
        ("RESET", _) => "RESET is not supported: it would reset the shared connection",
        ("QUIT", _) => "QUIT is not supported: close the client instead",
        ("READONLY", _) | ("READWRITE", _) => {
            "READONLY/READWRITE are not supported: set `read_from` in the connection config, or route to a replica"
        }
        ("ASKING", _) => "ASKING is not supported: redirections are followed by the engine",
        _ => return None,
    })
}

/// How long a blocking command may block server-side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BlockTimeout {
    /// Timeout 0: block until data arrives.
    Forever,
    /// Block at most this long.
    After(Duration),
    /// The timeout argument is missing or malformed: the server will answer
    /// with an error right away.
    Invalid,
}

fn arg_str(args: &[Vec<u8>], i: usize) -> Option<&str> {
    args.get(i).and_then(|a| std::str::from_utf8(a).ok())
}

/// A timeout in seconds (decimal allowed), as BLPOP & co. take it.
fn seconds(args: &[Vec<u8>], i: usize) -> BlockTimeout {
    match arg_str(args, i).and_then(|s| s.trim().parse::<f64>().ok()) {
        Some(0.0) => BlockTimeout::Forever,
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => {
            BlockTimeout::After(Duration::from_secs_f64(s))
        }
        _ => BlockTimeout::Invalid,
    }
}

/// A timeout in milliseconds (integer), as XREAD BLOCK and WAIT take it.
fn millis(args: &[Vec<u8>], i: usize) -> BlockTimeout {
    match arg_str(args, i).and_then(|s| s.trim().parse::<i64>().ok()) {
        Some(0) => BlockTimeout::Forever,
        Some(ms) if ms > 0 => BlockTimeout::After(Duration::from_millis(ms as u64)),
        _ => BlockTimeout::Invalid,
    }
}

/// The `BLOCK` option of XREAD/XREADGROUP, if present before `STREAMS`.
fn xread_block(args: &[Vec<u8>], group: bool) -> Option<BlockTimeout> {
    // XREADGROUP GROUP <group> <consumer> ...: skip the names, which may
    // themselves be spelled "BLOCK".
    let mut i = if group { 4 } else { 1 };
    while let Some(tok) = args.get(i) {
        let tok = upper(tok);
        match tok.as_str() {
            "STREAMS" => return None,
            "BLOCK" => return Some(millis(args, i + 1)),
            "COUNT" | "CLAIM" => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// `Some` for commands that block the connection server-side, with the
/// block timeout; `None` for everything else (including XREAD without
/// BLOCK).
pub fn block_timeout(name: &str, args: &[Vec<u8>]) -> Option<BlockTimeout> {
    let last = args.len().saturating_sub(1);
    match name {
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" | "BRPOPLPUSH" | "BLMOVE" => {
            Some(if args.len() < 3 {
                BlockTimeout::Invalid
            } else {
                seconds(args, last)
            })
        }
        "BLMPOP" | "BZMPOP" => Some(seconds(args, 1)),
        "XREAD" => xread_block(args, false),
        "XREADGROUP" => xread_block(args, true),
        "WAIT" => Some(millis(args, 2)),
        "WAITAOF" => Some(millis(args, 3)),
        _ => None,
    }
}

/// Commands a replica can serve. Unknown commands count as writes (they go
/// to the primary, which can serve anything).
pub fn is_read_only(name: &str) -> bool {
    matches!(
        name,
        "GET"
            | "MGET"
            | "GETRANGE"
            | "SUBSTR"
            | "STRLEN"
            | "LCS"
            | "EXISTS"
            | "TYPE"
            | "TTL"
            | "PTTL"
            | "EXPIRETIME"
            | "PEXPIRETIME"
            | "DUMP"
            | "TOUCH"
            | "KEYS"
            | "SCAN"
            | "RANDOMKEY"
            | "DBSIZE"
            | "HGET"
            | "HMGET"
            | "HGETALL"
            | "HKEYS"
            | "HVALS"
            | "HLEN"
            | "HEXISTS"
            | "HSTRLEN"
            | "HRANDFIELD"
            | "HSCAN"
            | "LRANGE"
            | "LINDEX"
            | "LLEN"
            | "LPOS"
            | "SMEMBERS"
            | "SISMEMBER"
            | "SMISMEMBER"
            | "SCARD"
            | "SRANDMEMBER"
            | "SINTER"
            | "SINTERCARD"
            | "SUNION"
            | "SDIFF"
            | "SSCAN"
            | "ZRANGE"
            | "ZRANGEBYSCORE"
            | "ZRANGEBYLEX"
            | "ZREVRANGE"
            | "ZREVRANGEBYSCORE"
            | "ZREVRANGEBYLEX"
            | "ZSCORE"
            | "ZMSCORE"
            | "ZRANK"
            | "ZREVRANK"
            | "ZCARD"
            | "ZCOUNT"
            | "ZLEXCOUNT"
            | "ZSCAN"
            | "ZRANDMEMBER"
            | "ZDIFF"
            | "ZINTER"
            | "ZINTERCARD"
            | "ZUNION"
            | "XRANGE"
            | "XREVRANGE"
            | "XLEN"
            | "XREAD"
            | "XPENDING"
            | "XINFO STREAM"
            | "XINFO GROUPS"
            | "XINFO CONSUMERS"
            | "BITCOUNT"
            | "BITPOS"
            | "GETBIT"
            | "BITFIELD_RO"
            | "PFCOUNT"
            | "GEODIST"
            | "GEOHASH"
            | "GEOPOS"
            | "GEOSEARCH"
            | "GEORADIUS_RO"
            | "GEORADIUSBYMEMBER_RO"
            | "SORT_RO"
            | "EVAL_RO"
            | "EVALSHA_RO"
            | "FCALL_RO"
            | "OBJECT ENCODING"
            | "OBJECT FREQ"
            | "OBJECT IDLETIME"
            | "OBJECT REFCOUNT"
            | "MEMORY USAGE"
    )
}

/// How the replies of a command sent to several nodes combine into one.
/// `None`: no rule fits, the caller gets a map keyed by node address.
/// Mirrors redis-rs `ResponsePolicy::for_command` (crate-private there).
pub fn response_policy(name: &str) -> Option<ResponsePolicy> {
    Some(match name {
        "SCRIPT EXISTS" => ResponsePolicy::AggregateLogical(LogicalAggregateOp::And),
        "DBSIZE" | "DEL" | "EXISTS" | "SLOWLOG LEN" | "TOUCH" | "UNLINK" | "LATENCY RESET"
        | "PUBSUB NUMPAT" => ResponsePolicy::Aggregate(AggregateOp::Sum),
        "WAIT" => ResponsePolicy::Aggregate(AggregateOp::Min),
        "ACL SETUSER" | "ACL DELUSER" | "ACL SAVE" | "CLIENT SETNAME" | "CLIENT SETINFO"
        | "CONFIG SET" | "CONFIG RESETSTAT" | "CONFIG REWRITE" | "FLUSHALL" | "FLUSHDB"
        | "FUNCTION DELETE" | "FUNCTION FLUSH" | "FUNCTION LOAD" | "FUNCTION RESTORE"
        | "MEMORY PURGE" | "MSET" | "PING" | "SCRIPT FLUSH" | "SCRIPT LOAD" | "SLOWLOG RESET"
        | "UNWATCH" | "WATCH" => ResponsePolicy::AllSucceeded,
        "KEYS" | "MGET" | "SLOWLOG GET" | "PUBSUB CHANNELS" | "PUBSUB SHARDCHANNELS" => {
            ResponsePolicy::CombineArrays
        }
        "PUBSUB NUMSUB" | "PUBSUB SHARDNUMSUB" => ResponsePolicy::CombineMaps,
        "FUNCTION KILL" | "SCRIPT KILL" => ResponsePolicy::OneSucceeded,
        "RANDOMKEY" => ResponsePolicy::FirstSucceededNonEmptyOrAllEmpty,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_printable_ascii() {
        let v = |a: &[&[u8]]| a.iter().map(|x| x.to_vec()).collect::<Vec<_>>();
        assert_eq!(bad_name(&v(&[b"GET", b"\xff\x00key"])), None);
        assert_eq!(bad_name(&v(&[b"FT.SEARCH", b"idx"])), None);
        assert_eq!(bad_name(&v(&[b"client", b"list"])), None);
        assert_eq!(bad_name(&v(&[b"OBJECT"])), None);
        assert!(bad_name(&v(&[b"\xffGET"])).is_some());
        assert!(bad_name(&v(&[b"GET KEY"])).is_some());
        assert!(bad_name(&v(&[b""])).is_some());
        assert!(bad_name(&v(&[b"CLIENT", b"\xfe"])).is_some());
        // A non-container's second argument is data.
        assert_eq!(bad_name(&v(&[b"SET", b"\xfe", b"\xff"])), None);
    }

    fn argv(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn names() {
        assert_eq!(command_name(&argv("get k")), "GET");
        assert_eq!(command_name(&argv("client setname x")), "CLIENT SETNAME");
        assert_eq!(command_name(&argv("Config get maxmemory")), "CONFIG GET");
        assert_eq!(command_name(&argv("client")), "CLIENT");
        assert_eq!(command_name(&[]), "");
        assert_eq!(command_name(&[vec![0xff, b'a']]), "\u{fffd}A");
    }

    #[test]
    fn refused_commands_name_the_alternative() {
        let cases = [
            ("select 1", "database"),
            ("swapdb 0 1", "database"),
            ("auth pw", "password"),
            ("hello 3", "protocol"),
            ("client setname n", "client_name"),
            ("client tracking on", "not supported"),
            ("client reply off", "not supported"),
            ("multi", "batch API"),
            ("exec", "batch API"),
            ("discard", "batch API"),
            ("watch k", "batch API"),
            ("unwatch", "batch API"),
            ("subscribe c", "pub/sub API"),
            ("psubscribe c*", "pub/sub API"),
            ("ssubscribe c", "pub/sub API"),
            ("unsubscribe", "pub/sub API"),
            ("punsubscribe", "pub/sub API"),
            ("sunsubscribe", "pub/sub API"),
            ("monitor", "not supported"),
            ("reset", "not supported"),
            ("quit", "close the client"),
            ("readonly", "read_from"),
        ];
        for (cmd, hint) in cases {
            let msg = refusal(&command_name(&argv(cmd)))
                .unwrap_or_else(|| panic!("{cmd} should be refused"));
            assert!(msg.contains(hint), "{cmd}: {msg}");
        }
        for ok in [
            "get k",
            "client id",
            "client getname",
            "client info",
            "client list",
            "config get x",
            "info",
            "publish c m",
            "pubsub channels",
        ] {
            assert_eq!(refusal(&command_name(&argv(ok))), None, "{ok}");
        }
    }

    fn bt(s: &str) -> Option<BlockTimeout> {
        let a = argv(s);
        block_timeout(&command_name(&a), &a)
    }

    #[test]
    fn blocking_timeouts() {
        use BlockTimeout::*;
        let secs = |s: f64| Some(After(Duration::from_secs_f64(s)));
        let ms = |m: u64| Some(After(Duration::from_millis(m)));
        assert_eq!(bt("BLPOP a b 2"), secs(2.0));
        assert_eq!(bt("brpop a 0.5"), secs(0.5));
        assert_eq!(bt("BLPOP a 0"), Some(Forever));
        assert_eq!(bt("BLPOP a"), Some(Invalid));
        assert_eq!(bt("BLPOP a x"), Some(Invalid));
        assert_eq!(bt("BLPOP a -1"), Some(Invalid));
        assert_eq!(bt("BLPOP a inf"), Some(Invalid));
        assert_eq!(bt("BRPOPLPUSH s d 3"), secs(3.0));
        assert_eq!(bt("BLMOVE s d LEFT RIGHT 1.5"), secs(1.5));
        assert_eq!(bt("BZPOPMIN z 1"), secs(1.0));
        assert_eq!(bt("BZPOPMAX z 0"), Some(Forever));
        assert_eq!(bt("BLMPOP 2 1 k LEFT"), secs(2.0));
        assert_eq!(bt("BZMPOP 0 1 k MIN"), Some(Forever));
        assert_eq!(bt("XREAD COUNT 2 BLOCK 100 STREAMS s $"), ms(100));
        assert_eq!(bt("XREAD BLOCK 0 STREAMS s $"), Some(Forever));
        assert_eq!(bt("XREAD COUNT 2 STREAMS s 0"), None);
        // A stream named BLOCK after STREAMS is not the option.
        assert_eq!(bt("XREAD STREAMS BLOCK 0"), None);
        assert_eq!(bt("XREADGROUP GROUP g c BLOCK 50 STREAMS s >"), ms(50));
        assert_eq!(bt("XREADGROUP GROUP BLOCK BLOCK COUNT 1 STREAMS s >"), None);
        assert_eq!(bt("WAIT 1 100"), ms(100));
        assert_eq!(bt("WAIT 1 0"), Some(Forever));
        assert_eq!(bt("WAITAOF 1 0 20"), ms(20));
        assert_eq!(bt("GET k"), None);
        assert_eq!(bt("LPOP k"), None);
    }

    #[test]
    fn read_only_and_policies() {
        assert!(is_read_only("GET"));
        assert!(is_read_only("HGETALL"));
        assert!(!is_read_only("SET"));
        assert!(!is_read_only("NOSUCHCOMMAND"));
        assert_eq!(
            response_policy("DBSIZE"),
            Some(ResponsePolicy::Aggregate(AggregateOp::Sum))
        );
        assert_eq!(response_policy("PING"), Some(ResponsePolicy::AllSucceeded));
        assert_eq!(response_policy("KEYS"), Some(ResponsePolicy::CombineArrays));
        assert_eq!(response_policy("INFO"), None);
        assert_eq!(response_policy("CLUSTER INFO"), None);
    }
}
