//! The faults the soak driver injects into the cluster, one at a time, each followed by the
//! wait for the cluster to recover (so that every shard always has a replica to fail over to
//! before the next fault).
//!
//! Each injection reports when it started and its *reference* time: the moment from which the
//! fault kind's availability allowance runs (the replica's promotion, the end of a migration or
//! a pause, the daemon back up; see [`Fault::allowance`]).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

use crate::cluster_ops::{migrate_slot, wait_slot_owner, wait_slots_settled};
use crate::{key_slot, RedisCluster};

/// Bound for the cluster to settle after a fault (failover included).
pub const SETTLE: Duration = Duration::from_secs(60);

/// What an injection did and when.
pub struct Injected {
    pub what: String,
    /// When the fault started (the kill, the first `SETSLOT`, the `SIGSTOP`).
    pub at: Instant,
    /// From when the allowance of [`Fault::allowance`] runs.
    pub reference: Instant,
}

impl Injected {
    /// A fault whose reference time is its start (`t`).
    pub fn at(t: Instant, what: String) -> Injected {
        Injected {
            what,
            at: t,
            reference: t,
        }
    }
}

/// The kinds of fault, in the order of the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL a worker, start a replacement.
    KillWorker,
    /// SIGSTOP a worker for 1-3 s, then SIGCONT.
    StopWorker,
    /// SIGKILL a primary; its replica takes over; restart it (it rejoins as a replica).
    KillPrimary,
    /// `CLIENT KILL TYPE normal` on a primary, or `CLIENT KILL ADDR` of one of vshmd's
    /// connections there.
    ClientKill,
    /// `CLIENT KILL TYPE normal` on every node: every connection vshmd has.
    ClientKillAll,
    /// `CLIENT PAUSE 500-1500 ALL` on a primary.
    ClientPause,
    /// Move 1-3 slots holding workers' keys to another primary.
    Migrate,
    /// SIGKILL vshmd, start it again on the same socket; the workers register again.
    KillDaemon,
}

pub const ALL: [Fault; 8] = [
    Fault::KillWorker,
    Fault::StopWorker,
    Fault::KillPrimary,
    Fault::ClientKill,
    Fault::ClientKillAll,
    Fault::ClientPause,
    Fault::Migrate,
    Fault::KillDaemon,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillWorker => "kill_worker",
            Fault::StopWorker => "stop_worker",
            Fault::KillPrimary => "kill_primary",
            Fault::ClientKill => "client_kill",
            Fault::ClientKillAll => "client_kill_all",
            Fault::ClientPause => "client_pause",
            Fault::Migrate => "migrate_slots",
            Fault::KillDaemon => "kill_daemon",
        }
    }

    /// Availability bound: every live worker completes requests successfully again within this
    /// long after the injection's reference time (docs/reliability.md, "Availability"):
    /// CLIENT KILL: 1 s after the kill; primary SIGKILL: 2 s after the replica's promotion;
    /// migration: 1 s after its last `SETSLOT NODE`; pauses (CLIENT PAUSE, SIGSTOP): 1 s after
    /// the pause ends; vshmd SIGKILL: 1 s after the new daemon answers; worker SIGKILL: 1 s
    /// after its replacement registered.
    pub fn allowance(self) -> Duration {
        match self {
            Fault::KillPrimary => Duration::from_secs(2),
            _ => Duration::from_secs(1),
        }
    }

    /// What the reference time of [`Fault::allowance`] is, for the summary.
    pub fn reference_name(self) -> &'static str {
        match self {
            Fault::KillWorker => "replacement ready",
            Fault::StopWorker => "SIGCONT",
            Fault::KillPrimary => "replica promoted",
            Fault::ClientKill | Fault::ClientKillAll => "kill",
            Fault::ClientPause => "pause end",
            Fault::Migrate => "migration done",
            Fault::KillDaemon => "vshmd back",
        }
    }
}

/// SIGKILL a random primary, wait for its replica to be promoted (the cluster settles without
/// it), keep it down a little, restart it and wait until it is a linked replica. The reference
/// time is the promotion: the first moment `INFO replication` shows three running primaries
/// again (polled every 20 ms).
pub fn kill_primary(cluster: &mut RedisCluster, rng: &mut StdRng) -> Injected {
    let primaries: Vec<String> = cluster.primaries().iter().map(|n| n.addr()).collect();
    let victim = primaries[rng.random_range(0..primaries.len())].clone();
    let idx = cluster
        .nodes
        .iter()
        .position(|n| n.addr() == victim)
        .expect("victim is a node");
    let t0 = Instant::now();
    cluster.nodes[idx].kill();
    let promoted = wait_promoted(cluster, 3, SETTLE);
    cluster.wait_settled(SETTLE);
    let failover = promoted - t0;
    std::thread::sleep(Duration::from_millis(rng.random_range(0..2000)));
    cluster.nodes[idx].restart();
    cluster.wait_settled(SETTLE);
    wait_slots_settled(cluster);
    Injected {
        what: format!(
            "killed primary {victim}; replica promoted after {:.1} s; back as replica after {:.1} s",
            failover.as_secs_f64(),
            t0.elapsed().as_secs_f64()
        ),
        at: t0,
        reference: promoted,
    }
}

