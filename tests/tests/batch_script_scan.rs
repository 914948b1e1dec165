//! Batches (pipelines, transactions, WATCH), scripts and cluster scans, driven through the
//! rings (`EmbeddedCore`) against real servers.
//!
//! Tests that use the shared cluster hold [`SERIAL`]: the cluster scan asserts every key comes
//! back exactly once, which concurrent writers (dict resizes) could disturb. Tests that pause,
//! kill or fail over servers start their own.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vshm_client::client::into_result;
use vshm_client::embedded::{EmbeddedClient, EmbeddedCore, EmbeddedOpen};
use vshm_core::config::{Mode, Protocol};
use vshm_core::Config;
use vshm_protocol::msg::{
    flags, ArgRef, ArgsRef, ClientError, Completion, ErrorKind, Op, Route, Value,
};
use vshm_tests::cluster_ops::{node_id, wait_slots_settled};
use vshm_tests::{key_slot, shared_cluster, shared_standalone, RedisCluster, RedisServer};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Generous bound for requests: the machine is shared and slow.
const T: Duration = Duration::from_secs(20);

fn cluster_cfg(addrs: Vec<String>) -> Config {
    Config {
        addresses: addrs,
        mode: Mode::Cluster,
        request_timeout_ms: 20_000,
        ..Config::default()
    }
}

fn standalone_cfg(addr: String) -> Config {
    Config {
        addresses: vec![addr],
        mode: Mode::Standalone,
        request_timeout_ms: 20_000,
        ..Config::default()
    }
}

fn argv(s: &str) -> Vec<Vec<u8>> {
    s.split(' ').map(|a| a.as_bytes().to_vec()).collect()
}

fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

fn ok_value() -> Value {
    Value::Simple(b"OK".to_vec())
}

