//! Key extraction and hash slots: pure functions, no I/O.
//!
//! * [`slot_of`]: the cluster hash slot of a key (the one CRC16
//!   implementation of the workspace).
//! * [`single_slot`]: does a command go to exactly one slot's node?
//! * [`fan_out`]: is a keyless command sent to all nodes/primaries?
//! * `command_keys` / `placement` / `pipeline_waves`: the keys of a
//!   command, where a pipelined command goes, and the order in which a
//!   pipeline that spans slots is sent (crate-internal).

/// Number of hash slots in a cluster.
pub const SLOTS: u16 = 16384;

/// The cluster hash slot of a key (CRC16-XMODEM of the key, or of its first
/// non-empty `{hashtag}`, mod 16384).
pub fn slot_of(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            Some(&rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// The keys of a command (and the shard channel of SPUBLISH, which is
/// placed like a key), as far as the engine knows them: the common
/// commands' key positions, else the first argument like redis-rs's own
/// routing. Keyless commands give an empty list. Used to split pipelines
/// by slot and to refuse cross-slot transactions before sending them; a
/// command whose other keys are missed here gets the server's CROSSSLOT
/// error instead. `args` owned or archived (see
/// [`crate::commands::command_name`]); up to four keys are held inline,
/// so planning a command of one or two keys allocates nothing.
pub(crate) fn command_keys<'a, A: AsRef<[u8]>>(name: &str, args: &'a [A]) -> Keys<'a> {
    let at = |i: usize| args.get(i).map(AsRef::as_ref);
    let range = |from: usize, to: usize, step: usize| -> Keys<'a> {
        let to = to.min(args.len());
        if from >= to {
            return Keys::new();
        }
        args[from..to]
            .iter()
            .step_by(step)
            .map(AsRef::as_ref)
            .collect()
    };
    let numkeys = |count_at: usize, from: usize| -> Keys<'a> {
        let n = at(count_at)
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(0);
        range(from, from.saturating_add(n), 1)
    };
    let with_store = |words: &[&str]| -> Keys<'a> {
        let mut keys: Keys<'a> = at(1).into_iter().collect();
        let mut i = 2;
        while i < args.len() {
            let w = args[i].as_ref();
            if words.iter().any(|s| w.eq_ignore_ascii_case(s.as_bytes())) {
                keys.extend(at(i + 1));
                i += 1;
            }
            i += 1;
        }
        keys
    };
    let position = |word: &[u8]| {
        args.iter()
            .position(|a| a.as_ref().eq_ignore_ascii_case(word))
    };
    match crate::commands::first_word(name) {
        "ACL" | "CLIENT" | "CLUSTER" | "COMMAND" | "CONFIG" | "FUNCTION" | "LATENCY" | "MODULE"
        | "PUBSUB" | "SCRIPT" | "SLOWLOG" => return Keys::new(),
        "MEMORY" => {
            return if name == "MEMORY USAGE" {
                at(2).into_iter().collect()
            } else {
                Keys::new()
            }
        }
        "OBJECT" | "XINFO" | "XGROUP" => return at(2).into_iter().collect(),
        _ => {}
    }
    match name {
        "PING" | "ECHO" | "TIME" | "DBSIZE" | "FLUSHALL" | "FLUSHDB" | "INFO" | "KEYS" | "SCAN"
        | "RANDOMKEY" | "LASTSAVE" | "SAVE" | "BGSAVE" | "BGREWRITEAOF" | "WAIT" | "WAITAOF"
        | "PUBLISH" | "DEBUG" | "LOLWUT" | "ROLE" | "SHUTDOWN" | "REPLICAOF" | "SLAVEOF"
        | "FAILOVER" | "MULTI" | "EXEC" | "DISCARD" | "UNWATCH" | "SELECT" | "SWAPDB" | "AUTH"
        | "HELLO" | "QUIT" | "RESET" | "READONLY" | "READWRITE" | "ASKING" | "MONITOR" | "SYNC"
        | "PSYNC" | "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE"
        | "SUNSUBSCRIBE" => Keys::new(),
        "MGET" | "DEL" | "UNLINK" | "EXISTS" | "TOUCH" | "WATCH" | "SINTER" | "SUNION"
        | "SDIFF" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" | "PFCOUNT" | "PFMERGE"
        | "RENAME" | "RENAMENX" | "SSUBSCRIBE" => range(1, args.len(), 1),
        "SMOVE" | "RPOPLPUSH" | "BRPOPLPUSH" | "LMOVE" | "BLMOVE" | "COPY" | "LCS"
        | "GEOSEARCHSTORE" | "ZRANGESTORE" => range(1, 3, 1),
        "MSET" | "MSETNX" => range(1, args.len(), 2),
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" => range(1, args.len().saturating_sub(1), 1),
        "BITOP" => range(2, args.len(), 1),
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" | "BLMPOP"
        | "BZMPOP" => numkeys(2, 3),
        "LMPOP" | "ZMPOP" | "SINTERCARD" | "ZINTERCARD" | "ZUNION" | "ZINTER" | "ZDIFF" => {
            numkeys(1, 2)
        }
        "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => {
            let mut keys: Keys<'a> = at(1).into_iter().collect();
            keys.extend(numkeys(2, 3));
            keys
        }
        "XREAD" | "XREADGROUP" => match position(b"STREAMS") {
            Some(p) => {
                let rest = args.len() - p - 1;
                range(p + 1, p + 1 + rest / 2, 1)
            }
            None => Keys::new(),
        },
        "SORT" | "SORT_RO" => with_store(&["STORE"]),
        "GEORADIUS" | "GEORADIUSBYMEMBER" => with_store(&["STORE", "STOREDIST"]),
        "MIGRATE" => match at(3) {
            Some(k) if !k.is_empty() => smallvec::smallvec![k],
            _ => match position(b"KEYS") {
                Some(p) => range(p + 1, args.len(), 1),
                None => Keys::new(),
            },
        },
        _ => at(1).into_iter().collect(),
    }
}

