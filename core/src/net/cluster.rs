//! The router of a cluster backend: the core's one slot map, a node
//! connection per node, redirects and retries.
//!
//! * Routing reads the current [`SlotMap`] (an `Arc` swapped whole).
//! * `MOVED`: the slot's entry is updated at once, a refresh is asked
//!   for, and the job goes to the new owner. `ASK`: the job goes to the
//!   importing node behind `ASKING`. `TRYAGAIN`, `CLUSTERDOWN`,
//!   `MASTERDOWN`, `LOADING`, `READONLY`: the command did not run; it is
//!   sent again after a short wait (and a refresh where the topology may
//!   have changed), until its deadline. No redirect reaches a client.
//! * Topology ([`super::refresh`]): `CLUSTER SLOTS` asked of several nodes
//!   over the node connections, the view most of them report wins. Asked
//!   on `MOVED`, on a lost node connection, every 250 ms while a primary is
//!   unreachable or slots are uncovered, and periodically.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use vshm_protocol::sync::{AtomicBool, AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::Notify;
use vshm_protocol::msg::ErrorKind;

use super::connect::ConnSettings;
use super::job::{Job, Target, MAX_HOPS};
use super::node::{Node, NodeStats, Router};
use super::single::{retry_later, RETRY_GAP};
use crate::config::{Backoff, ReadFrom};
use crate::resp::redirect::{parse_redirect_for, retry_class, Redirect, RetryClass};
use crate::topology::{NodeAddr, SlotMap};

/// Wait before routing again a job whose slot has no known owner.
const UNCOVERED_GAP: Duration = Duration::from_millis(100);

/// Topology refresh figures (stats and Prometheus).
#[derive(Debug, Clone, Default)]
pub struct TopologyStats {
    /// Refreshes run.
    pub refreshes: u64,
    /// Refreshes in which no node answered with a usable view.
    pub failures: u64,
    /// Refreshes that changed the slot map.
    pub changes: u64,
    /// Duration of the last refresh.
    pub last_duration: Duration,
    /// When the last refresh ended.
    pub last_at: Option<std::time::SystemTime>,
    pub last_error: Option<String>,
    /// MOVED replies seen.
    pub moved: u64,
    /// ASK replies seen.
    pub ask: u64,
    /// Jobs sent again after a "not executed" error.
    pub retries: u64,
    /// Times the slow paths' redis-rs cluster connection was replaced
    /// (`engine::cluster::Watchdog`).
    pub slow_path_rebuilds: u64,
}