fn call(c: &EmbeddedClient, cmd: &str) -> Value {
    let args = argv(cmd);
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    c.call_routed(&refs, &Route::Auto, Some(T))
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn call_routed(c: &EmbeddedClient, args: &[&[u8]], route: Route) -> Result<Value, ClientError> {
    c.call_routed(args, &route, Some(T))
}

fn submit_batch(
    c: &EmbeddedClient,
    atomic: bool,
    watch: &[Vec<u8>],
    cmds: &[Vec<Vec<u8>>],
    flags: u32,
) -> u64 {
    let refs: Vec<Vec<ArgRef<'_>>> = cmds
        .iter()
        .map(|c| c.iter().map(|a| ArgRef(a)).collect())
        .collect();
    let commands: Vec<ArgsRef<'_>> = refs.iter().map(|r| ArgsRef(r)).collect();
    let op = Op::Batch {
        atomic,
        watch: watch.to_vec(),
        commands,
    };
    c.submit_op(&op, &Route::Auto, Some(T), flags).unwrap()
}

fn batch(
    c: &EmbeddedClient,
    atomic: bool,
    watch: &[Vec<u8>],
    cmds: &[Vec<Vec<u8>>],
    flags: u32,
) -> Completion {
    let id = submit_batch(c, atomic, watch, cmds, flags);
    c.wait(id, Some(T)).unwrap()
}

fn array(c: Completion) -> Vec<Value> {
    match c {
        Completion::Ok(Value::Array(v)) => v,
        other => panic!("expected an array, got {other:?}"),
    }
}

fn error(c: Completion) -> ClientError {
    match c {
        Completion::Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn script(c: &EmbeddedClient, code: &str, keys: &[&str], args: &[&str]) -> Completion {
    let op: Op<ArgsRef<'_>> = Op::Script {
        code: code.as_bytes().to_vec(),
        keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
    };
    let id = c.submit_op(&op, &Route::Auto, Some(T), 0).unwrap();
    c.wait(id, Some(T)).unwrap()
}

/// One ClusterScan step: `(next cursor, keys)`.
fn scan_step(
    c: &EmbeddedClient,
    cursor: u64,
    pattern: Option<&str>,
    count: u32,
    type_filter: Option<&str>,
) -> Result<(u64, Vec<Vec<u8>>), ClientError> {
    let op: Op<ArgsRef<'_>> = Op::ClusterScan {
        cursor,
        pattern: pattern.map(|p| p.as_bytes().to_vec()),
        count,
        type_filter: type_filter.map(|t| t.as_bytes().to_vec()),
    };
    let id = c.submit_op(&op, &Route::Auto, Some(T), 0)?;
    match into_result(c.wait(id, Some(T))?)? {
        Value::Array(mut v) if v.len() == 2 => {
            let keys = match v.pop() {
                Some(Value::Array(k)) => k
                    .into_iter()
                    .map(|k| match k {
                        Value::Bulk(b) => b,
                        other => panic!("key is not a bulk string: {other:?}"),
                    })
                    .collect(),
                other => panic!("bad keys {other:?}"),
            };
            let next = match v.pop() {
                Some(Value::Int(n)) => n as u64,
                other => panic!("bad cursor {other:?}"),
            };
            Ok((next, keys))
        }
        other => panic!("bad scan reply {other:?}"),
    }
}

/// A whole scan; every key with its number of appearances.
fn scan_all(c: &EmbeddedClient, pattern: &str, count: u32) -> HashMap<Vec<u8>, usize> {
    let mut seen = HashMap::new();
    let mut cursor = 0;
    for _ in 0..100_000 {
        let (next, keys) = scan_step(c, cursor, Some(pattern), count, None).unwrap();
        for k in keys {
            *seen.entry(k).or_insert(0) += 1;
        }
        if next == 0 {
            return seen;
        }
        cursor = next;
    }
    panic!("the scan did not finish");
}

/// Writes `keys` (value = key) with pipelines of 1000.
fn write_keys(c: &EmbeddedClient, keys: &[Vec<u8>]) {
    for chunk in keys.chunks(1000) {
        let cmds: Vec<Vec<Vec<u8>>> = chunk
            .iter()
            .map(|k| vec![b"SET".to_vec(), k.clone(), k.clone()])
            .collect();
        let out = array(batch(c, false, &[], &cmds, 0));
        assert!(out.iter().all(|v| *v == ok_value()), "{out:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// pipelines

#[test]
fn cluster_pipeline_spans_all_primaries_with_errors_in_place() {
    let _g = serial();
    let cluster = shared_cluster();
    wait_slots_settled(cluster);
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&cluster_cfg(cluster.addrs())).unwrap();
    let keys: Vec<String> = (0..100).map(|i| format!("pl:{i}")).collect();
    let ports: BTreeSet<u16> = keys
        .iter()
        .map(|k| cluster.node_for_slot(key_slot(k.as_bytes())).port())
        .collect();
    assert_eq!(ports.len(), 3, "the keys must live on all three primaries");
    let mut cmds: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|k| argv(&format!("SET {k} v{k}")))
        .collect();
    // One WRONGTYPE in the middle, a cross-slot MGET (split by redis-rs) and a keyless DBSIZE
    // (fanned out), then reads that must see the writes before them.
    cmds.push(argv("LPUSH pl:42 x"));
    cmds.push(argv("MGET pl:0 pl:1 pl:2"));
    cmds.push(argv("INCR pl:counter"));
    cmds.push(argv("INCR pl:counter"));
    cmds.extend(keys.iter().map(|k| argv(&format!("GET {k}"))));
    let out = array(batch(&c, false, &[], &cmds, 0));
    assert_eq!(out.len(), cmds.len());
    for v in &out[..100] {
        assert_eq!(*v, ok_value());
    }
    match &out[100] {
        Value::Error(e) => assert!(
            e.starts_with(b"WRONGTYPE"),
            "{}",
            String::from_utf8_lossy(e)
        ),
        other => panic!("expected WRONGTYPE in place, got {other:?}"),
    }
    assert_eq!(
        out[101],
        Value::Array(vec![bulk("vpl:0"), bulk("vpl:1"), bulk("vpl:2")])
    );
    assert_eq!(out[102], Value::Int(1));
    assert_eq!(out[103], Value::Int(2));
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            out[104 + i],
            bulk(&format!("v{k}")),
            "result {} for {k}",
            104 + i
        );
    }

    // Raise-on-error: the first error instead of the array; the other commands still ran.
    let cmds = vec![
        argv("SET pl:raise a"),
        argv("LPUSH pl:1 x"),
        argv("INCR pl:1"),
        argv("SET pl:raise2 b"),
    ];
    let e = error(batch(&c, false, &[], &cmds, flags::RAISE_ON_ERROR));
    assert_eq!(e.kind, ErrorKind::Request);
    assert!(e.message.starts_with("WRONGTYPE"), "{e}");
    assert_eq!(call(&c, "GET pl:raise2"), bulk("b"));

    let mut del = vec![b"DEL".to_vec()];
    del.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
    del.extend([
        b"pl:counter".to_vec(),
        b"pl:raise".to_vec(),
        b"pl:raise2".to_vec(),
    ]);
    let refs: Vec<&[u8]> = del.iter().map(Vec::as_slice).collect();
    call_routed(&c, &refs, Route::Auto).unwrap();
}