/// The keys of one command ([`command_keys`]).
pub(crate) type Keys<'a> = smallvec::SmallVec<[&'a [u8]; 4]>;

/// Where a pipelined command goes in cluster mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// All its keys are in this slot: it joins the slot's sub-pipeline.
    Slot(u16),
    /// Keyless, or keys in several slots: it runs alone with redis-rs's
    /// routing, between waves.
    Alone,
}

pub(crate) fn placement<A: AsRef<[u8]>>(name: &str, args: &[A]) -> Placement {
    match single_slot(name, args) {
        SlotPlacement::Slot(s) => Placement::Slot(s),
        SlotPlacement::Keyless | SlotPlacement::MultiSlot => Placement::Alone,
    }
}

/// One step of a cluster pipeline that spans slots (the slow path,
/// `engine/batch.rs`): the steps run one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wave {
    /// One command (its index) that runs alone with the `redis` crate's own
    /// routing (split per slot or fanned out).
    Alone(usize),
    /// Consecutive one-slot commands: one sub-pipeline per slot (ascending),
    /// each with its command indexes in request order; the sub-pipelines
    /// are sent concurrently.
    Slots(Vec<(u16, Vec<usize>)>),
}

/// Split a pipeline into [`Wave`]s by the commands' placements: a run of
/// one-slot commands forms one wave, grouped by slot; an `Alone` command
/// runs after everything before it and before anything after it.
pub(crate) fn pipeline_waves(places: &[Placement]) -> Vec<Wave> {
    let mut waves = Vec::new();
    let mut run: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
    for (i, p) in places.iter().enumerate() {
        match p {
            Placement::Slot(s) => run.entry(*s).or_default().push(i),
            Placement::Alone => {
                if !run.is_empty() {
                    waves.push(Wave::Slots(std::mem::take(&mut run).into_iter().collect()));
                }
                waves.push(Wave::Alone(i));
            }
        }
    }
    if !run.is_empty() {
        waves.push(Wave::Slots(run.into_iter().collect()));
    }
    waves
}

/// Whether a command goes to exactly one slot's node: the decision of the
/// direct (one node, one slot) path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotPlacement {
    /// No keys (as far as [`command_keys`] knows): a random node, or all
    /// nodes when [`fan_out`] says so.
    Keyless,
    /// All its keys hash to this slot.
    Slot(u16),
    /// Its keys hash to several slots (the server would answer CROSSSLOT;
    /// redis-rs splits MGET/DEL/... per slot).
    MultiSlot,
}