pub(crate) struct ClusterRouter {
    pub(super) me: Weak<ClusterRouter>,
    pub(super) settings: Arc<ConnSettings>,
    pub(super) backoff: Backoff,
    pub(super) rt: Handle,
    pub(super) seeds: Vec<NodeAddr>,
    read_from: ReadFrom,
    pub(super) map: RwLock<Arc<SlotMap>>,
    /// The map was patched by a `MOVED` since the last refresh installed
    /// one (`SlotMap::with_moved` splits the slot off as a shard of its
    /// own: the old owner still heads the rest of its slots, so the map
    /// may name two primaries of one shard). Written and read only under
    /// `map`'s lock, which orders it; Relaxed for that reason.
    pub(super) patched: AtomicBool,
    /// Set by [`ClusterRouter::close`]: no node connection opens after.
    /// Written under `nodes`' lock and read there by `node` (which orders
    /// it; Relaxed for that reason); `is_closed` reads it as a hint.
    closed: AtomicBool,
    pub(super) nodes: Mutex<HashMap<NodeAddr, Arc<Node>>>,
    pub(super) refresh_wanted: Notify,
    rr: AtomicUsize,
    pub(super) stats: Mutex<TopologyStats>,
    /// Called after the slot map changed or a node connection was lost
    /// (the redis-rs cluster connection of the slow paths is rebuilt).
    pub(super) on_disruption: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClusterRouter {
    pub(crate) fn new(
        seeds: Vec<NodeAddr>,
        settings: Arc<ConnSettings>,
        backoff: Backoff,
        read_from: ReadFrom,
        rt: &Handle,
    ) -> Arc<ClusterRouter> {
        Arc::new_cyclic(|me| ClusterRouter {
            me: me.clone(),
            settings,
            backoff,
            rt: rt.clone(),
            seeds,
            read_from,
            map: RwLock::new(Arc::new(SlotMap::empty())),
            patched: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            nodes: Mutex::new(HashMap::new()),
            refresh_wanted: Notify::new(),
            rr: AtomicUsize::new(0),
            stats: Mutex::new(TopologyStats::default()),
            on_disruption: Mutex::new(None),
        })
    }

    pub fn slot_map(&self) -> Arc<SlotMap> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether [`ClusterRouter::close`] ran (a hint: `node` re-checks
    /// under the lock).
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The slot map, and whether a `MOVED` patched it since the last
    /// refresh (see `patched`), read together.
    pub(super) fn slot_map_patched(&self) -> (Arc<SlotMap>, bool) {
        let m = self.map.read().unwrap_or_else(|e| e.into_inner());
        (m.clone(), self.patched.load(Ordering::Relaxed))
    }

    /// The connection to `addr`, opened on first use.
    pub(super) fn node(&self, addr: &NodeAddr) -> Arc<Node> {
        let mut nodes = lock(&self.nodes);
        if let Some(n) = nodes.get(addr) {
            return n.clone();
        }
        let router: Weak<dyn Router> = self.me.clone();
        let n = Node::start(
            addr.clone(),
            self.settings.clone(),
            self.backoff,
            router,
            &self.rt,
        );
        if self.closed.load(Ordering::Relaxed) {
            // Closed: a job routed late (a retry timer, a fan-out) fails
            // on a closed node instead of reopening connections.
            n.close();
            return n;
        }
        nodes.insert(addr.clone(), n.clone());
        n
    }

    pub fn submit(&self, job: Box<Job>) {
        self.route(job)
    }

    /// The runtime the node connections run on.
    pub fn runtime(&self) -> &Handle {
        &self.rt
    }

    pub fn ask_refresh(&self) {
        self.refresh_wanted.notify_one();
    }

    pub fn set_on_disruption(&self, f: Box<dyn Fn() + Send + Sync>) {
        *lock(&self.on_disruption) = Some(f);
    }

    pub(super) fn disrupted(&self) {
        if let Some(f) = lock(&self.on_disruption).as_ref() {
            f();
        }
    }

    pub fn stats(&self) -> (Vec<NodeStats>, TopologyStats) {
        let nodes: Vec<Arc<Node>> = lock(&self.nodes).values().cloned().collect();
        let mut ns: Vec<NodeStats> = nodes.iter().map(|n| n.stats()).collect();
        ns.sort_by(|a, b| a.addr.cmp(&b.addr));
        (ns, lock(&self.stats).clone())
    }

    pub fn close(&self) {
        let nodes: Vec<Arc<Node>> = {
            let mut nodes = lock(&self.nodes);
            self.closed.store(true, Ordering::Relaxed);
            nodes.drain().map(|(_, n)| n).collect()
        };
        for n in nodes {
            n.close();
        }
    }

    /// Pick the node of a target under the current map.
    fn pick(&self, target: &Target) -> Option<NodeAddr> {
        let map = self.slot_map();
        match target {
            Target::Addr(a) => Some(a.clone()),
            Target::Random | Target::Keyless => {
                let p = map.primaries();
                if p.is_empty() {
                    return None;
                }
                let i = self.rr.fetch_add(1, Ordering::Relaxed) % p.len();
                Some(p[i].clone())
            }
            Target::Slot { slot, replica } => {
                let primary = map.primary(*slot)?.clone();
                if !*replica {
                    return Some(primary);
                }
                let replicas = map.replicas(*slot);
                if replicas.is_empty() {
                    return Some(primary);
                }
                let i = match self.read_from {
                    ReadFrom::RoundRobinReplicas => {
                        self.rr.fetch_add(1, Ordering::Relaxed) % replicas.len()
                    }
                    _ => rand::random_range(0..replicas.len()),
                };
                Some(replicas[i].clone())
            }
        }
    }
}

impl Router for ClusterRouter {
    fn route(&self, job: Box<Job>) {
        match self.pick(&job.target) {
            Some(addr) => self.node(&addr).submit(job),
            None => {
                // No owner known for the slot (yet): ask for a refresh
                // and try again shortly, while the deadline allows.
                self.ask_refresh();
                let me: Weak<dyn Router> = self.me.clone();
                retry_later(
                    &self.rt,
                    me,
                    job,
                    UNCOVERED_GAP,
                    b"CLUSTERDOWN no node known for the slot",
                );
            }
        }
    }

    fn on_error(&self, mut job: Box<Job>, err: &[u8], from: &NodeAddr) -> Option<Box<Job>> {
        if let Some(r) = parse_redirect_for(err, job.target.redirectable()) {
            job.hops = job.hops.saturating_add(1);
            if job.hops >= MAX_HOPS {
                job.fail(
                    ErrorKind::Connection,
                    format!(
                        "too many redirects (last: {})",
                        String::from_utf8_lossy(err)
                    ),
                );
                return None;
            }
            let fix = |host: String, port: u16| NodeAddr {
                host: if host.is_empty() {
                    from.host.clone()
                } else {
                    host
                },
                port,
            };
            match r {
                Redirect::Moved { slot, host, port } => {
                    let addr = fix(host, port);
                    lock(&self.stats).moved += 1;
                    {
                        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
                        if m.primary(slot) != Some(&addr) {
                            *m = Arc::new(m.with_moved(slot, &addr));
                            self.patched.store(true, Ordering::Relaxed);
                        }
                    }
                    self.ask_refresh();
                    job.target = match job.target {
                        // A replica answered MOVED: it does not serve reads
                        // for this client; the primary will.
                        Target::Slot { slot: s, .. } => Target::Slot {
                            slot: s,
                            replica: false,
                        },
                        _ => Target::Addr(addr),
                    };
                    job.asking = false;
                    self.route(job);
                }
                Redirect::Ask { host, port, .. } => {
                    let addr = fix(host, port);
                    lock(&self.stats).ask += 1;
                    job.asking = true;
                    self.node(&addr).submit(job);
                }
            }
            return None;
        }
        let Some(class) = retry_class(err) else {
            // The command's own error.
            return Some(job);
        };
        lock(&self.stats).retries += 1;
        if matches!(
            class,
            RetryClass::ClusterDown | RetryClass::MasterDown | RetryClass::ReadOnly
        ) {
            self.ask_refresh();
        }
        if matches!(class, RetryClass::ReadOnly) {
            if let Target::Slot { replica, .. } = &mut job.target {
                *replica = false;
            }
        }
        let me: Weak<dyn Router> = self.me.clone();
        let gap = match class {
            RetryClass::TryAgain => RETRY_GAP,
            _ => RETRY_GAP * 2,
        };
        retry_later(&self.rt, me, job, gap, err)
    }

    fn node_down(&self, _addr: &NodeAddr) {
        self.ask_refresh();
        self.disrupted();
    }
}