#[test]
fn standalone_pipeline_and_blocking_commands() {
    let core = EmbeddedCore::start(1).unwrap();
    let c = core
        .open(&standalone_cfg(shared_standalone().addr()))
        .unwrap();
    let cmds = vec![
        argv("DEL sp:a sp:l"),
        argv("SET sp:a 1"),
        argv("INCR sp:a"),
        argv("LPUSH sp:a x"),
        argv("GET sp:a"),
    ];
    let out = array(batch(&c, false, &[], &cmds, 0));
    assert_eq!(out[1], ok_value());
    assert_eq!(out[2], Value::Int(2));
    assert!(
        matches!(&out[3], Value::Error(e) if e.starts_with(b"WRONGTYPE")),
        "{out:?}"
    );
    assert_eq!(out[4], bulk("2"));
    let e = error(batch(&c, false, &[], &cmds, flags::RAISE_ON_ERROR));
    assert!(e.message.starts_with("WRONGTYPE"), "{e}");

    // A pipeline with blocking commands runs on a dedicated connection: the shared one stays
    // free meanwhile, and its bound covers the block.
    let cmds = vec![
        argv("RPUSH sp:l a"),
        argv("BLPOP sp:empty 3"),
        argv("BLPOP sp:l 1"),
        argv("SET sp:w x"),
        argv("WAIT 0 100"),
    ];
    let id = submit_batch(&c, false, &[], &cmds, 0);
    assert_eq!(call(&c, "PING"), Value::Simple(b"PONG".to_vec()));
    let pending = c.wait_reply_until(id, Instant::now(), false);
    assert!(
        matches!(&pending, Err(e) if e.kind == ErrorKind::Timeout),
        "PING must complete while the batch still blocks"
    );
    let out = array(c.wait(id, Some(T)).unwrap());
    assert_eq!(out[0], Value::Int(1));
    assert_eq!(out[1], Value::Nil);
    assert_eq!(out[2], Value::Array(vec![bulk("sp:l"), bulk("a")]));
    assert_eq!(out[4], Value::Int(0));
    call(&c, "DEL sp:a sp:w");
}

#[test]
fn refused_and_malformed_batches() {
    let core = EmbeddedCore::start(1).unwrap();
    let c = core
        .open(&standalone_cfg(shared_standalone().addr()))
        .unwrap();
    call(&c, "DEL rf:a");
    for bad in [
        "SELECT 1",
        "MULTI",
        "EXEC",
        "WATCH rf:a",
        "SUBSCRIBE ch",
        "CLIENT SETNAME x",
    ] {
        for atomic in [false, true] {
            let e = error(batch(&c, atomic, &[], &[argv("SET rf:a 1"), argv(bad)], 0));
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{bad}: {e}");
            assert!(e.message.contains("command 1"), "{e}");
        }
    }
    assert_eq!(call(&c, "EXISTS rf:a"), Value::Int(0), "nothing was sent");
    let e = error(batch(&c, false, &[], &[argv("SET rf:a 1"), Vec::new()], 0));
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    let e = error(batch(
        &c,
        false,
        &[b"rf:a".to_vec()],
        &[argv("GET rf:a")],
        0,
    ));
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "watch needs atomic: {e}");
    assert_eq!(array(batch(&c, false, &[], &[], 0)), Vec::<Value>::new());
    assert_eq!(call(&c, "EXISTS rf:a"), Value::Int(0));
}

