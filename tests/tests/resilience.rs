//! The core under failure, driven through the rings (in-process core), each test on servers
//! of its own: resharding under load, a primary killed under load and a manual failover,
//! a standalone server stopped and restarted (with the reconnect backoff observed), a node
//! added to the cluster and found by the periodic topology refresh, and reads served by
//! replicas.
//!
//! The tests hold [`SERIAL`]: two clusters failing over side by side on a two-core machine
//! could starve nodes past their 2 s node timeout and cause failovers nobody asked for.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, AtomicU64, Ordering};

use vshm_client::embedded::{EmbeddedClient, EmbeddedCore, EmbeddedOpen};
use vshm_core::config::{Backoff, Mode, ReadFrom};
use vshm_core::{Backend, Config};
use vshm_protocol::msg::{ClientError, ErrorKind, Route, Value};
use vshm_tests::{key_slot, RedisCluster, RedisServer};

mod support;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn cluster_cfg(cluster: &RedisCluster, timeout_ms: u32) -> Config {
    Config {
        addresses: cluster.addrs(),
        mode: Mode::Cluster,
        request_timeout_ms: timeout_ms,
        topology_refresh_interval_ms: 1000,
        ..Config::default()
    }
}

fn bulk(v: &[u8]) -> Value {
    Value::Bulk(v.to_vec())
}

fn ok_value() -> Value {
    Value::Simple(b"OK".to_vec())
}

/// The backend an embedded client of `cfg` uses (the pool hands out the same one).
fn backend_of(core: &EmbeddedCore, cfg: &Config) -> Arc<Backend> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(core.engine().connect(cfg)).unwrap()
}

