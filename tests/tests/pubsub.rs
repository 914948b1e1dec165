//! Pub/sub through the rings (in-process core) against real servers: exact, pattern and
//! sharded subscriptions, delivery as push records, isolation between clients,
//! unsubscribe, cleanup on detach, and subscriptions surviving reconnects, a failover and
//! a slot migration.
//!
//! Destructive tests (own server or cluster) hold [`SERIAL`]: a failover test next to
//! another cluster on a two-core machine could starve nodes past their node timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use vshm_client::client::into_result;
use vshm_client::embedded::{EmbeddedClient, EmbeddedCore, EmbeddedOpen};
use vshm_core::config::{Mode, Protocol};
use vshm_core::Config;
use vshm_protocol::msg::{ArgsRef, ClientError, ErrorKind, Op, Route, SubKind, Value};
use vshm_tests::{key_slot, shared_cluster, shared_standalone, RedisCluster, RedisServer};

mod support;

static SERIAL: Mutex<()> = Mutex::new(());

const T: Duration = Duration::from_secs(5);

fn standalone_cfg(addr: String) -> Config {
    Config {
        addresses: vec![addr],
        mode: Mode::Standalone,
        request_timeout_ms: 5000,
        ..Config::default()
    }
}

fn cluster_cfg(addrs: Vec<String>) -> Config {
    Config {
        addresses: addrs,
        mode: Mode::Cluster,
        request_timeout_ms: 5000,
        topology_refresh_interval_ms: 1000,
        ..Config::default()
    }
}

fn bulk(v: &[u8]) -> Value {
    Value::Bulk(v.to_vec())
}

fn pubsub_op(c: &EmbeddedClient, op: &Op<ArgsRef<'_>>) -> Result<Value, ClientError> {
    let id = c.submit_op(op, &Route::Auto, Some(T), 0)?;
    into_result(c.wait(id, Some(T))?)
}

fn subscribe(c: &EmbeddedClient, kind: SubKind, channels: &[&[u8]]) -> Result<Value, ClientError> {
    pubsub_op(
        c,
        &Op::Subscribe {
            kind,
            channels: channels.iter().map(|c| c.to_vec()).collect(),
        },
    )
}

fn unsubscribe(
    c: &EmbeddedClient,
    kind: SubKind,
    channels: &[&[u8]],
) -> Result<Value, ClientError> {
    pubsub_op(
        c,
        &Op::Unsubscribe {
            kind,
            channels: channels.iter().map(|c| c.to_vec()).collect(),
        },
    )
}

fn push(kind: &str, data: &[&[u8]]) -> Value {
    Value::Push {
        kind: kind.as_bytes().to_vec(),
        data: data.iter().map(|d| bulk(d)).collect(),
    }
}

fn expect_push(c: &EmbeddedClient, want: Value) {
    match c.wait_push(T).unwrap() {
        Some(v) => assert_eq!(v, want),
        None => panic!("no push within {T:?}; wanted {want:?}"),
    }
}

fn expect_no_push(c: &EmbeddedClient) {
    if let Some(v) = c.wait_push(Duration::from_millis(300)).unwrap() {
        panic!("unexpected push {v:?}");
    }
}

/// Takes every push that arrives within a short while (stale messages of a previous step).
fn drain(c: &EmbeddedClient) {
    while c.wait_push(Duration::from_millis(200)).unwrap().is_some() {}
}

fn int(v: Value) -> i64 {
    match v {
        Value::Int(n) => n,
        other => panic!("not an integer: {other:?}"),
    }
}

/// The `numsub` count of `channel` on a server (`PUBSUB NUMSUB` or `SHARDNUMSUB`).
fn numsub(node: &RedisServer, sub: &str, channel: &str) -> i64 {
    let out = node.cli(&["PUBSUB", sub, channel]);
    out.lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("PUBSUB {sub} {channel}: {out}"))
}

