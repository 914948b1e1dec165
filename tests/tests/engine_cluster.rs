//! The engine (`vshm_core::Backend::execute`) against a real cluster (3 primaries + 3 replicas).
//!
//! Tests share one cluster (`shared_cluster`). They hold [`SERIAL`] while they run: some count
//! keys (DBSIZE) or stall a node (DEBUG SLEEP), which concurrent tests would disturb.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;
use vshm_core::config::{Config, Mode, Protocol};
use vshm_core::{Backend, Engine};
use vshm_protocol::msg::{ClientError, Completion, ErrorKind, Op, Request, Route, Value};
use vshm_tests::{key_slot, shared_cluster, RedisCluster};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const T: u32 = 20_000;

fn request(args: &[&[u8]], route: Route, timeout_ms: u32) -> Request {
    Request {
        id: 1,
        timeout_ms,
        flags: 0,
        route,
        op: Op::Command {
            args: args.iter().map(|a| a.to_vec()).collect(),
        },
    }
}

async fn routed(b: &Backend, args: &[&[u8]], route: Route) -> Value {
    match b.execute(&request(args, route.clone(), T)).await {
        Completion::Ok(v) => v,
        other => panic!(
            "{:?} {route:?}: {other:?}",
            String::from_utf8_lossy(&args.concat())
        ),
    }
}

async fn ok(b: &Backend, args: &[&[u8]]) -> Value {
    routed(b, args, Route::Auto).await
}

