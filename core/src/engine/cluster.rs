//! The shared connection of a cluster backend: a redis-rs
//! `cluster_async::ClusterConnection` (one multiplexed connection per node,
//! slot map, MOVED/ASK handling, retries), plus what redis-rs 1.8 lacks:
//! a periodic topology check, a client name on every node, and a list of
//! known node addresses so an `Address` route to an unknown node is refused
//! instead of making redis-rs reconnect the whole cluster.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_read_routing::{RandomReplicaStrategy, RoundRobinReplicaStrategy};
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::Value;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use vshm_protocol::msg::{ClientError, ErrorKind};

use crate::config::{Config, Endpoint, ReadFrom};
use crate::net::cluster::ClusterRouter;
use crate::topology::{NodeAddr, Shard};
use crate::value::map_error;

/// Minimum time between two on-demand topology fetches (for Address
/// routes naming a node not seen yet).
const ON_DEMAND_REFRESH_GAP: Duration = Duration::from_secs(1);

struct Known {
    /// The topology the shared connection was built with (first fetch or
    /// last rebuild).
    baseline: Option<Vec<Shard>>,
    nodes: HashSet<NodeAddr>,
    fetched: Option<Instant>,
}

pub(crate) struct Cluster {
    client: ClusterClient,
    conn: RwLock<ClusterConnection>,
    known: RwLock<Known>,
    refresh_lock: tokio::sync::Mutex<()>,
    client_name: Option<String>,
    connection_timeout: Duration,
    seeds: usize,
    /// The core's own topology (`crate::net::cluster`): the one source of
    /// slot owners for every path. Set once the backend's router exists.
    topology: std::sync::OnceLock<Arc<ClusterRouter>>,
}

/// Build the redis-rs cluster client of a config.
pub(crate) fn client_for(c: &Config, seeds: &[Endpoint]) -> Result<ClusterClient, ClientError> {
    let infos: Vec<redis::ConnectionInfo> = seeds
        .iter()
        .map(|ep| {
            let addr = if c.tls {
                redis::ConnectionAddr::TcpTls {
                    host: ep.host.clone(),
                    port: ep.port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                redis::ConnectionAddr::Tcp(ep.host.clone(), ep.port)
            };
            redis::IntoConnectionInfo::into_connection_info(addr).map_err(|e| map_error(&e))
        })
        .collect::<Result<_, _>>()?;
    let b = &c.reconnect;
    let max_wait = b.base_delay(b.number_of_retries).as_millis() as u64;
    let mut builder = ClusterClientBuilder::new(infos)
        .use_protocol(c.protocol.to_redis())
        .connection_timeout(c.connection_timeout())
        // No per-node response timeout: the engine bounds each request, and
        // a slow reply must not count as a broken connection.
        .overall_response_timeout(None)
        .retries(b.number_of_retries)
        .retry_wait_formula(u64::from(b.factor_ms), u64::from(b.exponent_base.max(1)))
        .min_retry_wait(0)
        .max_retry_wait(max_wait.max(1));
    if let Some(u) = &c.username {
        builder = builder.username(u);
    }
    if let Some(p) = &c.password {
        builder = builder.password(p);
    }
    if c.database != 0 {
        builder = builder.database_id(i64::from(c.database));
    }
    if c.tls {
        builder = builder.tls(redis::TlsMode::Secure);
    }
    if let Some(path) = &c.ca_file {
        let root = std::fs::read(path).map_err(|e| {
            ClientError::new(
                ErrorKind::InvalidRequest,
                format!("cannot read ca_file {}: {e}", path.display()),
            )
        })?;
        builder = builder.certs(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root),
        });
    }
    builder = match c.read_from {
        ReadFrom::Primary => builder,
        ReadFrom::PreferReplica => builder.read_routing_strategy(RandomReplicaStrategy),
        ReadFrom::RoundRobinReplicas => {
            builder.read_routing_strategy(RoundRobinReplicaStrategy::default())
        }
    };
    builder.build().map_err(|e| map_error(&e))
}

/// Open a cluster connection (bounded), and name its node connections.
pub(crate) async fn open(
    client: &ClusterClient,
    client_name: Option<&str>,
    connection_timeout: Duration,
    seeds: usize,
) -> Result<ClusterConnection, ClientError> {
    // redis-rs tries the seeds and then every node; bound the whole.
    let bound = connection_timeout * (seeds as u32 + 2);
    let mut conn = match tokio::time::timeout(bound, client.get_async_connection()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let mut err = map_error(&e);
            if err.kind == ErrorKind::Request {
                err.kind = ErrorKind::Connection;
            }
            err.message = format!("cannot connect to the cluster: {}", err.message);
            return Err(err);
        }
        Err(_) => {
            return Err(ClientError::new(
                ErrorKind::Timeout,
                format!(
                    "connecting to the cluster took over {} ms",
                    bound.as_millis()
                ),
            ))
        }
    };
    if let Some(name) = client_name {
        set_name(&mut conn, name, connection_timeout).await;
    }
    Ok(conn)
}