// ---------------------------------------------------------------------------------------------
// transactions

#[test]
fn cluster_transactions() {
    let _g = serial();
    let cluster = shared_cluster();
    wait_slots_settled(cluster);
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&cluster_cfg(cluster.addrs())).unwrap();
    call(&c, "DEL {tx}a {tx}s {tx}w");

    // Atomic on one slot.
    let cmds = vec![argv("SET {tx}a 1"), argv("INCR {tx}a"), argv("GET {tx}a")];
    assert_eq!(
        array(batch(&c, true, &[], &cmds, 0)),
        vec![ok_value(), Value::Int(2), bulk("2")]
    );
    // With a watch key nobody touches.
    let out = array(batch(
        &c,
        true,
        &[b"{tx}w".to_vec()],
        &[argv("INCR {tx}a")],
        0,
    ));
    assert_eq!(out, vec![Value::Int(3)]);

    // A runtime error stays in place; the rest of the transaction ran.
    let cmds = vec![
        argv("SET {tx}s x"),
        argv("LPUSH {tx}s y"),
        argv("GET {tx}s"),
    ];
    let out = array(batch(&c, true, &[], &cmds, 0));
    assert_eq!(out[0], ok_value());
    assert!(
        matches!(&out[1], Value::Error(e) if e.starts_with(b"WRONGTYPE")),
        "{out:?}"
    );
    assert_eq!(out[2], bulk("x"));
    let e = error(batch(&c, true, &[], &cmds, flags::RAISE_ON_ERROR));
    assert_eq!(e.kind, ErrorKind::Request);
    assert!(e.message.starts_with("WRONGTYPE"), "{e}");

    // A command the server refuses to queue aborts the whole transaction.
    let cmds = vec![argv("SET {tx}a 100"), argv("SET {tx}a")];
    let e = error(batch(&c, true, &[], &cmds, 0));
    assert_eq!(e.kind, ErrorKind::ExecAbort, "{e}");
    assert!(e.message.contains("command 1"), "{e}");
    assert_eq!(call(&c, "GET {tx}a"), bulk("3"));

    // Cross-slot: refused before anything is sent.
    let (a, b) = ("txa:1", "txb:2");
    assert_ne!(key_slot(a.as_bytes()), key_slot(b.as_bytes()));
    let cmds = vec![argv(&format!("SET {a} 1")), argv(&format!("SET {b} 2"))];
    let e = error(batch(&c, true, &[], &cmds, 0));
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");
    assert!(
        e.message.contains("cross-slot") && e.message.contains(a),
        "{e}"
    );
    // Watch keys count too, and multi-key commands.
    let e = error(batch(
        &c,
        true,
        &[a.as_bytes().to_vec()],
        &[argv(&format!("SET {b} 2"))],
        0,
    ));
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");
    let e = error(batch(
        &c,
        true,
        &[],
        &[argv(&format!("MSET {a} 1 {b} 2"))],
        0,
    ));
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");
    assert_eq!(call(&c, &format!("EXISTS {a}")), Value::Int(0));
    assert_eq!(call(&c, &format!("EXISTS {b}")), Value::Int(0));
    call(&c, "DEL {tx}a {tx}s {tx}w");
}

