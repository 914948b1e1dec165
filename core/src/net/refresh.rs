//! Cluster topology: the refresh task and the initial discovery.
//!
//! Independent of every request path: it asks `CLUSTER SLOTS` of several
//! nodes over the node connections (each query bounded by
//! [`QUERY_TIMEOUT`]) and never waits on anything a request can hold, so a
//! refresh always ends within that bound and the next one can start.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use vshm_protocol::msg::{ClientError, Completion, ErrorKind};

use super::cluster::ClusterRouter;
use super::job::{Encoded, Job, Target, Work};
use super::node::Node;
use super::ticket::OneshotSink;
use crate::topology::{choose_view, parse_cluster_slots, NodeAddr, SlotMap};

/// Bound on one node's `CLUSTER SLOTS` answer.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);
/// Refresh period while a primary is unreachable or slots are uncovered.
pub(crate) const DEGRADED_PERIOD: Duration = Duration::from_millis(250);
/// Least time between two refreshes.
const MIN_GAP: Duration = Duration::from_millis(50);
/// Most nodes asked per refresh.
const MAX_ASKED: usize = 8;

/// Send one command to one node for the core itself (topology queries,
/// fan-outs); the receiver gets its completion.
pub(crate) fn send(
    node: &Node,
    cmd: Encoded,
    deadline: Instant,
    bound: Duration,
) -> tokio::sync::oneshot::Receiver<Completion> {
    let (ticket, rx) = OneshotSink::ticket();
    node.submit(Box::new(Job {
        ticket,
        work: Work::Command(cmd),
        deadline,
        bound,
        target: Target::Addr(node.addr().clone()),
        asking: false,
        hops: 0,
    }));
    rx
}

/// Run one command on one node for the core itself.
pub(crate) async fn call(
    node: &Node,
    args: Vec<Vec<u8>>,
    timeout: Duration,
) -> Result<Completion, ClientError> {
    send(node, Encoded::new(&args), Instant::now() + timeout, timeout)
        .await
        .map_err(|_| ClientError::new(ErrorKind::Closing, "node closed"))
}

impl ClusterRouter {
    /// Ask several nodes for the topology and install the winning view.
    /// `Ok(true)` when the map changed.
    pub(crate) async fn refresh_once(&self) -> Result<bool, String> {
        let started = Instant::now();
        let current = self.slot_map();
        let mut asked: Vec<NodeAddr> = Vec::new();
        let primaries = current.primaries();
        let all = current.nodes();
        for a in primaries.into_iter().chain(all).chain(self.seeds.iter()) {
            if !asked.contains(a) && asked.len() < MAX_ASKED {
                asked.push(a.clone());
            }
        }
        // Nodes known to be down would only answer at the query timeout:
        // ask the others (all of them if every one is down).
        let up: Vec<NodeAddr> = asked
            .iter()
            .filter(|a| !self.node(a).is_down())
            .cloned()
            .collect();
        let asked = if up.is_empty() { asked } else { up };
        let mut set = JoinSet::new();
        for addr in asked {
            let node = self.node(&addr);
            set.spawn(async move {
                let r = call(
                    &node,
                    vec![b"CLUSTER".to_vec(), b"SLOTS".to_vec()],
                    QUERY_TIMEOUT,
                )
                .await;
                (addr, r)
            });
        }
        let mut views = Vec::new();
        let mut last_err = None;
        while let Some(r) = set.join_next().await {
            let Ok((addr, r)) = r else { continue };
            match r {
                Ok(Completion::Ok(v)) => match parse_cluster_slots(&v, &addr) {
                    Ok(shards) if !shards.is_empty() => views.push((addr, shards)),
                    Ok(_) => last_err = Some(format!("{addr}: no slots")),
                    Err(e) => last_err = Some(format!("{addr}: {e}")),
                },
                Ok(Completion::Err(e)) | Err(e) => {
                    last_err = Some(format!("{addr}: {}", e.message))
                }
                Ok(Completion::Push(_)) => {}
            }
        }
        let chosen = choose_view(&views);
        let took = started.elapsed();
        let mut changed = false;
        let result = match chosen {
            None => Err(last_err.unwrap_or_else(|| "no node answered".into())),
            Some(shards) => match SlotMap::new(shards) {
                Err(e) => Err(e),
                Ok(new) => {
                    {
                        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
                        if **m != new {
                            *m = Arc::new(new);
                            changed = true;
                        }
                        // Under the lock (see `ClusterRouter::patched`).
                        self.patched
                            .store(false, vshm_protocol::sync::Ordering::Relaxed);
                    }
                    Ok(changed)
                }
            },
        };
        {
            let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.refreshes += 1;
            s.last_duration = took;
            s.last_at = Some(std::time::SystemTime::now());
            match &result {
                Ok(c) => {
                    if *c {
                        s.changes += 1;
                    }
                }
                Err(e) => {
                    s.failures += 1;
                    s.last_error = Some(e.clone());
                }
            }
        }
        if changed {
            let map = self.slot_map();
            info!(
                shards = map.shards().len(),
                took_ms = took.as_millis() as u64,
                "cluster topology changed"
            );
            self.disrupted();
        }
        self.reroute_backlogs();
        if let Err(e) = &result {
            debug!(error = %e, "cluster topology refresh failed");
        }
        result
    }