/// `CLIENT SETNAME` on every node (best effort: a node that fails keeps
/// its old name until the next topology check).
async fn set_name(conn: &mut ClusterConnection, name: &str, bound: Duration) {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("SETNAME").arg(name);
    let routing = RoutingInfo::MultiNode((
        MultipleNodeRoutingInfo::AllNodes,
        Some(ResponsePolicy::AllSucceeded),
    ));
    match tokio::time::timeout(bound, conn.route_command(cmd, routing)).await {
        Ok(Ok(v)) if v.clone().extract_error().is_ok() => {}
        Ok(Ok(v)) => warn!(reply = ?v, "CLIENT SETNAME failed on a node"),
        Ok(Err(e)) => warn!(error = %e, "CLIENT SETNAME failed on a node"),
        Err(_) => warn!("CLIENT SETNAME timed out"),
    }
}

impl Cluster {
    /// Use the core's router as the topology source (once, at connect).
    pub(crate) fn set_topology(&self, router: Arc<ClusterRouter>) {
        let _ = self.topology.set(router);
    }

    /// The shards as the core's topology knows them; `fresh`: refresh it
    /// first (bounded by one `CLUSTER SLOTS` round of the router).
    pub(crate) async fn shards(&self, fresh: bool) -> Result<Vec<Shard>, ClientError> {
        let Some(router) = self.topology.get() else {
            return Err(ClientError::new(
                ErrorKind::Connection,
                "the cluster topology is not known yet",
            ));
        };
        if fresh {
            if let Err(e) = router.refresh_once().await {
                debug!(error = %e, "topology refresh for a slow path failed; using the last map");
            }
        }
        let map = router.slot_map();
        if map.shards().is_empty() {
            return Err(ClientError::new(
                ErrorKind::Connection,
                "no slot owners known (cluster topology unavailable)",
            ));
        }
        Ok(map.shards().to_vec())
    }

    pub(crate) async fn connect(
        c: &Config,
        seeds: &[Endpoint],
    ) -> Result<Arc<Cluster>, ClientError> {
        let client = client_for(c, seeds)?;
        let conn = open(
            &client,
            c.client_name.as_deref(),
            c.connection_timeout(),
            seeds.len(),
        )
        .await?;
        let cluster = Arc::new(Cluster {
            client,
            conn: RwLock::new(conn),
            known: RwLock::new(Known {
                baseline: None,
                nodes: HashSet::new(),
                fetched: None,
            }),
            refresh_lock: tokio::sync::Mutex::new(()),
            client_name: c.client_name.clone(),
            connection_timeout: c.connection_timeout(),
            seeds: seeds.len(),
            topology: std::sync::OnceLock::new(),
        });
        Ok(cluster)
    }