fn blocked_clients(server: &RedisServer) -> u32 {
    let info = server.cli(&["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_blocked(server: &RedisServer, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocked_clients(server) < n {
        assert!(Instant::now() < deadline, "{n} clients never blocked");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A transaction whose WATCH key is missing on a slot's migrating source: the server answers
/// WATCH with ASK (a redirect outside the transaction, which does not abort it) while EXEC
/// runs the queued commands, whose keys are still there. The transaction ran, so it must not
/// be sent again (it used to be resent after each redirect, up to the hop limit): exactly
/// one INCR, and an error saying it ran without its WATCH.
#[test]
fn a_transaction_whose_watch_is_redirected_runs_once() {
    let _g = serial();
    let cluster = shared_cluster();
    wait_slots_settled(cluster);
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&cluster_cfg(cluster.addrs())).unwrap();
    let slot = key_slot(b"{mg}");
    let from = cluster.node_for_slot(slot);
    let to = *cluster
        .primaries()
        .iter()
        .find(|p| p.addr() != from.addr())
        .expect("another primary");
    call(&c, "DEL {mg}n {mg}lock");
    call(&c, "SET {mg}n 0");
    let (from_id, to_id) = (node_id(from), node_id(to));
    let s = slot.to_string();
    assert_eq!(
        to.cli(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]),
        "OK"
    );
    assert_eq!(
        from.cli(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]),
        "OK"
    );
    let out = batch(&c, true, &[b"{mg}lock".to_vec()], &[argv("INCR {mg}n")], 0);
    // End the migration before asserting (the slot stays with `from`).
    assert_eq!(to.cli(&["CLUSTER", "SETSLOT", &s, "STABLE"]), "OK");
    assert_eq!(from.cli(&["CLUSTER", "SETSLOT", &s, "STABLE"]), "OK");
    assert_eq!(
        from.cli(&["GET", "{mg}n"]),
        "1",
        "the transaction ran {out:?}"
    );
    let e = error(out);
    assert_eq!(e.kind, ErrorKind::Request, "{e}");
    assert!(e.message.contains("ran without it"), "{e}");
    call(&c, "DEL {mg}n");
}

/// WATCH detects a change another client makes between WATCH and EXEC. The change is made to
/// land there deterministically with `CLIENT PAUSE WRITE`: the other client's SET is held
/// first, then the transaction's writes; on UNPAUSE they run in that order.
#[test]
fn watch_detects_a_concurrent_change() {
    let server = RedisServer::start();
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&standalone_cfg(server.addr())).unwrap();
    for raise in [false, true] {
        call(&c, "SET w:k orig");
        assert_eq!(server.cli(&["CLIENT", "PAUSE", "20000", "WRITE"]), "OK");
        let url = server.url();
        let other = std::thread::spawn(move || {
            let client = redis::Client::open(url).unwrap();
            let mut con = client.get_connection().unwrap();
            redis::cmd("SET")
                .arg("w:k")
                .arg("other")
                .query::<()>(&mut con)
                .unwrap();
        });
        wait_blocked(&server, 1);
        let flags = if raise { flags::RAISE_ON_ERROR } else { 0 };
        let id = submit_batch(&c, true, &[b"w:k".to_vec()], &[argv("SET w:k txn")], flags);
        wait_blocked(&server, 2);
        assert_eq!(server.cli(&["CLIENT", "UNPAUSE"]), "OK");
        other.join().unwrap();
        let done = c.wait(id, Some(T)).unwrap();
        if raise {
            assert_eq!(error(done).kind, ErrorKind::ExecAbort);
        } else {
            assert_eq!(done, Completion::Ok(Value::Nil), "EXEC returns nil");
        }
        assert_eq!(
            call(&c, "GET w:k"),
            bulk("other"),
            "the transaction did not run"
        );
    }
    // Without a concurrent change the transaction runs, and the connection is clean after
    // the aborted ones (no WATCH or MULTI state left).
    let out = array(batch(
        &c,
        true,
        &[b"w:k".to_vec()],
        &[argv("SET w:k txn")],
        0,
    ));
    assert_eq!(out, vec![ok_value()]);
    assert_eq!(call(&c, "GET w:k"), bulk("txn"));
    assert_eq!(call(&c, "INCR w:n"), Value::Int(1));
}

#[test]
fn standalone_transaction_and_resp2() {
    let core = EmbeddedCore::start(1).unwrap();
    for protocol in [Protocol::Resp3, Protocol::Resp2] {
        let cfg = Config {
            protocol,
            ..standalone_cfg(shared_standalone().addr())
        };
        let c = core.open(&cfg).unwrap();
        let k = format!("st:{protocol:?}");
        call(&c, &format!("DEL {k}"));
        let cmds = vec![
            argv(&format!("HSET {k} f v")),
            argv(&format!("HGETALL {k}")),
            argv(&format!("DEL {k}")),
        ];
        let out = array(batch(&c, true, &[k.as_bytes().to_vec()], &cmds, 0));
        assert_eq!(out[0], Value::Int(1));
        match protocol {
            Protocol::Resp3 => assert!(matches!(out[1], Value::Map(_)), "{out:?}"),
            Protocol::Resp2 => assert_eq!(out[1], Value::Array(vec![bulk("f"), bulk("v")])),
        }
        assert_eq!(out[2], Value::Int(1));
    }
}