    /// Jobs waiting on nodes that are down go where the map now says.
    fn reroute_backlogs(&self) {
        let nodes: Vec<Arc<Node>> = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let map = self.slot_map();
        for n in nodes {
            if n.is_connected() {
                continue;
            }
            for job in n.take_backlog() {
                use super::node::Router;
                // A job pinned to this address stays with it.
                if matches!(&job.target, Target::Addr(a) if a == n.addr()) {
                    n.submit(job);
                } else {
                    self.route(job);
                }
            }
        }
        // Drop idle connections to nodes that left the topology.
        let known: Vec<NodeAddr> = map.nodes().into_iter().cloned().collect();
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<NodeAddr> = nodes
            .iter()
            .filter(|(a, n)| {
                !known.contains(a)
                    && !self.seeds.contains(a)
                    && n.load() == 0
                    && !map.shards().is_empty()
            })
            .map(|(a, _)| a.clone())
            .collect();
        for a in gone {
            if let Some(n) = nodes.remove(&a) {
                n.close();
            }
        }
    }

    /// Whether a refresh should come soon: slots without an owner, or a
    /// primary whose connection is down.
    pub(crate) fn degraded(&self) -> bool {
        let map = self.slot_map();
        if !map.covers_all() {
            return true;
        }
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        map.primaries()
            .iter()
            .any(|p| nodes.get(*p).is_some_and(|n| !n.is_connected()))
    }

    /// The first topology, before the backend is handed out: retried until
    /// `bound`.
    pub(crate) async fn discover(&self, bound: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + bound;
        loop {
            let err = match self.refresh_once().await {
                Ok(_) if !self.slot_map().shards().is_empty() => return Ok(()),
                Ok(_) => "no slots served".to_string(),
                Err(e) => e,
            };
            if Instant::now() + DEGRADED_PERIOD >= deadline {
                return Err(ClientError::new(
                    ErrorKind::Connection,
                    format!("cannot connect to the cluster: {err}"),
                ));
            }
            tokio::time::sleep(DEGRADED_PERIOD).await;
        }
    }
}

/// The refresh task: on demand (MOVED, lost connections), every
/// [`DEGRADED_PERIOD`] while degraded, and every `every` (0 = never)
/// otherwise. The backend aborts it when it closes.
pub(crate) async fn refresh_task(router: Arc<ClusterRouter>, every: Duration) {
    let mut last = Instant::now();
    loop {
        let period = if router.degraded() {
            DEGRADED_PERIOD
        } else if every.is_zero() {
            Duration::from_secs(3600)
        } else {
            every
        };
        // `ask_refresh` uses `notify_one`: a request made while no one
        // waits is kept as a permit, so none is lost.
        tokio::select! {
            _ = router.refresh_wanted.notified() => {}
            _ = tokio::time::sleep(period) => {}
        }
        let since = last.elapsed();
        if since < MIN_GAP {
            tokio::time::sleep(MIN_GAP - since).await;
        }
        last = Instant::now();
        if let Err(e) = router.refresh_once().await {
            warn!(error = %e, "cluster topology refresh failed");
        }
    }
}