/// Where a command goes: keyless, one slot, or several slots. `name` is
/// the command name as [`crate::commands::command_name`] gives it
/// (upper case, `"CLIENT LIST"` for container commands); `args` is the
/// whole command, name included.
pub fn single_slot<A: AsRef<[u8]>>(name: &str, args: &[A]) -> SlotPlacement {
    let keys = command_keys(name, args);
    let Some((first, rest)) = keys.split_first() else {
        return SlotPlacement::Keyless;
    };
    let slot = slot_of(first);
    if rest.iter().all(|k| slot_of(k) == slot) {
        SlotPlacement::Slot(slot)
    } else {
        SlotPlacement::MultiSlot
    }
}

/// The nodes a fanned-out keyless command goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FanOut {
    /// Every node, primaries and replicas (`CONFIG SET`, `SCRIPT LOAD`, ...).
    AllNodes,
    /// Every primary (`DBSIZE`, `KEYS`, `FLUSHALL`, `PING`, ...).
    AllPrimaries,
}

/// The fan-out of a command that the `redis` crate (1.8,
/// `cluster_routing::base_routing`) sends to all nodes or all primaries
/// rather than to one node (it then combines the replies by the
/// command's response policy); `None` for every other command. `name` as for
/// [`single_slot`]. The table is redis-rs's, entry for entry, so the
/// engine's own routing can keep its behaviour; note that redis-rs routes
/// commands missing from it that have an argument by hashing that
/// argument (`CLIENT LIST` goes to the node of slot `LIST`), which is not
/// a fan-out.
pub fn fan_out_target(name: &str) -> Option<FanOut> {
    if TO_ALL_NODES.contains(&name) {
        Some(FanOut::AllNodes)
    } else if TO_ALL_PRIMARIES.contains(&name) {
        Some(FanOut::AllPrimaries)
    } else {
        None
    }
}

/// redis-rs's `RouteBy::AllNodes` commands.
const TO_ALL_NODES: &[&str] = &[
    "ACL SETUSER",
    "ACL DELUSER",
    "ACL SAVE",
    "CLIENT SETNAME",
    "CLIENT SETINFO",
    "SLOWLOG GET",
    "SLOWLOG LEN",
    "SLOWLOG RESET",
    "CONFIG SET",
    "CONFIG RESETSTAT",
    "CONFIG REWRITE",
    "SCRIPT FLUSH",
    "SCRIPT LOAD",
    "LATENCY RESET",
    "LATENCY GRAPH",
    "LATENCY HISTOGRAM",
    "LATENCY HISTORY",
    "LATENCY DOCTOR",
    "LATENCY LATEST",
    "PUBSUB NUMPAT",
    "PUBSUB CHANNELS",
    "PUBSUB NUMSUB",
    "PUBSUB SHARDCHANNELS",
    "PUBSUB SHARDNUMSUB",
    "SCRIPT KILL",
    "FUNCTION KILL",
    "FUNCTION STATS",
];

/// redis-rs's `RouteBy::AllPrimaries` commands.
const TO_ALL_PRIMARIES: &[&str] = &[
    "DBSIZE",
    "DEBUG",
    "FLUSHALL",
    "FLUSHDB",
    "FT._ALIASLIST",
    "FT._LIST",
    "FUNCTION DELETE",
    "FUNCTION FLUSH",
    "FUNCTION LOAD",
    "FUNCTION RESTORE",
    "INFO",
    "KEYS",
    "MEMORY DOCTOR",
    "MEMORY MALLOC-STATS",
    "MEMORY PURGE",
    "MEMORY STATS",
    "PING",
    "SCRIPT EXISTS",
    "UNWATCH",
    "WAIT",
    "RANDOMKEY",
    "WAITAOF",
];