// ---------------------------------------------------------------------------------------------
// scripts and functions

const SCRIPT: &str = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])";

fn script_exists(c: &EmbeddedClient, sha: &str, route: Route) -> Value {
    call_routed(c, &[b"SCRIPT", b"EXISTS", sha.as_bytes()], route).unwrap()
}

#[test]
fn cluster_script_survives_script_flush() {
    let _g = serial();
    let cluster = shared_cluster();
    wait_slots_settled(cluster);
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&cluster_cfg(cluster.addrs())).unwrap();
    let sha = redis::Script::new(SCRIPT).get_hash().to_string();
    let keys = ["sc:a", "sc:b", "sc:c", "sc:d", "sc:e", "sc:f"];
    for round in 0..3 {
        for k in keys {
            let v = format!("{k}-{round}");
            assert_eq!(
                script(&c, SCRIPT, &[k], &[&v]),
                Completion::Ok(bulk(&v)),
                "round {round}"
            );
            let exists = script_exists(
                &c,
                &sha,
                Route::SlotKey {
                    key: k.as_bytes().to_vec(),
                    replica: false,
                },
            );
            assert_eq!(
                exists,
                Value::Array(vec![Value::Int(1)]),
                "cached on {k}'s node"
            );
        }
        // Every node loses its script cache.
        assert_eq!(
            call_routed(&c, &[b"SCRIPT", b"FLUSH"], Route::AllNodes).unwrap(),
            ok_value()
        );
        assert_eq!(
            script_exists(&c, &sha, Route::AllPrimaries),
            Value::Array(vec![Value::Int(0)])
        );
    }
    // No keys: a random node.
    assert_eq!(
        script(&c, "return 7", &[], &[]),
        Completion::Ok(Value::Int(7))
    );
    // Script errors are request errors.
    let e = error(script(&c, "return redis.error_reply('NOPE bad')", &[], &[]));
    assert_eq!(e.kind, ErrorKind::Request);
    assert!(e.message.starts_with("NOPE"), "{e}");
    let e = error(script(&c, "this is not lua", &[], &[]));
    assert_eq!(e.kind, ErrorKind::Request);
    let mut del = vec![&b"DEL"[..]];
    del.extend(keys.iter().map(|k| k.as_bytes()));
    call_routed(&c, &del, Route::Auto).unwrap();
}

#[test]
fn standalone_script_survives_script_flush() {
    let core = EmbeddedCore::start(1).unwrap();
    let c = core
        .open(&standalone_cfg(shared_standalone().addr()))
        .unwrap();
    let sha = redis::Script::new(SCRIPT).get_hash().to_string();
    for round in 0..3 {
        let v = format!("v{round}");
        assert_eq!(
            script(&c, SCRIPT, &["ss:k"], &[&v]),
            Completion::Ok(bulk(&v))
        );
        assert_eq!(
            script_exists(&c, &sha, Route::Auto),
            Value::Array(vec![Value::Int(1)])
        );
        call(&c, "SCRIPT FLUSH");
    }
    // A body that is not UTF-8 is sent with EVAL.
    let code = b"return '\xff'".to_vec();
    let op: Op<ArgsRef<'_>> = Op::Script {
        code,
        keys: Vec::new(),
        args: Vec::new(),
    };
    let id = c.submit_op(&op, &Route::Auto, Some(T), 0).unwrap();
    assert_eq!(
        c.wait(id, Some(T)).unwrap(),
        Completion::Ok(Value::Bulk(vec![0xff]))
    );
    call(&c, "DEL ss:k");
}

const LIBRARY: &str = "#!lua name=vshmtestlib
redis.register_function('vshm_set', function(keys, args) redis.call('SET', keys[1], args[1]); return redis.call('GET', keys[1]) end)
redis.register_function{function_name='vshm_get', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}";

