//! The faults the soak driver injects into the cluster, one at a time, each followed by the
//! wait for the cluster to recover (so that every shard always has a replica to fail over to
//! before the next fault).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

use crate::cluster_ops::{migrate_slot, wait_slot_owner, wait_slots_settled};
use crate::{key_slot, RedisCluster};

/// Bound for the cluster to settle after a fault (failover included).
pub const SETTLE: Duration = Duration::from_secs(60);

/// The kinds of fault, in the order of the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL a worker, start a replacement.
    KillWorker,
    /// SIGSTOP a worker for 1-3 s, then SIGCONT.
    StopWorker,
    /// SIGKILL a primary; its replica takes over; restart it (it rejoins as a replica).
    KillPrimary,
    /// `CLIENT KILL TYPE normal` on a primary, or `CLIENT KILL ADDR` of one connection.
    ClientKill,
    /// `CLIENT PAUSE 500-1500 ALL` on a primary.
    ClientPause,
    /// Move 1-3 slots holding workers' keys to another primary.
    Migrate,
}

pub const ALL: [Fault; 6] = [
    Fault::KillWorker,
    Fault::StopWorker,
    Fault::KillPrimary,
    Fault::ClientKill,
    Fault::ClientPause,
    Fault::Migrate,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillWorker => "kill_worker",
            Fault::StopWorker => "stop_worker",
            Fault::KillPrimary => "kill_primary",
            Fault::ClientKill => "client_kill",
            Fault::ClientPause => "client_pause",
            Fault::Migrate => "migrate_slots",
        }
    }
}

/// SIGKILL a random primary, wait for its replica to be promoted (the cluster settles without
/// it), keep it down a little, restart it and wait until it is a linked replica. Returns a
/// description.
pub fn kill_primary(cluster: &mut RedisCluster, rng: &mut StdRng) -> String {
    let primaries: Vec<String> = cluster.primaries().iter().map(|n| n.addr()).collect();
    let victim = primaries[rng.random_range(0..primaries.len())].clone();
    let idx = cluster
        .nodes
        .iter()
        .position(|n| n.addr() == victim)
        .expect("victim is a node");
    let t0 = Instant::now();
    cluster.nodes[idx].kill();
    cluster.wait_settled(SETTLE);
    let failover = t0.elapsed();
    std::thread::sleep(Duration::from_millis(rng.random_range(0..2000)));
    cluster.nodes[idx].restart();
    cluster.wait_settled(SETTLE);
    wait_slots_settled(cluster);
    format!(
        "killed primary {victim}; replica promoted after {:.1} s; back as replica after {:.1} s",
        failover.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    )
}

/// `CLIENT KILL` on a random primary: every normal connection, or one connection by address.
pub fn client_kill(cluster: &RedisCluster, rng: &mut StdRng) -> String {
    let primaries = cluster.primaries();
    let node = primaries[rng.random_range(0..primaries.len())];
    if rng.random_bool(0.5) {
        let n = node.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        format!("CLIENT KILL TYPE normal on {}: {n} killed", node.addr())
    } else {
        let list = node.cli(&["CLIENT", "LIST", "TYPE", "normal"]);
        let addrs: Vec<String> = list
            .lines()
            .filter(|l| !l.contains("cmd=client"))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix("addr="))
                    .map(str::to_string)
            })
            .collect();
        if addrs.is_empty() {
            return format!("CLIENT KILL ADDR on {}: no connection", node.addr());
        }
        let a = &addrs[rng.random_range(0..addrs.len())];
        let r = node.cli(&["CLIENT", "KILL", "ADDR", a]);
        format!("CLIENT KILL ADDR {a} on {}: {r}", node.addr())
    }
}

/// `CLIENT PAUSE <500..1500 ms> ALL` on a random primary; returns after the pause has ended.
pub fn client_pause(cluster: &RedisCluster, rng: &mut StdRng) -> String {
    let primaries = cluster.primaries();
    let node = primaries[rng.random_range(0..primaries.len())];
    let ms = rng.random_range(500..=1500u64);
    let r = node.cli(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"]);
    std::thread::sleep(Duration::from_millis(ms + 200));
    format!("CLIENT PAUSE {ms} ALL on {}: {r}", node.addr())
}

/// Moves the slots of 1-3 of `tags` (hash tags of live workers' keys) to another primary,
/// with their keys, while the workers keep using them.
pub fn migrate(cluster: &RedisCluster, rng: &mut StdRng, tags: &[String]) -> String {
    let n = rng.random_range(1..=3usize).min(tags.len());
    let mut slots = BTreeSet::new();
    while slots.len() < n {
        let tag = &tags[rng.random_range(0..tags.len())];
        slots.insert(key_slot(format!("{{{tag}}}").as_bytes()));
    }
    let mut out = Vec::new();
    for slot in slots {
        let from = cluster.node_for_slot(slot);
        let primaries = cluster.primaries();
        let targets: Vec<_> = primaries
            .iter()
            .filter(|p| p.addr() != from.addr())
            .collect();
        let to = *targets[rng.random_range(0..targets.len())];
        let others: Vec<_> = primaries
            .iter()
            .copied()
            .filter(|p| p.addr() != from.addr() && p.addr() != to.addr())
            .collect();
        let moved = migrate_slot(slot, from, to, &others, || {});
        wait_slot_owner(cluster, slot, to);
        out.push(format!(
            "slot {slot} {} -> {} ({moved} keys)",
            from.port(),
            to.port()
        ));
    }
    cluster.wait_settled(SETTLE);
    format!("migrated {}", out.join(", "))
}