fn wait_numsub(node: &RedisServer, sub: &str, channel: &str, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = numsub(node, sub, channel);
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "PUBSUB {sub} {channel} on {} is {n}, not {want}",
            node.addr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Publishes `publish channel mN` (N = 1, 2, ...) through `publisher` until `subscriber`
/// receives one of those messages (publish errors are expected while the servers are
/// failing over). Returns the message received; later stale copies are drained.
fn publish_until_received(
    publisher: &EmbeddedClient,
    subscriber: &EmbeddedClient,
    publish: &str,
    channel: &[u8],
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    let mut n = 0;
    let mut last_error = None;
    loop {
        n += 1;
        let msg = format!("m{n}");
        if let Err(e) = publisher.call_routed(
            &[publish.as_bytes(), channel, msg.as_bytes()],
            &Route::Auto,
            Some(Duration::from_secs(1)),
        ) {
            last_error = Some(e);
        }
        if let Some(v) = subscriber.wait_push(Duration::from_millis(250)).unwrap() {
            let Value::Push { data, .. } = &v else {
                panic!("{v:?}")
            };
            assert_eq!(data.first(), Some(&bulk(channel)), "{v:?}");
            drain(subscriber);
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{} never reached the subscriber within {within:?} ({n} publishes; last publish error: {last_error:?})",
            String::from_utf8_lossy(channel)
        );
    }
}

#[test]
fn exact_pattern_and_sharded_delivery_standalone() {
    let server = shared_standalone();
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = standalone_cfg(server.addr());
    let a = core.open(&cfg).unwrap();
    let b = core.open(&cfg).unwrap();
    let publisher = core.open(&cfg).unwrap();

    // Counts are the client's own subscriptions, all kinds.
    assert_eq!(int(subscribe(&a, SubKind::Exact, &[b"ps1:a"]).unwrap()), 1);
    assert_eq!(int(subscribe(&b, SubKind::Exact, &[b"ps1:b"]).unwrap()), 1);
    assert_eq!(
        int(subscribe(&a, SubKind::Pattern, &[b"ps1:p:*"]).unwrap()),
        2
    );
    assert_eq!(
        int(subscribe(&a, SubKind::Sharded, &[b"ps1:s"]).unwrap()),
        3
    );
    // Subscribing again changes nothing.
    assert_eq!(int(subscribe(&a, SubKind::Exact, &[b"ps1:a"]).unwrap()), 3);

    // Two clients on different channels each get only their own messages.
    assert_eq!(
        publisher.call(&[b"PUBLISH", b"ps1:a", b"m1"]).unwrap(),
        Value::Int(1)
    );
    expect_push(&a, push("message", &[b"ps1:a", b"m1"]));
    publisher.call(&[b"PUBLISH", b"ps1:b", b"m2"]).unwrap();
    expect_push(&b, push("message", &[b"ps1:b", b"m2"]));
    expect_no_push(&a);
    expect_no_push(&b);

    // Pattern: [channel, pattern, payload].
    publisher.call(&[b"PUBLISH", b"ps1:p:x", b"m3"]).unwrap();
    expect_push(&a, push("pmessage", &[b"ps1:p:x", b"ps1:p:*", b"m3"]));
    // Sharded (standalone servers have shard channels too).
    publisher.call(&[b"SPUBLISH", b"ps1:s", b"m4"]).unwrap();
    expect_push(&a, push("smessage", &[b"ps1:s", b"m4"]));
    expect_no_push(&b);

    // Binary-safe payloads, in order.
    for i in 0..50u8 {
        publisher
            .call(&[b"PUBLISH", b"ps1:a", &[0, i, 255]])
            .unwrap();
    }
    for i in 0..50u8 {
        expect_push(&a, push("message", &[b"ps1:a", &[0, i, 255]]));
    }
    // A payload larger than one ring record arrives fragmented and reassembled.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    publisher.call(&[b"PUBLISH", b"ps1:a", &big]).unwrap();
    expect_push(&a, push("message", &[b"ps1:a", &big]));

    // Several clients on one channel share one server-side subscription.
    assert_eq!(int(subscribe(&b, SubKind::Exact, &[b"ps1:a"]).unwrap()), 2);
    assert_eq!(numsub(server, "NUMSUB", "ps1:a"), 1);
    publisher.call(&[b"PUBLISH", b"ps1:a", b"both"]).unwrap();
    expect_push(&a, push("message", &[b"ps1:a", b"both"]));
    expect_push(&b, push("message", &[b"ps1:a", b"both"]));

    // Unsubscribe stops delivery to that client at once; the other keeps getting it.
    assert_eq!(
        int(unsubscribe(&a, SubKind::Exact, &[b"ps1:a"]).unwrap()),
        2
    );
    publisher.call(&[b"PUBLISH", b"ps1:a", b"only-b"]).unwrap();
    expect_push(&b, push("message", &[b"ps1:a", b"only-b"]));
    expect_no_push(&a);
    // When nobody holds it any more, the server-side subscription ends.
    assert_eq!(int(unsubscribe(&b, SubKind::Exact, &[]).unwrap()), 0);
    wait_numsub(server, "NUMSUB", "ps1:a", 0);
    wait_numsub(server, "NUMSUB", "ps1:b", 0);
    publisher.call(&[b"PUBLISH", b"ps1:a", b"nobody"]).unwrap();
    expect_no_push(&a);
    expect_no_push(&b);

    // Unsubscribing from every pattern / shard channel.
    assert_eq!(int(unsubscribe(&a, SubKind::Pattern, &[]).unwrap()), 1);
    assert_eq!(
        int(unsubscribe(&a, SubKind::Sharded, &[b"ps1:s"]).unwrap()),
        0
    );
    publisher.call(&[b"PUBLISH", b"ps1:p:x", b"gone"]).unwrap();
    publisher.call(&[b"SPUBLISH", b"ps1:s", b"gone"]).unwrap();
    expect_no_push(&a);
    wait_numsub(server, "SHARDNUMSUB", "ps1:s", 0);
    assert_eq!(int(publisher.call(&[b"PUBSUB", b"NUMPAT"]).unwrap()), 0);

    drop((a, b, publisher));
    core.shutdown(Duration::from_secs(1));
}

#[test]
fn bad_requests_and_detach() {
    let server = shared_standalone();
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = standalone_cfg(server.addr());
    let a = core.open(&cfg).unwrap();
    let publisher = core.open(&cfg).unwrap();

    let e = subscribe(&a, SubKind::Exact, &[]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");
    // Unsubscribing from something never subscribed is fine.
    assert_eq!(
        int(unsubscribe(&a, SubKind::Exact, &[b"ps2:never"]).unwrap()),
        0
    );
    // The raw commands stay refused.
    let e = a.call(&[b"SUBSCRIBE", b"ps2:x"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest, "{e}");

    // A client that goes away leaves no subscription behind.
    subscribe(&a, SubKind::Exact, &[b"ps2:det"]).unwrap();
    subscribe(&a, SubKind::Sharded, &[b"ps2:sdet"]).unwrap();
    assert_eq!(numsub(server, "NUMSUB", "ps2:det"), 1);
    assert_eq!(numsub(server, "SHARDNUMSUB", "ps2:sdet"), 1);
    drop(a);
    wait_numsub(server, "NUMSUB", "ps2:det", 0);
    wait_numsub(server, "SHARDNUMSUB", "ps2:sdet", 0);
    assert_eq!(
        publisher.call(&[b"PUBLISH", b"ps2:det", b"x"]).unwrap(),
        Value::Int(0)
    );

    // A RESP2 backend still gets pushes (subscription links always speak RESP3).
    let resp2 = core
        .open(&Config {
            protocol: Protocol::Resp2,
            ..cfg.clone()
        })
        .unwrap();
    subscribe(&resp2, SubKind::Exact, &[b"ps2:r2"]).unwrap();
    publisher.call(&[b"PUBLISH", b"ps2:r2", b"x"]).unwrap();
    expect_push(&resp2, push("message", &[b"ps2:r2", b"x"]));

    drop((resp2, publisher));
    core.shutdown(Duration::from_secs(1));
}

#[test]
fn a_client_that_does_not_read_costs_bounded_memory() {
    let server = shared_standalone();
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = standalone_cfg(server.addr());
    let a = core.open(&cfg).unwrap();
    let publisher = core.open(&cfg).unwrap();
    subscribe(&a, SubKind::Exact, &[b"ps6:flood"]).unwrap();
    // 15 000 messages of 1 KiB while `a` reads nothing: its 1 MiB ring fills, then up to
    // MAX_PENDING_PUSHES wait in the core, the rest is dropped and counted.
    const N: u64 = 15_000;
    let payload = vec![b'x'; 1024];
    publisher
        .call(&[
            b"EVAL",
            b"for i = 1, tonumber(ARGV[2]) do redis.call('PUBLISH', KEYS[1], ARGV[1]) end return 1",
            b"1",
            b"ps6:flood",
            &payload,
            N.to_string().as_bytes(),
        ])
        .unwrap();
    let stats = &a.attachment().stats;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.pushes.load(vshm_protocol::sync::Ordering::Relaxed)
        + stats
            .pushes_dropped
            .load(vshm_protocol::sync::Ordering::Relaxed)
        < N
    {
        assert!(
            Instant::now() < deadline,
            "messages did not arrive: {} pushed, {} dropped; server: {}",
            stats.pushes.load(vshm_protocol::sync::Ordering::Relaxed),
            stats
                .pushes_dropped
                .load(vshm_protocol::sync::Ordering::Relaxed),
            server.cli(&["INFO", "stats"])
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let dropped = stats
        .pushes_dropped
        .load(vshm_protocol::sync::Ordering::Relaxed);
    assert!(dropped > 0, "nothing dropped");
    let mut got = 0u64;
    while let Some(v) = a.wait_push(Duration::from_millis(500)).unwrap() {
        assert_eq!(v, push("message", &[b"ps6:flood", &payload]));
        got += 1;
    }
    assert_eq!(got + dropped, N);
    assert!(
        got >= vshm_core::dispatch::MAX_PENDING_PUSHES as u64,
        "{got}"
    );
    // Still subscribed and delivering once the client reads again.
    publisher
        .call(&[b"PUBLISH", b"ps6:flood", b"after"])
        .unwrap();
    expect_push(&a, push("message", &[b"ps6:flood", b"after"]));
    drop((a, publisher));
    core.shutdown(Duration::from_secs(1));
}

/// Channel names whose slots are served by `n` different primaries.
fn channels_on_primaries(cluster: &RedisCluster, prefix: &str, n: usize) -> Vec<Vec<u8>> {
    let mut by_port = std::collections::BTreeMap::new();
    for i in 0.. {
        let ch = format!("{prefix}{i}").into_bytes();
        let port = cluster.node_for_slot(key_slot(&ch)).port();
        by_port.entry(port).or_insert(ch);
        if by_port.len() == n {
            break;
        }
    }
    by_port.into_values().collect()
}

#[test]
fn cluster_delivery_and_isolation() {
    let cluster = shared_cluster();
    support::wait_slots_settled(cluster);
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = cluster_cfg(cluster.addrs());
    let a = core.open(&cfg).unwrap();
    let b = core.open(&cfg).unwrap();
    let publisher = core.open(&cfg).unwrap();

    let shard_channels = channels_on_primaries(cluster, "ps3:s", 3);
    let refs: Vec<&[u8]> = shard_channels.iter().map(|c| c.as_slice()).collect();
    assert_eq!(int(subscribe(&a, SubKind::Sharded, &refs).unwrap()), 3);
    assert_eq!(int(subscribe(&a, SubKind::Exact, &[b"ps3:a"]).unwrap()), 4);
    assert_eq!(
        int(subscribe(&a, SubKind::Pattern, &[b"ps3:p:*"]).unwrap()),
        5
    );
    assert_eq!(int(subscribe(&b, SubKind::Exact, &[b"ps3:b"]).unwrap()), 1);

    for ch in &shard_channels {
        publisher.call(&[b"SPUBLISH", ch, b"hello"]).unwrap();
        expect_push(&a, push("smessage", &[ch, b"hello"]));
        // The server side: one subscription, on the slot's primary.
        let owner = cluster.node_for_slot(key_slot(ch));
        assert_eq!(
            numsub(owner, "SHARDNUMSUB", std::str::from_utf8(ch).unwrap()),
            1
        );
    }
    // Exact channels reach the subscriber whatever node the publish goes to.
    for node in cluster.primaries() {
        publisher
            .call_routed(
                &[b"PUBLISH", b"ps3:a", b"via"],
                &Route::Address {
                    host: "127.0.0.1".into(),
                    port: node.port(),
                },
                None,
            )
            .unwrap();
        expect_push(&a, push("message", &[b"ps3:a", b"via"]));
    }
    publisher.call(&[b"PUBLISH", b"ps3:p:1", b"pat"]).unwrap();
    expect_push(&a, push("pmessage", &[b"ps3:p:1", b"ps3:p:*", b"pat"]));
    publisher.call(&[b"PUBLISH", b"ps3:b", b"for-b"]).unwrap();
    expect_push(&b, push("message", &[b"ps3:b", b"for-b"]));
    expect_no_push(&a);
    expect_no_push(&b);

    // Unsubscribe stops delivery.
    assert_eq!(int(unsubscribe(&a, SubKind::Sharded, &[]).unwrap()), 2);
    for ch in &shard_channels {
        publisher.call(&[b"SPUBLISH", ch, b"late"]).unwrap();
    }
    expect_no_push(&a);
    for ch in &shard_channels {
        let owner = cluster.node_for_slot(key_slot(ch));
        wait_numsub(owner, "SHARDNUMSUB", std::str::from_utf8(ch).unwrap(), 0);
    }
    drop((a, b, publisher));
    core.shutdown(Duration::from_secs(1));
}

#[test]
fn standalone_subscriptions_survive_client_kill_and_restart() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = RedisServer::start();
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = Config {
        request_timeout_ms: 1000,
        ..standalone_cfg(server.addr())
    };
    let a = core.open(&cfg).unwrap();
    let publisher = core.open(&cfg).unwrap();
    subscribe(&a, SubKind::Exact, &[b"ps4:e"]).unwrap();
    subscribe(&a, SubKind::Pattern, &[b"ps4:p*"]).unwrap();
    subscribe(&a, SubKind::Sharded, &[b"ps4:s"]).unwrap();

    let check_all = |what: &str| {
        eprintln!("checking after {what}");
        let within = Duration::from_secs(20);
        let v = publish_until_received(&publisher, &a, "PUBLISH", b"ps4:e", within);
        assert!(
            matches!(&v, Value::Push { kind, .. } if kind == b"message"),
            "{v:?}"
        );
        let v = publish_until_received(&publisher, &a, "PUBLISH", b"ps4:px", within);
        assert!(
            matches!(&v, Value::Push { kind, .. } if kind == b"pmessage"),
            "{v:?}"
        );
        let v = publish_until_received(&publisher, &a, "SPUBLISH", b"ps4:s", within);
        assert!(
            matches!(&v, Value::Push { kind, .. } if kind == b"smessage"),
            "{v:?}"
        );
    };
    check_all("subscribing");

    // The server drops the subscription connection.
    let killed = server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert_eq!(killed, "1", "one subscription connection");
    check_all("CLIENT KILL");

    // The server goes away and comes back (empty: no persistence).
    server.restart();
    check_all("a restart");
    assert_eq!(numsub(&server, "NUMSUB", "ps4:e"), 1);

    drop((a, publisher));
    core.shutdown(Duration::from_secs(1));
}

#[test]
fn cluster_subscriptions_survive_failover_and_slot_migration() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut cluster = RedisCluster::start();
    support::wait_slots_settled(&cluster);
    let core = EmbeddedCore::start(2).unwrap();
    let cfg = Config {
        request_timeout_ms: 1000,
        ..cluster_cfg(cluster.addrs())
    };
    let a = core.open(&cfg).unwrap();
    let publisher = core.open(&cfg).unwrap();
    let shard_channels = channels_on_primaries(&cluster, "ps5:s", 3);
    let refs: Vec<&[u8]> = shard_channels.iter().map(|c| c.as_slice()).collect();
    subscribe(&a, SubKind::Sharded, &refs).unwrap();
    subscribe(&a, SubKind::Exact, &[b"ps5:e"]).unwrap();
    subscribe(&a, SubKind::Pattern, &[b"ps5:p*"]).unwrap();
    let within = Duration::from_secs(25);
    let check_all = |what: &str| {
        eprintln!("checking after {what} ({:?} in)", started.elapsed());
        for ch in &shard_channels {
            publish_until_received(&publisher, &a, "SPUBLISH", ch, within);
        }
        publish_until_received(&publisher, &a, "PUBLISH", b"ps5:e", within);
        publish_until_received(&publisher, &a, "PUBLISH", b"ps5:px", within);
    };
    check_all("subscribing");

    // Failover: SIGKILL the primary of the first shard channel (and, with it, possibly the
    // node carrying the exact and pattern subscriptions); its replica takes over.
    let victim = cluster.node_for_slot(key_slot(&shard_channels[0])).port();
    let idx = cluster
        .nodes
        .iter()
        .position(|n| n.port() == victim)
        .unwrap();
    cluster.nodes[idx].kill();
    cluster.wait_settled(Duration::from_secs(30));
    check_all("a failover");
    let promoted = cluster.node_for_slot(key_slot(&shard_channels[0]));
    assert_ne!(promoted.port(), victim);
    wait_numsub(
        promoted,
        "SHARDNUMSUB",
        std::str::from_utf8(&shard_channels[0]).unwrap(),
        1,
    );

    // Slot migration: move the second channel's slot to another primary. The old owner
    // ends the subscription itself (sunsubscribe); the engine follows the slot.
    let slot = key_slot(&shard_channels[1]);
    let from = cluster.node_for_slot(slot);
    let primaries = cluster.primaries();
    let to = *primaries.iter().find(|p| p.port() != from.port()).unwrap();
    let others: Vec<&RedisServer> = primaries
        .iter()
        .copied()
        .filter(|p| p.port() != from.port() && p.port() != to.port())
        .collect();
    support::migrate_slot(slot, from, to, &others, || {});
    support::wait_slot_owner(&cluster, slot, to);
    check_all("a slot migration");
    let ch1 = std::str::from_utf8(&shard_channels[1]).unwrap();
    wait_numsub(to, "SHARDNUMSUB", ch1, 1);
    assert_eq!(numsub(from, "SHARDNUMSUB", ch1), 0);

    // Manual failover of the third channel's shard.
    let slot = key_slot(&shard_channels[2]);
    let old = cluster.node_for_slot(slot).port();
    let replica = cluster
        .replicas()
        .into_iter()
        .find(|r| {
            r.cli(&["INFO", "replication"])
                .contains(&format!("master_port:{old}"))
        })
        .expect("a replica of the shard");
    assert_eq!(replica.cli(&["CLUSTER", "FAILOVER"]), "OK");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.node_for_slot(slot).port() == old {
        assert!(Instant::now() < deadline, "manual failover did not happen");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_settled(Duration::from_secs(30));
    check_all("a manual failover");

    drop((a, publisher));
    core.shutdown(Duration::from_secs(1));
    eprintln!("done in {:?}", started.elapsed());
}