/// `calls` of `cmdstat_<cmd>` in a node's `INFO commandstats`.
fn calls(node: &RedisServer, cmd: &str) -> u64 {
    let prefix = format!("cmdstat_{cmd}:calls=");
    node.cli(&["INFO", "commandstats"])
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `n` keys spread so that every primary serves some of them.
fn keys_on_all_primaries(cluster: &RedisCluster, prefix: &str, n: usize) -> Vec<String> {
    let mut by_node: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    let mut i = 0;
    while by_node.len() < 3 || by_node.values().map(Vec::len).sum::<usize>() < n {
        let k = format!("{prefix}{i}");
        i += 1;
        let port = cluster.node_for_slot(key_slot(k.as_bytes())).port();
        let v = by_node.entry(port).or_default();
        if v.len() < n.div_ceil(3) {
            v.push(k);
        }
    }
    let mut out: Vec<String> = by_node.into_values().flatten().collect();
    out.truncate(n);
    out
}

// ---------------------------------------------------------------------------------------------
// 1. resharding

#[test]
fn resharding_under_load_follows_ask_and_moved_and_loses_no_write() {
    let _g = serial();
    let cluster = RedisCluster::start();
    support::wait_slots_settled(&cluster);
    let core = EmbeddedCore::start(2).unwrap();
    let cfg = cluster_cfg(&cluster, 2000);
    let client = Arc::new(core.open(&cfg).unwrap());

    // Every key in one slot, which moves to another primary while two writers work on it.
    const KEYS: usize = 200;
    let key = |i: usize| format!("{{rs}}:k{i}");
    let slot = key_slot(b"{rs}");
    for i in 0..KEYS {
        assert_eq!(
            client.call(&[b"SET", key(i).as_bytes(), b"v0"]).unwrap(),
            ok_value()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    // Each writer owns the keys i % 2 == t, so "last value written" is well defined.
    let writers: Vec<_> = (0..2usize)
        .map(|t| {
            let (client, stop, ops) = (client.clone(), stop.clone(), ops.clone());
            std::thread::spawn(move || {
                let mut last: HashMap<String, String> = HashMap::new();
                let mut failures: Vec<String> = Vec::new();
                let mut n = 0usize;
                // Acquire: pairs with the Release store after the migration below.
                while !stop.load(Ordering::Acquire) {
                    let k = key(2 * ((n * 7) % (KEYS / 2)) + t);
                    let v = format!("t{t}-{n}");
                    match client.call(&[b"SET", k.as_bytes(), v.as_bytes()]) {
                        Ok(r) if r == ok_value() => {
                            last.insert(k.clone(), v);
                        }
                        other => failures.push(format!("SET {k}: {other:?}")),
                    }
                    // Read back a key of ours written earlier.
                    let rk = key(2 * ((n * 13) % (KEYS / 2)) + t);
                    let want = last
                        .get(&rk)
                        .map(|v| bulk(v.as_bytes()))
                        .unwrap_or(bulk(b"v0"));
                    match client.call(&[b"GET", rk.as_bytes()]) {
                        Ok(r) if r == want => {}
                        other => failures.push(format!("GET {rk}: {other:?}, wanted {want:?}")),
                    }
                    ops.fetch_add(2, Ordering::Relaxed);
                    n += 1;
                }
                (last, failures)
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(300));
    let from = cluster.node_for_slot(slot);
    let primaries = cluster.primaries();
    let to = *primaries.iter().find(|p| p.port() != from.port()).unwrap();
    let others: Vec<&RedisServer> = primaries
        .iter()
        .copied()
        .filter(|p| p.port() != from.port() && p.port() != to.port())
        .collect();
    let before = ops.load(Ordering::Relaxed);
    let moved = support::migrate_slot(slot, from, to, &others, || {
        std::thread::sleep(Duration::from_millis(30))
    });
    let during = ops.load(Ordering::Relaxed) - before;
    assert_eq!(moved, KEYS, "every key of the slot moved");
    assert!(during > 0, "the writers ran while the slot moved");
    support::wait_slot_owner(&cluster, slot, to);
    std::thread::sleep(Duration::from_millis(500));
    // Release: pairs with the writers' Acquire load above.
    stop.store(true, Ordering::Release);

    let mut last = HashMap::new();
    for w in writers {
        let (l, failures) = w.join().unwrap();
        assert!(failures.is_empty(), "failed requests: {failures:#?}");
        last.extend(l);
    }
    eprintln!(
        "{} ops, {during} while migrating {moved} keys",
        ops.load(Ordering::Relaxed)
    );
    // No write lost: every key holds its last value, through the core and on the new owner.
    assert_eq!(
        from.cli(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]),
        "0"
    );
    for i in 0..KEYS {
        let k = key(i);
        let want = last.get(&k).cloned().unwrap_or_else(|| "v0".into());
        assert_eq!(
            client.call(&[b"GET", k.as_bytes()]).unwrap(),
            bulk(want.as_bytes()),
            "{k}"
        );
        assert_eq!(to.cli(&["GET", &k]), want, "{k} on the new owner");
    }
    drop(client);
    core.shutdown(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// 2. failover

/// What the load threads saw.
#[derive(Default)]
struct LoadReport {
    ok: u64,
    errors: Vec<ClientError>,
    max_latency: Duration,
}

/// SET/GET on `keys` from `threads` threads until `stop`; every outcome and latency recorded.
fn run_load(
    client: &Arc<EmbeddedClient>,
    keys: &Arc<Vec<String>>,
    threads: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<LoadReport>> {
    (0..threads)
        .map(|t| {
            let (client, keys, stop) = (client.clone(), keys.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut r = LoadReport::default();
                let mut n = t;
                // Acquire: pairs with the Release stores in
                // `primary_killed_under_load_then_manual_failover`.
                while !stop.load(Ordering::Acquire) {
                    let k = &keys[n % keys.len()];
                    n += threads;
                    for args in [
                        vec![b"SET".as_slice(), k.as_bytes(), b"x"],
                        vec![b"GET".as_slice(), k.as_bytes()],
                    ] {
                        let t0 = Instant::now();
                        let res = client.call(&args);
                        r.max_latency = r.max_latency.max(t0.elapsed());
                        match res {
                            Ok(_) => r.ok += 1,
                            Err(e) => r.errors.push(e),
                        }
                    }
                }
                r
            })
        })
        .collect()
}

/// Every fan-out answered for the whole cluster (`keys`) or failed with a
/// typed error; at least one answered.
fn check_dbsize(during: &str, sizes: &[Result<Value, ClientError>], keys: usize) {
    let answered = sizes.iter().filter(|r| r.is_ok()).count();
    eprintln!(
        "DBSIZE during {during}: {answered} answered, {} failed",
        sizes.len() - answered
    );
    for r in sizes {
        match r {
            Ok(v) => assert_eq!(*v, Value::Int(keys as i64), "a partial fan-out"),
            Err(e) => assert!(
                matches!(e.kind, ErrorKind::Connection | ErrorKind::Timeout),
                "{e}"
            ),
        }
    }
    assert!(answered > 0, "no DBSIZE answered during {during}");
}

/// `DBSIZE` to all primaries every 20 ms until `stop`: the replies.
fn watch_dbsize(
    client: &Arc<EmbeddedClient>,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Result<Value, ClientError>>> {
    let (client, stop) = (client.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut got = Vec::new();
        // Acquire: pairs with the Release store in
        // `primary_killed_under_load_then_manual_failover`.
        while !stop.load(Ordering::Acquire) {
            got.push(client.call_routed(&[b"DBSIZE"], &Route::AllPrimaries, None));
            std::thread::sleep(Duration::from_millis(20));
        }
        got
    })
}

fn collect(handles: Vec<std::thread::JoinHandle<LoadReport>>) -> LoadReport {
    let mut all = LoadReport::default();
    for h in handles {
        let r = h.join().unwrap();
        all.ok += r.ok;
        all.errors.extend(r.errors);
        all.max_latency = all.max_latency.max(r.max_latency);
    }
    all
}

/// Every key written and read back, each request succeeding.
fn full_pass(client: &EmbeddedClient, keys: &[String]) -> Result<(), String> {
    for k in keys {
        match client.call(&[b"SET", k.as_bytes(), b"y"]) {
            Ok(v) if v == ok_value() => {}
            other => return Err(format!("SET {k}: {other:?}")),
        }
        match client.call(&[b"GET", k.as_bytes()]) {
            Ok(v) if v == bulk(b"y") => {}
            other => return Err(format!("GET {k}: {other:?}")),
        }
    }
    Ok(())
}

#[test]
fn primary_killed_under_load_then_manual_failover() {
    let _g = serial();
    let mut cluster = RedisCluster::start();
    support::wait_slots_settled(&cluster);
    let core = EmbeddedCore::start(2).unwrap();
    const TIMEOUT_MS: u32 = 1000;
    // The client's own wait is the timeout plus a transport margin; the core must answer
    // before: a value or a typed error, never silence.
    let bound = Duration::from_millis(u64::from(TIMEOUT_MS) + 1500);
    let cfg = cluster_cfg(&cluster, TIMEOUT_MS);
    let client = Arc::new(core.open(&cfg).unwrap());
    let backend = backend_of(&core, &cfg);
    let keys = Arc::new(keys_on_all_primaries(&cluster, "fo:", 90));
    full_pass(&client, &keys).unwrap();

    // SIGKILL a primary under load, with a fan-out running throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let load = run_load(&client, &keys, 3, &stop);
    let fan_outs = watch_dbsize(&client, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let victim = cluster.primaries()[0].addr();
    let idx = cluster
        .nodes
        .iter()
        .position(|n| n.addr() == victim)
        .unwrap();
    let killed_at = Instant::now();
    cluster.nodes[idx].kill();
    cluster.wait_settled(Duration::from_secs(30));
    eprintln!("replica promoted {:?} after the kill", killed_at.elapsed());
    // After the promotion, requests succeed again (redis-rs follows the new owner on the
    // first connection error / MOVED), without restarting anything.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = full_pass(&client, &keys);
    while let Err(e) = &last {
        assert!(
            Instant::now() < deadline,
            "still failing after the promotion: {e}"
        );
        std::thread::sleep(Duration::from_millis(100));
        last = full_pass(&client, &keys);
    }
    let recovered = killed_at.elapsed();
    // Release: pairs with the Acquire load in `run_load`.
    stop.store(true, Ordering::Release);
    let report = collect(load);
    // Every fan-out answered for the whole cluster or failed with a typed error: none
    // summed part of it (the core plans fan-outs from its own topology, `net::fanout`).
    check_dbsize("the outage", &fan_outs.join().unwrap(), keys.len());
    eprintln!(
        "kill: {} ok, {} errors, max latency {:?}, recovered after {recovered:?}",
        report.ok,
        report.errors.len(),
        report.max_latency
    );
    for e in &report.errors {
        assert!(
            matches!(e.kind, ErrorKind::Connection | ErrorKind::Timeout),
            "untyped or unexpected error during the outage: {e}"
        );
    }
    assert!(
        report.max_latency <= bound,
        "a request took {:?} (timeout {TIMEOUT_MS} ms)",
        report.max_latency
    );
    for _ in 0..3 {
        full_pass(&client, &keys).unwrap();
    }
    // The topology was refreshed in place: the dead node is forgotten and fan-out commands
    // reach the new primary.
    let deadline = Instant::now() + Duration::from_secs(15);
    while backend.nodes().contains(&victim) {
        assert!(
            Instant::now() < deadline,
            "{victim} still known: {:?}",
            backend.nodes()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let dbsize = client
        .call_routed(&[b"DBSIZE"], &Route::AllPrimaries, None)
        .unwrap();
    assert_eq!(dbsize, Value::Int(keys.len() as i64));

    // Manual failover (coordinated: no data loss, the old primary answers MOVED after).
    let stop = Arc::new(AtomicBool::new(false));
    let load = run_load(&client, &keys, 3, &stop);
    // While MOVED replies patch the core's map (the old primary still
    // heads the rest of its slots until a refresh), a fan-out must not
    // count that shard twice.
    let fan_outs = watch_dbsize(&client, &stop);
    std::thread::sleep(Duration::from_millis(300));
    let replica = cluster.replicas()[0];
    let promoted = replica.addr();
    assert_eq!(replica.cli(&["CLUSTER", "FAILOVER"]), "OK");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.primaries().iter().any(|p| p.addr() == promoted) {
        assert!(Instant::now() < deadline, "manual failover did not happen");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_settled(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    // Release: pairs with the Acquire load in `run_load`.
    stop.store(true, Ordering::Release);
    let report = collect(load);
    check_dbsize("a manual failover", &fan_outs.join().unwrap(), keys.len());
    eprintln!(
        "manual failover: {} ok, {} errors, max latency {:?}",
        report.ok,
        report.errors.len(),
        report.max_latency
    );
    assert!(
        report.errors.is_empty(),
        "requests failed during a manual failover: {:?}",
        report.errors
    );
    assert!(report.max_latency <= bound, "{:?}", report.max_latency);
    full_pass(&client, &keys).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !backend.nodes().contains(&promoted) {
        assert!(
            Instant::now() < deadline,
            "{promoted} not known as a primary"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop((client, backend));
    core.shutdown(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// 3. standalone reconnect

#[test]
fn standalone_restart_reconnects_with_the_configured_backoff() {
    let _g = serial();
    let mut server = RedisServer::start();
    let core = EmbeddedCore::start(1).unwrap();
    let backoff = Backoff {
        number_of_retries: 3,
        factor_ms: 100,
        exponent_base: 2,
        jitter_percent: 0,
    };
    let cfg = Config {
        addresses: vec![server.addr()],
        mode: Mode::Standalone,
        request_timeout_ms: 300,
        reconnect: backoff,
        ..Config::default()
    };
    let client = core.open(&cfg).unwrap();
    let backend = backend_of(&core, &cfg);
    assert_eq!(client.call(&[b"SET", b"rc", b"1"]).unwrap(), ok_value());
    // The fast path's node connection serves GET/SET/PING: its counters.
    let node_stats = || {
        let (nodes, _) = backend.link_stats();
        assert_eq!(nodes.len(), 1, "{nodes:?}");
        nodes.into_iter().next().unwrap()
    };
    let before = node_stats();

    server.stop();
    let down_at = Instant::now();
    // While the server is down every request fails, with a connection error, in time.
    let mut failed = 0;
    while down_at.elapsed() < Duration::from_secs(4) {
        let t0 = Instant::now();
        let e = client.call(&[b"GET", b"rc"]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connection, "{e}");
        assert!(
            t0.elapsed() < Duration::from_millis(300 + 1000),
            "{:?}",
            t0.elapsed()
        );
        failed += 1;
    }
    assert!(failed > 0);
    server.restart();
    // The same client works again once the node connection is back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.call(&[b"PING"]) {
            Ok(v) => {
                assert_eq!(v, Value::Simple(b"PONG".to_vec()));
                break;
            }
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Connection, "{e}");
                assert!(Instant::now() < deadline, "no reconnect: {e}");
            }
        }
    }
    assert_eq!(client.call(&[b"SET", b"rc", b"2"]).unwrap(), ok_value());
    assert_eq!(client.call(&[b"GET", b"rc"]).unwrap(), bulk(b"2"));

    // The backoff, as observed: one disconnect, a first attempt at once, then attempts spaced
    // 100, 200, 400, then 800 ms forever (number_of_retries = 3, no jitter), the last one
    // succeeding.
    let st = node_stats();
    assert_eq!(st.disconnects, before.disconnects + 1, "{st:?}");
    assert_eq!(st.connects, before.connects + 1, "{st:?}");
    let attempts = (st.connect_attempts - before.connect_attempts) as usize;
    assert!(attempts >= 6, "{attempts} attempts in 4 s: {st:?}");
    let times = &st.recent_attempts[st.recent_attempts.len().saturating_sub(attempts)..];
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!("reconnect attempts spaced {gaps:?}");
    for (i, gap) in gaps.iter().enumerate() {
        let want = backoff.base_delay(i as u32);
        assert!(
            *gap >= want,
            "gap {i} is {gap:?}, less than the backoff {want:?}"
        );
        // Generous: the wait plus one refused connect, on a busy machine.
        assert!(
            *gap < want + Duration::from_millis(700),
            "gap {i} is {gap:?}, backoff {want:?}: the wait is not capped"
        );
    }
    drop((client, backend));
    core.shutdown(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// 4. topology refresh: a node added

#[test]
fn added_node_is_found_by_the_periodic_refresh_and_serves_its_slot() {
    let _g = serial();
    let mut cluster = RedisCluster::start();
    support::wait_slots_settled(&cluster);
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = cluster_cfg(&cluster, 2000);
    let client = core.open(&cfg).unwrap();
    let backend = backend_of(&core, &cfg);

    const KEYS: usize = 100;
    let key = |i: usize| format!("{{new}}:k{i}");
    let slot = key_slot(b"{new}");
    for i in 0..KEYS {
        client
            .call(&[b"SET", key(i).as_bytes(), format!("v{i}").as_bytes()])
            .unwrap();
    }

    // A seventh node joins (as an empty primary) and gets the slot with its keys.
    let node = RedisServer::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
        "--cluster-replica-validity-factor",
        "0",
    ]);
    let port = node.port().to_string();
    assert_eq!(
        cluster.nodes[0].cli(&["CLUSTER", "MEET", "127.0.0.1", &port]),
        "OK"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let joined = cluster.nodes.iter().chain([&node]).all(|n| {
            let text = n.cli(&["CLUSTER", "NODES"]);
            text.lines().count() == 7
                && !text.contains("handshake")
                && !text.contains("noaddr")
                && text.contains(&format!("127.0.0.1:{port}@"))
                && n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
        });
        if joined {
            break;
        }
        assert!(Instant::now() < deadline, "the new node did not join");
        std::thread::sleep(Duration::from_millis(50));
    }
    let new_addr = node.addr();
    assert!(!backend.nodes().contains(&new_addr));
    let primaries = cluster.primaries();
    let from = cluster.node_for_slot(slot);
    let others: Vec<&RedisServer> = primaries
        .iter()
        .copied()
        .filter(|p| p.port() != from.port())
        .collect();
    let moved = support::migrate_slot(slot, from, &node, &others, || {});
    assert_eq!(moved, KEYS);
    cluster.nodes.push(node);
    let node = cluster.nodes.last().unwrap();
    support::wait_slot_owner(&cluster, slot, node);

    // No request touches the slot (which would produce a MOVED): only the periodic
    // refresh (1 s here) can tell the engine about the new node.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !backend.nodes().contains(&new_addr) {
        assert!(
            Instant::now() < deadline,
            "the refresh did not find {new_addr}: {:?}",
            backend.nodes()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Fan-out commands include it: all keys are on the new node now.
    assert_eq!(
        client
            .call_routed(&[b"DBSIZE"], &Route::AllPrimaries, None)
            .unwrap(),
        Value::Int(KEYS as i64)
    );
    // And it serves its slot.
    let gets_before = calls(node, "get");
    for i in 0..KEYS {
        assert_eq!(
            client.call(&[b"GET", key(i).as_bytes()]).unwrap(),
            bulk(format!("v{i}").as_bytes())
        );
    }
    assert!(calls(node, "get") >= gets_before + KEYS as u64);
    assert!(
        node.cli(&["INFO", "keyspace"])
            .contains(&format!("db0:keys={KEYS},")),
        "{}",
        node.cli(&["INFO", "keyspace"])
    );
    drop((client, backend));
    core.shutdown(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------------------------
// 5. read from replicas

#[test]
fn prefer_replica_reads_on_replicas_writes_on_primaries() {
    let _g = serial();
    let cluster = RedisCluster::start();
    support::wait_slots_settled(&cluster);
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = Config {
        read_from: ReadFrom::PreferReplica,
        ..cluster_cfg(&cluster, 2000)
    };
    let client = core.open(&cfg).unwrap();
    for n in &cluster.nodes {
        assert_eq!(n.cli(&["CONFIG", "RESETSTAT"]), "OK");
    }
    let keys = keys_on_all_primaries(&cluster, "rr:", 60);
    for k in &keys {
        assert_eq!(
            client.call(&[b"SET", k.as_bytes(), b"v"]).unwrap(),
            ok_value()
        );
    }
    // A replica may lag behind a write for a moment: read each key until it shows.
    let mut gets = 0u64;
    for k in &keys {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            gets += 1;
            match client.call(&[b"GET", k.as_bytes()]).unwrap() {
                Value::Bulk(v) if v == b"v" => break,
                Value::Nil => assert!(Instant::now() < deadline, "{k} never replicated"),
                other => panic!("{other:?}"),
            }
        }
    }
    let replica_gets: u64 = cluster.replicas().iter().map(|n| calls(n, "get")).sum();
    let primary_gets: u64 = cluster.primaries().iter().map(|n| calls(n, "get")).sum();
    let primary_sets: u64 = cluster.primaries().iter().map(|n| calls(n, "set")).sum();
    eprintln!("{gets} GETs: {replica_gets} on replicas, {primary_gets} on primaries");
    assert_eq!(replica_gets, gets, "every read was served by a replica");
    assert_eq!(primary_gets, 0);
    assert_eq!(
        primary_sets,
        keys.len() as u64,
        "every write went to a primary"
    );
    for r in cluster.replicas() {
        assert!(calls(r, "get") > 0, "{} served no read", r.addr());
    }
    drop(client);
    core.shutdown(Duration::from_secs(1));
}