async fn err(b: &Backend, args: &[&[u8]]) -> ClientError {
    match b.execute(&request(args, Route::Auto, T)).await {
        Completion::Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn bulk(s: &[u8]) -> Value {
    Value::Bulk(s.to_vec())
}

fn simple(s: &str) -> Value {
    Value::Simple(s.as_bytes().to_vec())
}

fn text(v: Value) -> String {
    match v {
        Value::Bulk(t) | Value::Verbatim { text: t, .. } | Value::Simple(t) => {
            String::from_utf8(t).unwrap()
        }
        other => panic!("not text: {other:?}"),
    }
}

fn int(v: Value) -> i64 {
    match v {
        Value::Int(n) => n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn cluster_config(protocol: Protocol) -> Config {
    Config {
        addresses: shared_cluster().addrs(),
        mode: Mode::Cluster,
        protocol,
        ..Config::default()
    }
}

/// Waits until every node's `CLUSTER SLOTS` lists all six nodes: right after the cluster is
/// created, replicas show up there a little later than in `CLUSTER NODES`, and the engine
/// (like redis-rs) learns the topology from `CLUSTER SLOTS`.
fn wait_slots_settled(cluster: &RedisCluster) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let settled = cluster.nodes.iter().all(|n| {
            let slots = n.cli(&["CLUSTER", "SLOTS"]);
            cluster
                .nodes
                .iter()
                .all(|m| slots.lines().any(|l| l.trim() == m.port().to_string()))
        });
        if settled {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "CLUSTER SLOTS does not list every node"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn backend(protocol: Protocol) -> (Engine, Arc<Backend>) {
    wait_slots_settled(shared_cluster());
    let engine = Engine::new(Handle::current());
    let b = engine.connect(&cluster_config(protocol)).await.unwrap();
    (engine, b)
}

/// `n` keys with `prefix`, spread so that every primary serves at least one of them.
fn keys_on_all_primaries(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    let cluster = shared_cluster();
    let mut by_node: BTreeMap<u16, Vec<Vec<u8>>> = BTreeMap::new();
    let mut i = 0;
    while by_node.len() < 3 || by_node.values().map(Vec::len).sum::<usize>() < n {
        let k = format!("{prefix}{i}").into_bytes();
        i += 1;
        let port = cluster.node_for_slot(key_slot(&k)).port();
        let v = by_node.entry(port).or_default();
        if v.len() < n.div_ceil(3) {
            v.push(k);
        }
    }
    // Interleave the nodes so neighbours live on different primaries.
    let mut out = Vec::new();
    let lists: Vec<Vec<Vec<u8>>> = by_node.into_values().collect();
    for j in 0.. {
        let before = out.len();
        for l in &lists {
            if let Some(k) = l.get(j) {
                out.push(k.clone());
            }
        }
        if out.len() == before {
            break;
        }
    }
    out.truncate(n);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_and_types() {
    let _g = SERIAL.lock().await;
    for protocol in [Protocol::Resp3, Protocol::Resp2] {
        let (_e, b) = backend(protocol).await;
        let p = format!("{{rt{protocol:?}}}");
        let k = |s: &str| format!("{p}{s}").into_bytes();
        assert_eq!(ok(&b, &[b"SET", &k("s"), b"v\0x"]).await, simple("OK"));
        assert_eq!(ok(&b, &[b"GET", &k("s")]).await, bulk(b"v\0x"));
        ok(&b, &[b"HSET", &k("h"), b"f", b"v"]).await;
        let all = ok(&b, &[b"HGETALL", &k("h")]).await;
        match protocol {
            Protocol::Resp3 => assert!(matches!(all, Value::Map(_)), "{all:?}"),
            Protocol::Resp2 => assert_eq!(all, Value::Array(vec![bulk(b"f"), bulk(b"v")])),
        }
        ok(&b, &[b"ZADD", &k("z"), b"2.5", b"m"]).await;
        let score = ok(&b, &[b"ZSCORE", &k("z"), b"m"]).await;
        match protocol {
            Protocol::Resp3 => assert_eq!(score, Value::Double(2.5)),
            Protocol::Resp2 => assert_eq!(score, bulk(b"2.5")),
        }
        ok(&b, &[b"SADD", &k("set"), b"a"]).await;
        let members = ok(&b, &[b"SMEMBERS", &k("set")]).await;
        match protocol {
            Protocol::Resp3 => assert_eq!(members, Value::Set(vec![bulk(b"a")])),
            Protocol::Resp2 => assert_eq!(members, Value::Array(vec![bulk(b"a")])),
        }
        let big = vec![7u8; 1 << 20];
        ok(&b, &[b"SET", &k("big"), &big]).await;
        assert_eq!(ok(&b, &[b"GET", &k("big")]).await, Value::Bulk(big));
        // Keys in many slots.
        for i in 0..50 {
            let key = format!("rt:{protocol:?}:{i}").into_bytes();
            ok(&b, &[b"SET", &key, &key]).await;
            assert_eq!(ok(&b, &[b"GET", &key]).await, Value::Bulk(key.clone()));
            ok(&b, &[b"DEL", &key]).await;
        }
        ok(
            &b,
            &[b"DEL", &k("s"), &k("h"), &k("z"), &k("set"), &k("big")],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_commands_span_all_primaries() {
    let _g = SERIAL.lock().await;
    let (_e, b) = backend(Protocol::Resp3).await;
    let keys = keys_on_all_primaries("mk:", 12);
    let ports: BTreeSet<u16> = keys
        .iter()
        .map(|k| shared_cluster().node_for_slot(key_slot(k)).port())
        .collect();
    assert_eq!(ports.len(), 3, "keys must span all primaries");

    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    let values: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| [b"val-".as_slice(), k].concat())
        .collect();
    for (k, v) in keys.iter().zip(&values) {
        mset.push(k);
        mset.push(v);
    }
    assert_eq!(ok(&b, &mset).await, simple("OK"));

    // MGET in a different order than MSET, with a missing key in the middle: replies come
    // back in request order.
    let mut order: Vec<usize> = (0..keys.len()).rev().collect();
    order.insert(5, usize::MAX);
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    for &i in &order {
        mget.push(if i == usize::MAX {
            b"mk:missing"
        } else {
            &keys[i]
        });
    }
    let expected: Vec<Value> = order
        .iter()
        .map(|&i| {
            if i == usize::MAX {
                Value::Nil
            } else {
                Value::Bulk(values[i].clone())
            }
        })
        .collect();
    assert_eq!(ok(&b, &mget).await, Value::Array(expected));

    let mut exists: Vec<&[u8]> = vec![b"EXISTS"];
    exists.extend(keys.iter().map(Vec::as_slice));
    exists.push(b"mk:missing");
    assert_eq!(ok(&b, &exists).await, Value::Int(keys.len() as i64));

    // KEYS goes to every primary and combines.
    let mut listed = match ok(&b, &[b"KEYS", b"mk:*"]).await {
        Value::Array(a) => a,
        other => panic!("{other:?}"),
    };
    listed.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    let mut want: Vec<Value> = keys.iter().map(|k| Value::Bulk(k.clone())).collect();
    want.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(listed, want);

    let mut del: Vec<&[u8]> = vec![b"DEL"];
    del.extend(keys.iter().map(Vec::as_slice));
    assert_eq!(ok(&b, &del).await, Value::Int(keys.len() as i64));
    assert_eq!(ok(&b, &exists).await, Value::Int(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_routes() {
    let _g = SERIAL.lock().await;
    let cluster = shared_cluster();
    let (_e, b) = backend(Protocol::Resp3).await;
    let keys = keys_on_all_primaries("dbsize:", 9);
    for k in &keys {
        ok(&b, &[b"SET", k, b"x"]).await;
    }
    // DBSIZE on all primaries is the sum of each primary's.
    let sum: i64 = cluster
        .primaries()
        .iter()
        .map(|n| n.cli(&["DBSIZE"]).parse::<i64>().unwrap())
        .sum();
    assert!(sum >= keys.len() as i64);
    assert_eq!(
        routed(&b, &[b"DBSIZE"], Route::AllPrimaries).await,
        Value::Int(sum)
    );
    assert_eq!(ok(&b, &[b"DBSIZE"]).await, Value::Int(sum));

    // PING everywhere: one PONG (all succeeded).
    assert_eq!(
        routed(&b, &[b"PING"], Route::AllNodes).await,
        simple("PONG")
    );
    assert_eq!(
        routed(&b, &[b"PING"], Route::AllPrimaries).await,
        simple("PONG")
    );
    assert_eq!(routed(&b, &[b"PING"], Route::Random).await, simple("PONG"));

    // No rule to combine INFO: a map keyed by node address, one entry per node.
    let info = routed(&b, &[b"INFO", b"server"], Route::AllNodes).await;
    let Value::Map(pairs) = info else {
        panic!("{info:?}")
    };
    let addrs: BTreeSet<String> = pairs.iter().map(|p| text(p.key.clone())).collect();
    let all: BTreeSet<String> = cluster.addrs().into_iter().collect();
    assert_eq!(addrs, all);
    for p in pairs {
        let addr = text(p.key);
        let port = addr.rsplit_once(':').unwrap().1;
        assert!(
            text(p.value).contains(&format!("tcp_port:{port}")),
            "{addr}"
        );
    }
    let primaries = routed(&b, &[b"INFO", b"server"], Route::AllPrimaries).await;
    let Value::Map(pairs) = primaries else {
        panic!()
    };
    assert_eq!(pairs.len(), 3);

    let mut del: Vec<&[u8]> = vec![b"DEL"];
    del.extend(keys.iter().map(Vec::as_slice));
    ok(&b, &del).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_routes() {
    let _g = SERIAL.lock().await;
    let cluster = shared_cluster();
    let (_e, b) = backend(Protocol::Resp3).await;
    let mut known = b.nodes();
    known.sort();
    let mut all = cluster.addrs();
    all.sort();
    assert_eq!(known, all);

    // Address reaches that very node, primaries and replicas alike.
    for node in &cluster.nodes {
        let route = Route::Address {
            host: "127.0.0.1".into(),
            port: node.port(),
        };
        let info = text(routed(&b, &[b"INFO", b"server"], route).await);
        assert!(
            info.contains(&format!("tcp_port:{}\r\n", node.port())),
            "{}",
            node.addr()
        );
    }
    // An unknown address is refused (not retried against the cluster).
    let start = Instant::now();
    match b
        .execute(&request(
            &[b"PING"],
            Route::Address {
                host: "127.0.0.1".into(),
                port: 1,
            },
            T,
        ))
        .await
    {
        Completion::Err(e) => {
            assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");
            assert!(e.message.contains("127.0.0.1:1"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));

    // SlotKey / SlotId reach the slot's primary.
    for key in [b"alpha".as_slice(), b"beta", b"gamma", b"{user1}:x"] {
        let slot = key_slot(key);
        let owner = cluster.node_for_slot(slot).port();
        let by_key = Route::SlotKey {
            key: key.to_vec(),
            replica: false,
        };
        let info = text(routed(&b, &[b"INFO", b"server"], by_key).await);
        assert!(info.contains(&format!("tcp_port:{owner}\r\n")));
        let by_slot = Route::SlotId {
            slot,
            replica: false,
        };
        let info = text(routed(&b, &[b"INFO", b"server"], by_slot).await);
        assert!(info.contains(&format!("tcp_port:{owner}\r\n")));
    }
    // A replica route for a read works (whichever node answers, the data is right).
    ok(&b, &[b"SET", b"replica-read", b"v"]).await;
    let route = Route::SlotKey {
        key: b"replica-read".to_vec(),
        replica: true,
    };
    assert_eq!(
        routed(&b, &[b"GET", b"replica-read"], route).await,
        bulk(b"v")
    );
    ok(&b, &[b"DEL", b"replica-read"]).await;

    match b
        .execute(&request(
            &[b"PING"],
            Route::SlotId {
                slot: 16384,
                replica: false,
            },
            T,
        ))
        .await
    {
        Completion::Err(e) => assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_timeouts() {
    let _g = SERIAL.lock().await;
    let (_e, b) = backend(Protocol::Resp3).await;
    ok(&b, &[b"DEL", b"err:l"]).await;
    ok(&b, &[b"LPUSH", b"err:l", b"x"]).await;
    let e = err(&b, &[b"GET", b"err:l"]).await;
    assert_eq!(e.kind, ErrorKind::Request);
    assert_eq!(
        e.message,
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    let e = err(&b, &[b"MSET", b"{a}1", b"x", b"{a}2"]).await;
    assert_eq!(e.kind, ErrorKind::Request, "{e}");
    ok(&b, &[b"DEL", b"err:l"]).await;

    // DEBUG SLEEP on the node of one key, past the request's timeout.
    let route = Route::SlotKey {
        key: b"sleepy".to_vec(),
        replica: false,
    };
    let c = b
        .execute(&request(&[b"DEBUG", b"SLEEP", b"1"], route.clone(), 100))
        .await;
    match c {
        Completion::Err(e) => assert_eq!(e.kind, ErrorKind::Timeout, "{e}"),
        other => panic!("{other:?}"),
    }
    // The next command on that node succeeds.
    ok(&b, &[b"SET", b"sleepy", b"awake"]).await;
    assert_eq!(ok(&b, &[b"GET", b"sleepy"]).await, bulk(b"awake"));
    ok(&b, &[b"DEL", b"sleepy"]).await;

    // Refused commands.
    let cases: &[(&[&[u8]], &str)] = &[
        (&[b"SELECT", b"0"], "database"),
        (&[b"MULTI"], "batch API"),
        (&[b"SSUBSCRIBE", b"ch"], "pub/sub API"),
        (&[b"READONLY"], "read_from"),
    ];
    for &(args, hint) in cases {
        let e = err(&b, args).await;
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains(hint), "{e}");
    }
}

/// A script whose error text looks like a redirect for another slot than its key's: it is the
/// script's own error, returned as it is, and the script ran once (following it as a redirect
/// would run the script again on the named node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_error_that_looks_like_a_redirect_runs_once() {
    let _g = SERIAL.lock().await;
    let (_e, b) = backend(Protocol::Resp3).await;
    let key = b"redir:{script}";
    ok(&b, &[b"DEL", key]).await;
    let other = (key_slot(key) + 1) % 16384;
    let port = shared_cluster().node_for_slot(other).port();
    for code in ["MOVED", "ASK"] {
        let script = format!(
            "redis.call('INCR', KEYS[1]) return redis.error_reply('{code} {other} 127.0.0.1:{port}')"
        );
        let e = err(&b, &[b"EVAL", script.as_bytes(), b"1", key]).await;
        assert_eq!(e.kind, ErrorKind::Request, "{e}");
        assert!(e.message.starts_with(code), "{e}");
    }
    assert_eq!(
        ok(&b, &[b"GET", key]).await,
        bulk(b"2"),
        "each script ran once"
    );
    ok(&b, &[b"DEL", key]).await;

    // A script without keys: a server never redirects it, so no redirect text is one.
    let evals = || -> u64 {
        shared_cluster()
            .primaries()
            .iter()
            .map(|n| {
                let info = n.cli(&["INFO", "commandstats"]);
                info.lines()
                    .find_map(|l| l.strip_prefix("cmdstat_eval:calls="))
                    .and_then(|v| v.split(',').next())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    let before = evals();
    let script = format!("return redis.error_reply('MOVED {other} 127.0.0.1:{port}')");
    let e = err(&b, &[b"EVAL", script.as_bytes(), b"0"]).await;
    assert!(e.message.starts_with("MOVED"), "{e}");
    assert_eq!(evals() - before, 1, "the keyless script ran once");

    // A keyed command sent to a random primary on purpose still follows the server's
    // redirect for its key (nine tries over three primaries: some land elsewhere).
    ok(&b, &[b"SET", key, b"v"]).await;
    for _ in 0..9 {
        assert_eq!(routed(&b, &[b"GET", key], Route::Random).await, bulk(b"v"));
    }
    ok(&b, &[b"DEL", key]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_command_does_not_delay_others() {
    let _g = SERIAL.lock().await;
    let (_e, b) = backend(Protocol::Resp3).await;
    // Same slot for the list and the GETs: the GETs go to the very node the BLPOP blocks on.
    ok(&b, &[b"DEL", b"{blk}empty"]).await;
    ok(&b, &[b"SET", b"{blk}k", b"v"]).await;
    let blpop = {
        let b = b.clone();
        tokio::spawn(async move {
            let c = b
                .execute(&request(&[b"BLPOP", b"{blk}empty", b"2"], Route::Auto, 0))
                .await;
            (c, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..1000 {
        assert_eq!(ok(&b, &[b"GET", b"{blk}k"]).await, bulk(b"v"));
    }
    let gets_done = Instant::now();
    let (c, blpop_done) = blpop.await.unwrap();
    assert_eq!(c, Completion::Ok(Value::Nil));
    assert!(
        gets_done < blpop_done,
        "the GETs finished only after the BLPOP ended"
    );

    // And a blocking pop gets its element.
    let blpop = {
        let b = b.clone();
        tokio::spawn(async move {
            b.execute(&request(&[b"BLPOP", b"{blk}l", b"10"], Route::Auto, 0))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    ok(&b, &[b"RPUSH", b"{blk}l", b"e"]).await;
    assert_eq!(
        blpop.await.unwrap(),
        Completion::Ok(Value::Array(vec![bulk(b"{blk}l"), bulk(b"e")]))
    );
    ok(&b, &[b"DEL", b"{blk}k"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_name_on_every_node() {
    let _g = SERIAL.lock().await;
    wait_slots_settled(shared_cluster());
    let engine = Engine::new(Handle::current());
    let b = engine
        .connect(&Config {
            client_name: Some("vshm-cluster-test".into()),
            ..cluster_config(Protocol::Resp3)
        })
        .await
        .unwrap();
    let names = routed(&b, &[b"CLIENT", b"GETNAME"], Route::AllNodes).await;
    let Value::Map(pairs) = names else {
        panic!("{names:?}")
    };
    assert_eq!(pairs.len(), 6);
    for p in pairs {
        assert_eq!(p.value, bulk(b"vshm-cluster-test"));
    }
    let _ = int(routed(&b, &[b"DBSIZE"], Route::AllPrimaries).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_topology_check_follows_a_failover() {
    // Own cluster: the test fails a primary over.
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    wait_slots_settled(&cluster);
    let engine = Engine::new(Handle::current());
    let b = engine
        .connect(&Config {
            addresses: cluster.addrs(),
            mode: Mode::Cluster,
            topology_refresh_interval_ms: 200,
            ..Config::default()
        })
        .await
        .unwrap();
    let primaries = |v: Value| -> BTreeSet<String> {
        let Value::Map(pairs) = v else {
            panic!("{v:?}")
        };
        pairs
            .into_iter()
            .filter(|p| text(p.value.clone()).contains("role:master"))
            .map(|p| text(p.key))
            .collect()
    };
    let before = primaries(routed(&b, &[b"INFO", b"replication"], Route::AllPrimaries).await);
    assert_eq!(before.len(), 3);

    // Promote one replica; no request touches its slots, so only the periodic check can
    // tell the engine.
    let replica = cluster.replicas()[0];
    assert_eq!(replica.cli(&["CLUSTER", "FAILOVER"]), "OK");
    let promoted = replica.addr();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = primaries(routed(&b, &[b"INFO", b"replication"], Route::AllPrimaries).await);
        if now.contains(&promoted) && now.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "engine still routes AllPrimaries to {now:?}, not {promoted}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Data still flows.
    ok(&b, &[b"SET", b"after-failover", b"1"]).await;
    assert_eq!(ok(&b, &[b"GET", b"after-failover"]).await, bulk(b"1"));
    drop(b);
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

/// `calls` of `cmdstat_get` in a node's `INFO commandstats`.
fn get_calls(node: &vshm_tests::RedisServer) -> u64 {
    node.cli(&["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_replicas() {
    let _g = SERIAL.lock().await;
    let cluster = shared_cluster();
    wait_slots_settled(cluster);
    let engine = Engine::new(Handle::current());
    let b = engine
        .connect(&Config {
            read_from: vshm_core::config::ReadFrom::PreferReplica,
            ..cluster_config(Protocol::Resp3)
        })
        .await
        .unwrap();
    ok(&b, &[b"SET", b"from-replica", b"v"]).await;
    let before: u64 = cluster.replicas().iter().map(|n| get_calls(n)).sum();
    // GET is read-only: it goes to a replica of the key's shard. A replica may lag behind
    // the write for a moment, so read until the value shows (at least 20 reads).
    let mut gets = 0u64;
    let mut seen = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while gets < 20 || !seen {
        match ok(&b, &[b"GET", b"from-replica"]).await {
            Value::Bulk(v) if v == b"v" => seen = true,
            Value::Nil => assert!(Instant::now() < deadline, "the replica never got the write"),
            other => panic!("{other:?}"),
        }
        gets += 1;
    }
    let after: u64 = cluster.replicas().iter().map(|n| get_calls(n)).sum();
    assert!(
        after >= before + gets,
        "replicas served {} GETs",
        after - before
    );
    ok(&b, &[b"DEL", b"from-replica"]).await;
}