/// Polls until `want` running nodes report `role:master`; returns that moment.
pub fn wait_promoted(cluster: &RedisCluster, want: usize, bound: Duration) -> Instant {
    let deadline = Instant::now() + bound;
    loop {
        if cluster.primaries().len() >= want {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no replica promoted within {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `CLIENT KILL` on a random primary: every normal connection (vshmd's: the killing redis-cli
/// skips itself, replication links are not `normal`), or one of them by address.
pub fn client_kill(cluster: &RedisCluster, rng: &mut StdRng) -> Injected {
    let primaries = cluster.primaries();
    let node = primaries[rng.random_range(0..primaries.len())];
    if rng.random_bool(0.5) {
        let t = Instant::now();
        let n = node.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        Injected::at(
            t,
            format!("CLIENT KILL TYPE normal on {}: {n} killed", node.addr()),
        )
    } else {
        let addrs = normal_clients(node);
        if addrs.is_empty() {
            return Injected::at(
                Instant::now(),
                format!("CLIENT KILL ADDR on {}: no connection", node.addr()),
            );
        }
        let a = &addrs[rng.random_range(0..addrs.len())];
        let t = Instant::now();
        let r = node.cli(&["CLIENT", "KILL", "ADDR", a]);
        Injected::at(t, format!("CLIENT KILL ADDR {a} on {}: {r}", node.addr()))
    }
}

/// Addresses of the `normal` connections on `node` other than the asking redis-cli's own.
pub fn normal_clients(node: &crate::RedisServer) -> Vec<String> {
    node.cli(&["CLIENT", "LIST", "TYPE", "normal"])
        .lines()
        .filter(|l| !l.contains("cmd=client"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("addr="))
                .map(str::to_string)
        })
        .collect()
}

/// `CLIENT KILL TYPE normal` on every running node (one redis-cli each, started together so
/// the kills land within a few ms): every server connection vshmd has.
pub fn client_kill_all(cluster: &RedisCluster) -> Injected {
    let t = Instant::now();
    let counts: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = cluster
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| s.spawn(move || n.cli(&["CLIENT", "KILL", "TYPE", "normal"])))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    Injected::at(
        t,
        format!(
            "CLIENT KILL TYPE normal on every node: {} killed",
            counts.join("+")
        ),
    )
}

/// `CLIENT PAUSE <500..1500 ms> ALL` on a random primary; returns after the pause has ended.
pub fn client_pause(cluster: &RedisCluster, rng: &mut StdRng) -> Injected {
    let primaries = cluster.primaries();
    let node = primaries[rng.random_range(0..primaries.len())];
    let ms = rng.random_range(500..=1500u64);
    let t = Instant::now();
    let r = node.cli(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"]);
    // The pause runs from the server's receipt of the command: at most until the reply came.
    let end = Instant::now() + Duration::from_millis(ms);
    std::thread::sleep(Duration::from_millis(ms + 200));
    Injected {
        what: format!("CLIENT PAUSE {ms} ALL on {}: {r}", node.addr()),
        at: t,
        reference: end,
    }
}

/// Moves the slots of 1-3 of `tags` (hash tags of live workers' keys) to another primary,
/// with their keys, while the workers keep using them.
/// The reference time is the end of the last slot's `SETSLOT NODE` round.
pub fn migrate(cluster: &RedisCluster, rng: &mut StdRng, tags: &[String]) -> Injected {
    let n = rng.random_range(1..=3usize).min(tags.len());
    let mut slots = BTreeSet::new();
    while slots.len() < n {
        let tag = &tags[rng.random_range(0..tags.len())];
        slots.insert(key_slot(format!("{{{tag}}}").as_bytes()));
    }
    let mut out = Vec::new();
    let t0 = Instant::now();
    let mut done = t0;
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
        done = Instant::now();
        wait_slot_owner(cluster, slot, to);
        out.push(format!(
            "slot {slot} {} -> {} ({moved} keys)",
            from.port(),
            to.port()
        ));
    }
    cluster.wait_settled(SETTLE);
    Injected {
        what: format!("migrated {}", out.join(", ")),
        at: t0,
        reference: done,
    }
}
