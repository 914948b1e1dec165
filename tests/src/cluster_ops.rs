//! Cluster operations shared by the integration tests (`pubsub.rs`, `resilience.rs`, through
//! `tests/tests/support`) and the soak driver (`vshm-soak`): waiting for `CLUSTER SLOTS` to
//! settle, node ids, and moving a slot (with its keys) from one primary to another the way
//! `redis-cli --cluster reshard` does. Every wait is bounded (30 s) and panics past its bound.

use std::time::{Duration, Instant};

use crate::{RedisCluster, RedisServer};

/// Waits until every running node's `CLUSTER SLOTS` lists every running node: right after a
/// cluster is created or changed, replicas show up there a little later than in
/// `CLUSTER NODES`, and the engine (like redis-rs) learns the topology from `CLUSTER SLOTS`.
pub fn wait_slots_settled(cluster: &RedisCluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running: Vec<&RedisServer> = cluster.nodes.iter().filter(|n| n.is_running()).collect();
        let settled = running.iter().all(|n| {
            let slots = n.cli(&["CLUSTER", "SLOTS"]);
            running
                .iter()
                .all(|m| slots.lines().any(|l| l.trim() == m.port().to_string()))
        });
        if settled {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "CLUSTER SLOTS does not list every node"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The node's cluster id.
pub fn node_id(node: &RedisServer) -> String {
    let id = node.cli(&["CLUSTER", "MYID"]);
    assert_eq!(id.len(), 40, "CLUSTER MYID on {}: {id}", node.addr());
    id
}

fn ok(node: &RedisServer, args: &[&str]) {
    let out = node.cli(args);
    assert_eq!(out, "OK", "{args:?} on {}", node.addr());
}

/// Moves `slot` from `from` to `to` with its keys: `SETSLOT IMPORTING` on the target,
/// `SETSLOT MIGRATING` on the source, `MIGRATE` the keys in batches (calling `between` after
/// each batch), then `SETSLOT NODE` on the target, the source and every other primary in
/// `others`. Returns how many keys moved.
pub fn migrate_slot(
    slot: u16,
    from: &RedisServer,
    to: &RedisServer,
    others: &[&RedisServer],
    mut between: impl FnMut(),
) -> usize {
    let (from_id, to_id) = (node_id(from), node_id(to));
    let s = slot.to_string();
    ok(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]);
    ok(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]);
    let port = to.port().to_string();
    let mut moved = 0;
    loop {
        let keys = from.cli(&["CLUSTER", "GETKEYSINSLOT", &s, "20"]);
        let keys: Vec<&str> = keys
            .lines()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            break;
        }
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys.iter().copied());
        ok(from, &args);
        moved += keys.len();
        between();
    }
    ok(to, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
    ok(from, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
    for o in others {
        ok(o, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
    }
    moved
}

/// Waits until every running node agrees that `slot` is served by `owner`.
pub fn wait_slot_owner(cluster: &RedisCluster, slot: u16, owner: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = format!("127.0.0.1:{}", owner.port());
    loop {
        let agreed = cluster.nodes.iter().filter(|n| n.is_running()).all(|n| {
            n.cli(&["CLUSTER", "NODES"]).lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 8
                    && f[1].starts_with(&want)
                    && f[8..].iter().any(|r| match r.split_once('-') {
                        Some((a, b)) => {
                            a.parse::<u16>().is_ok_and(|a| a <= slot)
                                && b.parse::<u16>().is_ok_and(|b| slot <= b)
                        }
                        None => r.parse::<u16>() == Ok(slot),
                    })
            })
        });
        if agreed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes do not agree that {want} serves slot {slot}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
