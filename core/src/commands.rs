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

use compact_str::CompactString;
use redis::cluster_routing::{AggregateOp, LogicalAggregateOp, ResponsePolicy};

/// A command's upper-case name, as [`command_name`] gives it. Held inline
/// up to 24 bytes on 64-bit targets (nearly every command Valkey defines,
/// with its subcommand), so the name costs no allocation; longer names
/// (module commands, `CLUSTER COUNT-FAILURE-REPORTS`) go to the heap.
pub(crate) type Name = CompactString;

/// Whether `name` (upper case) is a container command: one whose second
/// argument names a subcommand.
fn is_container_upper(name: &[u8]) -> bool {
    matches!(
        name,
        b"ACL"
            | b"CLIENT"
            | b"CLUSTER"
            | b"COMMAND"
            | b"CONFIG"
            | b"FUNCTION"
            | b"LATENCY"
            | b"MEMORY"
            | b"MODULE"
            | b"OBJECT"
            | b"PUBSUB"
            | b"SCRIPT"
            | b"SLOWLOG"
            | b"XGROUP"
            | b"XINFO"
    )
}

/// The longest container name.
const CONTAINER_MAX: usize = 8;

/// Whether `first` names a container command (any case), allocating nothing.
fn is_container(first: &[u8]) -> bool {
    if first.len() > CONTAINER_MAX {
        return false;
    }
    let mut up = [0u8; CONTAINER_MAX];
    let up = &mut up[..first.len()];
    up.copy_from_slice(first);
    up.make_ascii_uppercase();
    is_container_upper(up)
}

/// The first word of a command name (`"CLIENT"` of `"CLIENT LIST"`).
pub(crate) fn first_word(name: &str) -> &str {
    let end = name.bytes().position(|b| b == b' ').unwrap_or(name.len());
    &name[..end]
}

/// The command's name in upper case; container commands (`CLIENT`,
/// `CONFIG`, ...) include their subcommand: `"CLIENT SETNAME"`. Empty argv
/// gives `""`. `args` is owned (`Vec<u8>`) or archived (the request
/// still in its message, `rkyv::vec::ArchivedVec<u8>`).
pub(crate) fn command_name<A: AsRef<[u8]>>(args: &[A]) -> Name {
    let Some(first) = args.first().map(AsRef::as_ref) else {
        return Name::default();
    };
    let sub = args
        .get(1)
        .map(AsRef::as_ref)
        .filter(|_| is_container(first));
    // Nearly every name: ASCII and short, upper-cased in a stack buffer
    // and held inline.
    let mut buf = [0u8; 24];
    let n = first.len() + sub.map_or(0, |s| s.len() + 1);
    if n <= buf.len() && first.is_ascii() && sub.is_none_or(|s| s.is_ascii()) {
        buf[..first.len()].copy_from_slice(first);
        if let Some(s) = sub {
            buf[first.len()] = b' ';
            buf[first.len() + 1..n].copy_from_slice(s);
        }
        buf[..n].make_ascii_uppercase();
        if let Ok(name) = std::str::from_utf8(&buf[..n]) {
            return Name::new(name);
        }
    }
    // Longer than the buffer, or not ASCII: lossy text (a name that is not
    // printable ASCII is refused by `bad_name` before anything is sent).
    let mut name = String::from_utf8_lossy(first).to_ascii_uppercase();
    if let Some(s) = sub {
        name.push(' ');
        name.push_str(&String::from_utf8_lossy(s).to_ascii_uppercase());
    }
    Name::from(name)
}

/// Why a command is refused for its name before it is sent: a command
/// name (and a container command's subcommand) is printable ASCII. The
/// server echoes an unknown name in its error reply, and the `redis`
/// crate's parser rejects an error line that is not UTF-8 by dropping the
/// connection, which all clients of the backend share: one client's
/// malformed name would fail the others' requests in flight on it.
pub fn bad_name<A: AsRef<[u8]>>(args: &[A]) -> Option<&'static str> {
    let printable = |a: &[u8]| !a.is_empty() && a.iter().all(|b| (0x21..=0x7e).contains(b));
    let first = args.first()?.as_ref();
    if !printable(first) {
        return Some("the command name must be printable ASCII");
    }
    if is_container(first) {
        if let Some(sub) = args.get(1) {
            if !printable(sub.as_ref()) {
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
    Some(match (first_word(name), name) {
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

/// Blocking commands: `block_timeout(name, args)` (`name` as
/// [`command_name`] gives it) is shared with the client end
/// (`vshm_protocol::bound`), so that both bound a request the same way.
pub use vshm_protocol::bound::{block_timeout_named as block_timeout, BlockTimeout};

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
        "KEYS"
        | "FT._ALIASLIST"
        | "FT._LIST"
        | "MGET"
        | "SLOWLOG GET"
        | "PUBSUB CHANNELS"
        | "PUBSUB SHARDCHANNELS" => ResponsePolicy::CombineArrays,
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
        assert!(bad_name(&v(&[b"cLiEnt", b"\xfe"])).is_some());
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
        assert_eq!(command_name::<Vec<u8>>(&[]), "");
        assert_eq!(command_name(&[vec![0xff, b'a']]), "\u{fffd}A");
    }

    #[test]
    fn names_are_inline_up_to_24_bytes_and_the_same_beyond() {
        // The fast path classifies every request by this name: the common
        // ones, container subcommands included, allocate nothing.
        for cmd in [
            "get k",
            "set k v",
            "client no-evict on",
            "xinfo consumers s g",
        ] {
            assert!(!command_name(&argv(cmd)).is_heap_allocated(), "{cmd}");
        }
        let long = "M".repeat(40);
        assert_eq!(
            command_name(&argv(&format!("{} a", long.to_lowercase()))),
            long.as_str()
        );
        assert_eq!(first_word("CLIENT LIST"), "CLIENT");
        assert_eq!(first_word("GET"), "GET");
        assert_eq!(first_word(""), "");
        for c in ["acl", "Client", "CLUSTER", "xinfo", "xGroup", "function"] {
            assert!(is_container(c.as_bytes()), "{c}");
        }
        for c in ["GET", "CLIENTS", "", "XINFOX", "functions"] {
            assert!(!is_container(c.as_bytes()), "{c}");
        }
        // `is_container` rejects anything longer than CONTAINER_MAX.
        for c in [
            "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY",
            "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
        ] {
            assert!(
                c.len() <= CONTAINER_MAX && is_container_upper(c.as_bytes()),
                "{c}"
            );
        }
        assert_eq!(command_name(&argv("Memory usage k")), "MEMORY USAGE");
        assert_eq!(
            command_name(&[b"client".to_vec(), vec![0xfe]]),
            "CLIENT \u{fffd}"
        );
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