    /// A handle on the shared cluster connection (cheap clone).
    pub(crate) fn conn(&self) -> ClusterConnection {
        self.conn.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The client (to open dedicated connections for blocking commands).
    pub(crate) fn client(&self) -> &ClusterClient {
        &self.client
    }

    pub(crate) fn client_name(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    pub(crate) fn connection_timeout(&self) -> Duration {
        self.connection_timeout
    }

    pub(crate) fn seeds(&self) -> usize {
        self.seeds
    }

    /// The addresses of the nodes serving slots, as `CLUSTER SLOTS` names
    /// them.
    pub(crate) fn known_nodes(&self) -> BTreeSet<String> {
        match self.topology.get() {
            Some(r) => r
                .slot_map()
                .nodes()
                .into_iter()
                .map(NodeAddr::to_string)
                .collect(),
            None => BTreeSet::new(),
        }
    }

    fn is_known(&self, host: &str, port: u16) -> bool {
        let addr = NodeAddr::new(host, port);
        self.topology
            .get()
            .is_some_and(|r| r.slot_map().nodes().contains(&&addr))
    }

    /// Ok if `host:port` is a node of the cluster (refetching the topology
    /// at most once a second when it is not known yet).
    pub(crate) async fn check_address(
        &self,
        host: &str,
        port: u16,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        if self.is_known(host, port) {
            return Ok(());
        }
        let stale = {
            let k = self.known.read().unwrap_or_else(|p| p.into_inner());
            k.fetched
                .is_none_or(|t| t.elapsed() >= ON_DEMAND_REFRESH_GAP)
        };
        if stale {
            match tokio::time::timeout_at(deadline, self.check_topology(false)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "topology fetch for an Address route failed"),
                Err(_) => {
                    return Err(ClientError::new(
                        ErrorKind::Timeout,
                        "timed out checking the cluster topology for an Address route",
                    ))
                }
            }
            if self.is_known(host, port) {
                return Ok(());
            }
        }
        let ep = Endpoint {
            host: host.to_string(),
            port,
        };
        Err(ClientError::new(
            ErrorKind::InvalidRequest,
            format!(
                "{ep} is not a node of this cluster (known: {})",
                self.known_nodes()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }

    /// Fetch `CLUSTER SLOTS` and remember the nodes. When `rebuild` (the
    /// periodic check) and the topology differs from the one the shared
    /// connection was built with, replace the connection (redis-rs 1.8 has
    /// no way to ask its connection to refresh); otherwise the periodic
    /// check re-applies the client name on every node.
    pub(crate) async fn check_topology(&self, rebuild: bool) -> Result<(), ClientError> {
        let _guard = self.refresh_lock.lock().await;
        let mut conn = self.conn();
        let topology = self.shards(true).await?;
        let changed = {
            let mut k = self.known.write().unwrap_or_else(|p| p.into_inner());
            k.nodes = topology
                .iter()
                .flat_map(|s| std::iter::once(&s.primary).chain(&s.replicas))
                .cloned()
                .collect();
            k.fetched = Some(Instant::now());
            match &k.baseline {
                None => {
                    k.baseline = Some(topology.clone());
                    false
                }
                Some(b) => *b != topology,
            }
        };
        if changed && rebuild {
            info!("cluster topology changed; rebuilding the cluster connection");
            self.rebuild().await?;
            // Only now: if rebuilding failed, the next check tries again.
            self.known
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .baseline = Some(topology);
        } else if let (true, Some(name)) = (rebuild, &self.client_name) {
            // Node connections redis-rs re-opened since the last check lost
            // their name.
            set_name(&mut conn, name, self.connection_timeout).await;
        }
        Ok(())
    }

    /// Run a command with redis-rs's own routing (`Route::Auto`).
    pub(crate) async fn auto(
        conn: &mut ClusterConnection,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<Value> {
        conn.req_packed_command(cmd).await
    }
}

/// The periodic topology check: holds only a weak reference, so it ends
/// when the backend goes.
pub(crate) async fn refresh_task(weak: Weak<Cluster>, every: Duration) {
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cluster) = weak.upgrade() else {
            return;
        };
        if let Err(e) = cluster.check_topology(true).await {
            warn!(error = %e, "periodic cluster topology check failed");
        }
    }
}

/// Keeps the slow paths' redis-rs cluster connection from staying stuck.
///
/// redis-rs's async cluster client can wedge after connection loss under
/// load (a lock held across network awaits while it refreshes slots:
/// redis-rs issues #2092 and #2277): every request through it then times
/// out. The core's own topology (`crate::net::cluster`) does not go through
/// it, and tells this watchdog about every disruption it sees (a node
/// connection lost, the slot map changed); a slow-path cluster request that
/// times out does too. Each disruption replaces the redis-rs connection by
/// a fresh one, coalesced (one rebuild at a time, [`REBUILD_SETTLE`] after
/// the first report) and bounded by the connection timeout; requests in
/// flight on the old connection finish or time out on it.
pub(crate) struct Watchdog {
    cluster: Weak<Cluster>,
    pending: vshm_protocol::sync::AtomicBool,
    rebuilds: vshm_protocol::sync::AtomicU64,
    handle: tokio::runtime::Handle,
}

/// Wait between a disruption report and the rebuild (reports of one event
/// arrive together: every node connection sees a CLIENT KILL).
pub(crate) const REBUILD_SETTLE: Duration = Duration::from_millis(100);

impl Watchdog {
    pub(crate) fn new(cluster: &Arc<Cluster>, handle: tokio::runtime::Handle) -> Arc<Watchdog> {
        Arc::new(Watchdog {
            cluster: Arc::downgrade(cluster),
            pending: vshm_protocol::sync::AtomicBool::new(false),
            rebuilds: vshm_protocol::sync::AtomicU64::new(0),
            handle,
        })
    }

    /// Rebuilds done so far.
    pub(crate) fn rebuilds(&self) -> u64 {
        self.rebuilds.load(vshm_protocol::sync::Ordering::Relaxed)
    }

    /// Something went wrong: rebuild soon (once for a burst of reports).
    pub(crate) fn report(self: &Arc<Self>) {
        use vshm_protocol::sync::Ordering;
        // AcqRel: pairs with the Release store that ends a rebuild, so a
        // report after it starts the next one.
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        self.handle.spawn(async move {
            tokio::time::sleep(REBUILD_SETTLE).await;
            // Release: reports from now on schedule another rebuild (pairs
            // with the swap above).
            me.pending.store(false, Ordering::Release);
            let Some(cluster) = me.cluster.upgrade() else {
                return;
            };
            match cluster.rebuild().await {
                Ok(()) => {
                    me.rebuilds.fetch_add(1, Ordering::Relaxed);
                    debug!("slow-path cluster connection rebuilt");
                }
                Err(e) => {
                    warn!(error = %e.message, "rebuilding the slow-path cluster connection failed")
                }
            }
        });
    }
}

impl Cluster {
    /// Replace the shared redis-rs connection by a fresh one (bounded).
    pub(crate) async fn rebuild(&self) -> Result<(), ClientError> {
        let fresh = open(
            &self.client,
            self.client_name.as_deref(),
            self.connection_timeout,
            self.seeds,
        )
        .await?;
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}