/// Whether redis-rs sends this command to all nodes or all primaries
/// (see [`fan_out_target`]).
pub fn fan_out(name: &str) -> bool {
    fan_out_target(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands;

    fn argv(s: &str) -> Vec<Vec<u8>> {
        s.split(' ').map(|a| a.as_bytes().to_vec()).collect()
    }

    fn keys(s: &str) -> Vec<String> {
        let a = argv(s);
        command_keys(&commands::command_name(&a), &a)
            .into_iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn key_positions() {
        assert_eq!(keys("GET a"), ["a"]);
        assert_eq!(keys("SET a v EX 10"), ["a"]);
        assert_eq!(keys("MGET a b c"), ["a", "b", "c"]);
        assert_eq!(keys("MSET a 1 b 2"), ["a", "b"]);
        assert_eq!(keys("RENAME a b"), ["a", "b"]);
        assert_eq!(keys("SMOVE a b m"), ["a", "b"]);
        assert_eq!(keys("LMOVE a b LEFT RIGHT"), ["a", "b"]);
        assert_eq!(keys("BLPOP a b 0"), ["a", "b"]);
        assert_eq!(keys("BITOP AND d a b"), ["d", "a", "b"]);
        assert_eq!(keys("EVAL s 2 a b x y"), ["a", "b"]);
        assert_eq!(keys("EVALSHA s 0 x"), Vec::<String>::new());
        assert_eq!(keys("FCALL f 1 a x"), ["a"]);
        assert_eq!(keys("ZUNIONSTORE d 2 a b WEIGHTS 1 2"), ["d", "a", "b"]);
        assert_eq!(keys("ZINTER 2 a b"), ["a", "b"]);
        assert_eq!(keys("LMPOP 2 a b LEFT"), ["a", "b"]);
        assert_eq!(keys("BLMPOP 0 2 a b LEFT"), ["a", "b"]);
        assert_eq!(keys("XREAD COUNT 2 STREAMS a b 0 0"), ["a", "b"]);
        assert_eq!(keys("XREADGROUP GROUP g c STREAMS a >"), ["a"]);
        assert_eq!(keys("SORT a BY x STORE d"), ["a", "d"]);
        assert_eq!(keys("GEORADIUS a 0 0 1 km STOREDIST d"), ["a", "d"]);
        assert_eq!(keys("OBJECT ENCODING a"), ["a"]);
        assert_eq!(keys("MEMORY USAGE a"), ["a"]);
        assert_eq!(keys("MEMORY STATS"), Vec::<String>::new());
        assert_eq!(keys("XGROUP CREATE s g $"), ["s"]);
        assert_eq!(keys("CLIENT LIST"), Vec::<String>::new());
        assert_eq!(keys("PING"), Vec::<String>::new());
        assert_eq!(keys("PUBLISH ch m"), Vec::<String>::new());
        assert_eq!(keys("SPUBLISH ch m"), ["ch"]);
        assert_eq!(keys("FUNCTION LOAD x"), Vec::<String>::new());
        // Malformed input never panics.
        assert_eq!(keys("EVAL s 99 a"), ["a"]);
        assert_eq!(keys("EVAL s x a"), Vec::<String>::new());
        assert_eq!(keys("ZUNIONSTORE d"), ["d"]);
        assert_eq!(keys("BLPOP"), Vec::<String>::new());
        assert_eq!(keys("XREAD STREAMS"), Vec::<String>::new());
    }

    #[test]
    fn slots_and_placement() {
        // Known values (CLUSTER KEYSLOT).
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"bar"), 5061);
        assert_eq!(slot_of(b"hello"), 866);
        // The first `{...}` decides: an empty one means the whole key.
        assert_eq!(slot_of(b"foo{bar}{zap}"), 5061);
        assert_eq!(
            slot_of(b"foo{}{bar}"),
            crc16::State::<crc16::XMODEM>::calculate(b"foo{}{bar}") % SLOTS
        );
        assert_ne!(slot_of(b"foo{}{bar}"), 5061);
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
        assert_eq!(slot_of(b"foo{bar"), slot_of(b"foo{bar"));
        assert_eq!(slot_of(b""), 0);
        assert!(slot_of(&[0xff; 300]) < SLOTS);
        assert_eq!(slot_of(b"{}foo"), 9500);
        let p = |s: &str| {
            let a = argv(s);
            placement(&commands::command_name(&a), &a)
        };
        assert_eq!(p("GET foo"), Placement::Slot(12182));
        assert_eq!(p("MGET {t}a {t}b"), Placement::Slot(slot_of(b"t")));
        assert_eq!(p("MGET a b"), Placement::Alone);
        assert_eq!(p("DBSIZE"), Placement::Alone);
    }

    #[test]
    fn waves_keep_order_around_alone_commands() {
        use Placement::{Alone, Slot};
        assert_eq!(pipeline_waves(&[]), vec![]);
        assert_eq!(
            pipeline_waves(&[Slot(7), Slot(3), Slot(7), Alone, Alone, Slot(3), Slot(9)]),
            vec![
                Wave::Slots(vec![(3, vec![1]), (7, vec![0, 2])]),
                Wave::Alone(3),
                Wave::Alone(4),
                Wave::Slots(vec![(3, vec![5]), (9, vec![6])]),
            ]
        );
        assert_eq!(
            pipeline_waves(&[Alone, Slot(1)]),
            vec![Wave::Alone(0), Wave::Slots(vec![(1, vec![1])])]
        );
        // Every command is in exactly one wave.
        let places = [Slot(5), Alone, Slot(5), Slot(6), Alone];
        let mut seen: Vec<usize> = pipeline_waves(&places)
            .into_iter()
            .flat_map(|w| match w {
                Wave::Alone(i) => vec![i],
                Wave::Slots(g) => g.into_iter().flat_map(|(_, v)| v).collect(),
            })
            .collect();
        seen.sort();
        assert_eq!(seen, (0..places.len()).collect::<Vec<_>>());
    }

    #[test]
    fn single_slot_decisions() {
        let s = |c: &str| {
            let a = argv(c);
            single_slot(&commands::command_name(&a), &a)
        };
        assert_eq!(s("GET foo"), SlotPlacement::Slot(12182));
        assert_eq!(s("set foo 1"), SlotPlacement::Slot(12182));
        assert_eq!(s("MGET {t}a {t}b"), SlotPlacement::Slot(slot_of(b"t")));
        assert_eq!(s("MSET {t}a 1 {t}b 2"), SlotPlacement::Slot(slot_of(b"t")));
        assert_eq!(s("MGET a b"), SlotPlacement::MultiSlot);
        assert_eq!(s("EVAL s 2 a b"), SlotPlacement::MultiSlot);
        assert_eq!(s("EVAL s 0"), SlotPlacement::Keyless);
        assert_eq!(s("DBSIZE"), SlotPlacement::Keyless);
        assert_eq!(s("PING"), SlotPlacement::Keyless);
        assert_eq!(s("CLIENT LIST"), SlotPlacement::Keyless);
        assert_eq!(s("SPUBLISH ch m"), SlotPlacement::Slot(slot_of(b"ch")));
        assert_eq!(single_slot::<Vec<u8>>("", &[]), SlotPlacement::Keyless);
    }

    #[test]
    fn fan_out_table() {
        let f = |c: &str| fan_out(&commands::command_name(&argv(c)));
        for c in [
            "DBSIZE",
            "KEYS *",
            "FLUSHALL",
            "FLUSHDB ASYNC",
            "PING",
            "INFO memory",
            "RANDOMKEY",
            "WAIT 1 0",
            "SCRIPT LOAD return",
            "script flush",
            "SCRIPT EXISTS abc",
            "FUNCTION LOAD code",
            "FUNCTION FLUSH",
            "FUNCTION DELETE lib",
            "FUNCTION STATS",
            "CONFIG SET maxmemory 0",
            "CONFIG RESETSTAT",
            "CLIENT SETNAME x",
            "SLOWLOG GET",
            "MEMORY STATS",
            "PUBSUB CHANNELS",
            "LATENCY LATEST",
        ] {
            assert!(f(c), "{c} fans out");
        }
        for c in [
            "GET a",
            "MGET a b",
            "CONFIG GET maxmemory",
            "CLIENT LIST",
            "CLIENT ID",
            "CLUSTER SLOTS",
            "ECHO x",
            "TIME",
            "SCAN 0",
            "FUNCTION LIST",
            "MEMORY USAGE k",
            "PUBLISH ch m",
            "",
        ] {
            assert!(!f(c), "{c} does not fan out");
        }
        assert_eq!(fan_out_target("DBSIZE"), Some(FanOut::AllPrimaries));
        assert_eq!(fan_out_target("SCRIPT LOAD"), Some(FanOut::AllNodes));
        assert_eq!(fan_out_target("CONFIG SET"), Some(FanOut::AllNodes));
        // Every fanned-out command is keyless for the engine too.
        for name in TO_ALL_NODES.iter().chain(TO_ALL_PRIMARIES) {
            let a = argv(&format!("{name} x"));
            assert_eq!(commands::command_name(&a), *name);
            let keys = command_keys(name, &a);
            // FT._LIST/FT._ALIASLIST take no arguments: the engine's
            // first-argument fallback would see one here.
            if !name.starts_with("FT.") {
                assert!(keys.is_empty(), "{name} has keys {keys:?}");
            }
        }
    }
}