#[test]
fn cluster_fcall_routes_by_key() {
    let _g = serial();
    let cluster = shared_cluster();
    wait_slots_settled(cluster);
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&cluster_cfg(cluster.addrs())).unwrap();
    let r = call_routed(
        &c,
        &[b"FUNCTION", b"LOAD", b"REPLACE", LIBRARY.as_bytes()],
        Route::AllPrimaries,
    )
    .unwrap();
    assert_eq!(r, bulk("vshmtestlib"));
    let keys: Vec<String> = (0..30).map(|i| format!("fc:{i}")).collect();
    let ports: BTreeSet<u16> = keys
        .iter()
        .map(|k| cluster.node_for_slot(key_slot(k.as_bytes())).port())
        .collect();
    assert_eq!(ports.len(), 3);
    for k in &keys {
        let v = format!("val-{k}");
        let set = call_routed(
            &c,
            &[b"FCALL", b"vshm_set", b"1", k.as_bytes(), v.as_bytes()],
            Route::Auto,
        )
        .unwrap();
        assert_eq!(set, bulk(&v));
        let get = call_routed(
            &c,
            &[b"FCALL_RO", b"vshm_get", b"1", k.as_bytes()],
            Route::Auto,
        )
        .unwrap();
        assert_eq!(get, bulk(&v));
    }
    // FCALL in a pipeline and a transaction too.
    let cmds: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|k| argv(&format!("FCALL_RO vshm_get 1 {k}")))
        .collect();
    let out = array(batch(&c, false, &[], &cmds, 0));
    for (k, v) in keys.iter().zip(out) {
        assert_eq!(v, bulk(&format!("val-{k}")));
    }
    let out = array(batch(
        &c,
        true,
        &[],
        &[
            argv("FCALL vshm_set 1 {fc}x 1"),
            argv("FCALL_RO vshm_get 1 {fc}x"),
        ],
        0,
    ));
    assert_eq!(out, vec![bulk("1"), bulk("1")]);
    let mut del = vec![b"DEL".to_vec(), b"{fc}x".to_vec()];
    del.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
    let refs: Vec<&[u8]> = del.iter().map(Vec::as_slice).collect();
    call_routed(&c, &refs, Route::Auto).unwrap();
    call_routed(
        &c,
        &[b"FUNCTION", b"DELETE", b"vshmtestlib"],
        Route::AllPrimaries,
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// scans

#[test]
fn cluster_scan_returns_every_key_exactly_once() {
    let _g = serial();
    let cluster = shared_cluster();
    wait_slots_settled(cluster);
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&cluster_cfg(cluster.addrs())).unwrap();
    let keys: Vec<Vec<u8>> = (0..5000)
        .map(|i| format!("scan5k:{i}").into_bytes())
        .collect();
    write_keys(&c, &keys);
    let hashes: Vec<String> = (0..20).map(|i| format!("scan5k:h{i}")).collect();
    for h in &hashes {
        call(&c, &format!("HSET {h} f v"));
    }
    for count in [0, 250] {
        let seen = scan_all(&c, "scan5k:*", count);
        let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dups.is_empty(), "repeated keys: {}", dups.len());
        let got: HashSet<&Vec<u8>> = seen.keys().collect();
        let want: HashSet<&Vec<u8>> = keys.iter().collect();
        assert_eq!(got.len(), 5020);
        assert!(want.is_subset(&got));
    }
    // TYPE filter.
    let mut cursor = 0;
    let mut found = BTreeSet::new();
    loop {
        let (next, ks) = scan_step(&c, cursor, Some("scan5k:*"), 500, Some("hash")).unwrap();
        found.extend(ks.into_iter().map(|k| String::from_utf8(k).unwrap()));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(found, hashes.iter().cloned().collect::<BTreeSet<_>>());
    // Unknown cursors are refused.
    let e = scan_step(&c, 12345, None, 10, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");
    // A handle stays valid until the next step from its successor: a lost step can be retried.
    let (h1, k1) = scan_step(&c, 0, Some("scan5k:*"), 100, None).unwrap();
    let (h2, _) = scan_step(&c, h1, Some("scan5k:*"), 100, None).unwrap();
    let (h2b, _) = scan_step(&c, h1, Some("scan5k:*"), 100, None).unwrap();
    assert!(h2 != 0 && h2b != 0 && !k1.is_empty());
    scan_step(&c, h2, Some("scan5k:*"), 100, None).unwrap();
    let e = scan_step(&c, h1, Some("scan5k:*"), 100, None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");

    for chunk in keys.chunks(500) {
        let mut del = vec![&b"DEL"[..]];
        del.extend(chunk.iter().map(Vec::as_slice));
        call_routed(&c, &del, Route::Auto).unwrap();
    }
    for h in &hashes {
        call(&c, &format!("DEL {h}"));
    }
}

#[test]
fn standalone_scan_uses_the_server_cursor() {
    let server = RedisServer::start();
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&standalone_cfg(server.addr())).unwrap();
    let keys: Vec<Vec<u8>> = (0..500).map(|i| format!("ss:{i}").into_bytes()).collect();
    write_keys(&c, &keys);
    call(&c, "SET other 1");
    let seen = scan_all(&c, "ss:*", 37);
    assert_eq!(seen.len(), 500);
    assert!(seen.values().all(|n| *n == 1));
}

fn replica_of(cluster: &RedisCluster, primary_port: u16) -> &RedisServer {
    cluster
        .replicas()
        .into_iter()
        .find(|r| {
            r.cli(&["INFO", "replication"])
                .lines()
                .any(|l| l.trim() == format!("master_port:{primary_port}"))
        })
        .unwrap_or_else(|| panic!("no replica of {primary_port}"))
}

/// Waits until the replicas hold as many keys as the primaries.
fn wait_replicated(cluster: &RedisCluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let dbsize = |n: &RedisServer| n.cli(&["DBSIZE"]).parse::<u64>().unwrap_or(0);
    loop {
        let p: u64 = cluster.primaries().into_iter().map(dbsize).sum();
        let r: u64 = cluster.replicas().into_iter().map(dbsize).sum();
        if p == r {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not catch up ({r} of {p})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scan that meets a failover of the node it is scanning misses no key: first a manual
/// failover (the old primary keeps answering as a replica), then a SIGKILL of the new primary
/// (the node errors until its replica is promoted).
#[test]
fn cluster_scan_survives_failovers() {
    let mut cluster = RedisCluster::start();
    wait_slots_settled(&cluster);
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&cluster_cfg(cluster.addrs())).unwrap();
    let keys: Vec<Vec<u8>> = (0..3000).map(|i| format!("fo:{i}").into_bytes()).collect();
    write_keys(&c, &keys);
    wait_replicated(&cluster);

    for phase in ["manual failover", "kill"] {
        let t0 = Instant::now();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut cursor = 0;
        let mut steps = 0;
        loop {
            let (next, ks) = scan_step(&c, cursor, Some("fo:*"), 20, None)
                .unwrap_or_else(|e| panic!("{phase}: step {steps}: {e}"));
            seen.extend(ks);
            steps += 1;
            if steps == 5 {
                // The scan starts with the shard of slot 0: fail over that node now.
                let primary = cluster.node_for_slot(0).port();
                match phase {
                    "manual failover" => {
                        let replica = replica_of(&cluster, primary);
                        assert_eq!(replica.cli(&["CLUSTER", "FAILOVER"]), "OK");
                        let deadline = Instant::now() + Duration::from_secs(20);
                        while cluster.node_for_slot(0).port() == primary {
                            assert!(Instant::now() < deadline, "manual failover did not happen");
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        cluster.wait_settled(Duration::from_secs(20));
                    }
                    _ => {
                        cluster
                            .nodes
                            .iter_mut()
                            .find(|n| n.port() == primary)
                            .unwrap()
                            .kill();
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let missing = keys.iter().filter(|k| !seen.contains(*k)).count();
        assert_eq!(missing, 0, "{phase}: {missing} keys missed");
        assert_eq!(
            seen.len(),
            keys.len(),
            "{phase}: only the written keys match"
        );
        eprintln!("{phase}: {steps} steps in {:?}", t0.elapsed());
        if phase == "manual failover" {
            wait_replicated(&cluster);
        }
    }
}
