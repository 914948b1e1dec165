//! One backend: the shared connection(s) to a deployment, the dedicated
//! connections for blocking commands, and request execution.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route as RRoute, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{AsyncConnectionConfig, RedisError, RedisResult};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info};
use vshm_protocol::bound;
use vshm_protocol::msg::{ClientError, Completion, ErrorKind, Op, Request, Route};

use super::blocking::Pool;
use super::cluster::{self, Cluster};
use super::fast::Links;
use super::pubsub::{PubSub, PushSink, Subscriber, Target};
use super::standalone::{self, Standalone};
use super::PoolKey;
use crate::commands::{self, BlockTimeout};
use crate::config::{Config, Mode};
use crate::value::{map_error, reply_to_completion};

/// Added to a blocking command's own timeout: the reply needs a moment to
/// arrive after the server gives up (GLIDE uses the same 0.5 s). Defined
/// with the bound computation it belongs to, shared with the client end.
pub use vshm_protocol::bound::BLOCKING_MARGIN;

/// Number of hash slots in a cluster.
const SLOTS: u16 = 16384;

pub(super) enum Kind {
    Standalone {
        shared: Standalone,
        dedicated: Pool<MultiplexedConnection>,
        conn_config: AsyncConnectionConfig,
    },
    Cluster {
        shared: Arc<Cluster>,
        dedicated: Pool<ClusterConnection>,
    },
}

/// The connections to one deployment for one [`PoolKey`], shared by every
/// client whose config has that key. Obtained from
/// [`Engine::connect`](super::Engine::connect).
pub struct Backend {
    key: PoolKey,
    config: Config,
    pub(super) kind: Kind,
    /// Live cluster scans (`Op::ClusterScan` cursor handles).
    pub(super) scans: super::scan::Store,
    refresh: Option<JoinHandle<()>>,
    pubsub: PubSub,
    /// The fast path's own node connections (`super::fast`).
    pub(super) links: Links,
    /// The fast path's topology refresh task (cluster).
    links_refresh: Option<JoinHandle<()>>,
    /// Rebuilds the slow paths' redis-rs cluster connection on disruptions.
    watchdog: Option<Arc<cluster::Watchdog>>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("key", &self.key).finish()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(t) = self.refresh.take() {
            t.abort();
        }
        if let Some(t) = self.links_refresh.take() {
            t.abort();
        }
        self.links.close();
        debug!(key = ?self.key, "backend closed");
    }
}

pub(super) fn invalid(msg: impl Into<String>) -> ClientError {
    ClientError::new(ErrorKind::InvalidRequest, msg)
}

pub(super) fn timed_out(name: &str, after: Duration) -> ClientError {
    ClientError::new(
        ErrorKind::Timeout,
        format!("{name} timed out after {} ms", after.as_millis()),
    )
}

pub(super) fn build_cmd(args: &[Vec<u8>]) -> redis::Cmd {
    let mut cmd = redis::Cmd::new();
    for a in args {
        cmd.arg(a.as_slice());
    }
    cmd
}

/// Wait between the engine's own resends of a cluster command that
/// redis-rs gave up on (see `run_shared`).
const CLUSTER_RETRY_GAP: Duration = Duration::from_millis(50);

/// Errors that mean the node did not execute the command (a redirect, a
/// cluster that cannot serve the slot right now, a demoted primary): safe
/// to send again.
fn not_executed(e: &RedisError) -> bool {
    use redis::ServerErrorKind as S;
    matches!(
        e.kind(),
        redis::ErrorKind::Server(
            S::Moved
                | S::Ask
                | S::TryAgain
                | S::ClusterDown
                | S::MasterDown
                | S::ReadOnly
                | S::BusyLoading
        )
    )
}

/// Whether a connection that produced `r` can serve another request.
fn reusable(r: &RedisResult<redis::Value>) -> bool {
    match r {
        Ok(_) => true,
        Err(e) => !e.is_io_error() && !e.is_unrecoverable_error(),
    }
}

pub(super) fn connect_error(e: RedisError) -> ClientError {
    let mut err = map_error(&e);
    if err.kind == ErrorKind::Request {
        err.kind = ErrorKind::Connection;
    }
    err
}

impl Backend {
    pub(crate) async fn connect(
        key: PoolKey,
        config: Config,
        handle: Handle,
    ) -> Result<Arc<Backend>, ClientError> {
        let max_blocking = config.max_blocking_connections as usize;
        let (kind, refresh) = match config.mode {
            Mode::Standalone => {
                let shared =
                    Standalone::connect(&config, &key.endpoints[0], handle.clone()).await?;
                (
                    Kind::Standalone {
                        shared,
                        dedicated: Pool::new(max_blocking),
                        conn_config: standalone::connection_config(&config),
                    },
                    None,
                )
            }
            Mode::Cluster => {
                let shared = Cluster::connect(&config, &key.endpoints).await?;
                let refresh = (config.topology_refresh_interval_ms > 0).then(|| {
                    let every =
                        Duration::from_millis(u64::from(config.topology_refresh_interval_ms));
                    handle.spawn(cluster::refresh_task(Arc::downgrade(&shared), every))
                });
                (
                    Kind::Cluster {
                        shared,
                        dedicated: Pool::new(max_blocking),
                    },
                    refresh,
                )
            }
        };
        let (links, links_refresh) = match Self::connect_links(&key, &config, &handle).await {
            Ok(l) => l,
            Err(e) => {
                if let Some(t) = refresh {
                    t.abort();
                }
                return Err(e);
            }
        };
        let watchdog = match (&links, &kind) {
            (Links::Cluster(router), Kind::Cluster { shared, .. }) => {
                shared.set_topology(router.clone());
                let wd = cluster::Watchdog::new(shared, handle.clone());
                let w = wd.clone();
                router.set_on_disruption(Box::new(move || w.report()));
                Some(wd)
            }
            _ => None,
        };
        info!(
            mode = ?config.mode,
            addresses = ?key.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            database = config.database,
            protocol = ?config.protocol,
            "connected"
        );
        let target = match &kind {
            Kind::Standalone { shared, .. } => Target::Standalone(shared.endpoint().clone()),
            Kind::Cluster { shared, .. } => Target::Cluster(shared.clone()),
        };
        // `connect` runs on the engine's runtime (see `Engine::connect`).
        let pubsub = PubSub::new(&config, target, Handle::current());
        Ok(Arc::new(Backend {
            key,
            config,
            kind,
            refresh,
            pubsub,
            scans: super::scan::Store::default(),
            links,
            links_refresh,
            watchdog,
        }))
    }

    /// Open the fast path's connections: the one server (standalone, in the
    /// background) or the cluster's topology and its nodes (discovered
    /// before the backend is handed out).
    async fn connect_links(
        key: &PoolKey,
        config: &Config,
        handle: &Handle,
    ) -> Result<(Links, Option<JoinHandle<()>>), ClientError> {
        use crate::net::{cluster::ClusterRouter, connect::ConnSettings, refresh, single::Single};
        use crate::topology::NodeAddr;
        let addr = |e: &crate::config::Endpoint| NodeAddr {
            host: e.host.clone(),
            port: e.port,
        };
        match config.mode {
            Mode::Standalone => {
                let settings = Arc::new(ConnSettings::from_config(config, false)?);
                let s = Single::start(addr(&key.endpoints[0]), settings, config.reconnect, handle);
                Ok((Links::Single(s), None))
            }
            Mode::Cluster => {
                let settings = Arc::new(ConnSettings::from_config(config, true)?);
                let seeds = key.endpoints.iter().map(addr).collect();
                let router =
                    ClusterRouter::new(seeds, settings, config.reconnect, config.read_from, handle);
                let bound = config.connection_timeout() * 2;
                if let Err(e) = router.discover(bound).await {
                    router.close();
                    return Err(e);
                }
                let every = Duration::from_millis(u64::from(config.topology_refresh_interval_ms));
                let task = handle.spawn(refresh::refresh_task(router.clone(), every));
                Ok((Links::Cluster(router), Some(task)))
            }
        }
    }

    /// The key this backend is shared under.
    pub fn key(&self) -> &PoolKey {
        &self.key
    }

    /// The config the backend was created with (the first client's).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Standalone or cluster.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// The nodes requests can be routed to with `Route::Address`
    /// (`"host:port"`): the server (standalone) or the nodes serving slots
    /// as `CLUSTER SLOTS` names them (cluster).
    pub fn nodes(&self) -> Vec<String> {
        match &self.kind {
            Kind::Standalone { shared, .. } => vec![shared.endpoint().to_string()],
            Kind::Cluster { shared, .. } => shared.known_nodes().into_iter().collect(),
        }
    }

    /// Run one request; always exactly one completion.
    ///
    /// Runs `Op::Command`, `Op::Batch` (pipelines and transactions, see
    /// `batch.rs`), `Op::Script` (`script.rs`) and `Op::ClusterScan`
    /// (`scan.rs`); `Op::Cancel` belongs to the dispatcher and pub/sub to
    /// [`Backend::execute_as`].
    /// The request's `timeout_ms` (0 = the config's `request_timeout_ms`)
    /// bounds the whole request, waiting for a reconnect included; a
    /// blocking command is bounded by its own timeout plus
    /// [`BLOCKING_MARGIN`] instead (see [`bound::bound_of`]).
    ///
    /// The future may be dropped at any point (client gone): nothing is
    /// left behind but, for a blocking command, a closed dedicated
    /// connection.
    pub async fn execute(&self, req: &Request) -> Completion {
        if let Some(rx) = self.execute_fast(req) {
            return rx.await.unwrap_or_else(|_| {
                Completion::Err(ClientError::new(ErrorKind::Closing, "backend closed"))
            });
        }
        match self.run(req).await {
            Ok(c) => c,
            Err(e) => Completion::Err(e),
        }
    }

    /// Register a pub/sub client whose messages go to `sink` (its
    /// completion ring). Dropping the last clone of the returned
    /// [`Subscriber`] removes its subscriptions.
    pub fn subscriber(&self, sink: Arc<dyn PushSink>) -> Subscriber {
        self.pubsub.subscriber(sink)
    }

    /// The fast path's node connections (state, last error, requests,
    /// `write` calls, reconnects) and, for a cluster, its topology
    /// refreshes.
    pub fn link_stats(
        &self,
    ) -> (
        Vec<crate::net::NodeStats>,
        Option<crate::net::TopologyStats>,
    ) {
        match &self.links {
            Links::Single(s) => (s.stats(), None),
            Links::Cluster(c) => {
                let (n, mut t) = c.stats();
                t.slow_path_rebuilds = self.watchdog.as_ref().map_or(0, |w| w.rebuilds());
                (n, Some(t))
            }
        }
    }

    /// Server-side pub/sub subscriptions currently confirmed, per node
    /// (`"host:port"`, count). Diagnostics and tests.
    pub fn pubsub_links(&self) -> Vec<(String, usize)> {
        self.pubsub.active()
    }

    /// Run one request for a client that can receive pushes: like
    /// [`Backend::execute`], plus `Op::Subscribe` / `Op::Unsubscribe`.
    ///
    /// Subscribe completes with the client's number of subscriptions (all
    /// kinds) once the server confirmed every channel, or fails (then none
    /// of the channels it added stay subscribed): `InvalidRequest` for an
    /// empty list, `Request` when the server refuses (ACL), `Connection` /
    /// `Timeout` when not confirmed within the request's timeout.
    /// Unsubscribe completes at once (delivery to this client stops
    /// immediately) with the remaining count. The request's route is not
    /// used: sharded channels go to their slot's primary.
    pub async fn execute_as(&self, req: &Request, sub: &Subscriber) -> Completion {
        let r = match &req.op {
            Op::Subscribe { kind, channels } => {
                let bound = self.request_timeout(req.timeout_ms);
                let deadline = Instant::now() + bound;
                self.pubsub
                    .subscribe(sub, *kind, channels, deadline, bound)
                    .await
            }
            Op::Unsubscribe { kind, channels } => self.pubsub.unsubscribe(sub, *kind, channels),
            _ => return self.execute(req).await,
        };
        match r {
            Ok(n) => Completion::Ok(vshm_protocol::msg::Value::Int(n as i64)),
            Err(e) => Completion::Err(e),
        }
    }

    async fn run(&self, req: &Request) -> Result<Completion, ClientError> {
        let args = match &req.op {
            Op::Command { args } => args,
            Op::Batch {
                atomic,
                watch,
                commands,
            } => return self.run_batch(req, *atomic, watch, commands).await,
            Op::Cancel { .. } => {
                return Err(invalid(
                    "Cancel is handled by the dispatcher, not the engine",
                ))
            }
            Op::Subscribe { .. } | Op::Unsubscribe { .. } => {
                return Err(invalid(
                    "pub/sub requests need a client with a push channel (Backend::execute_as)",
                ))
            }
            Op::Script { code, keys, args } => return self.run_script(req, code, keys, args).await,
            Op::ClusterScan {
                cursor,
                pattern,
                count,
                type_filter,
            } => {
                let opts = super::scan::ScanOpts {
                    pattern: pattern.as_deref(),
                    count: *count,
                    type_filter: type_filter.as_deref(),
                };
                return self.run_scan(req, *cursor, opts).await;
            }
        };
        if args.is_empty() {
            return Err(invalid("empty command"));
        }
        if let Some(why) = commands::bad_name(args) {
            return Err(invalid(why));
        }
        let name = commands::command_name(args);
        if let Some(why) = commands::refusal(&name) {
            return Err(invalid(why));
        }
        let start = Instant::now();
        let block = commands::block_timeout(&name, args);
        let bound = match block {
            Some(bt) => self.blocking_bound(bt, req.timeout_ms),
            None => self.request_timeout(req.timeout_ms),
        };
        let deadline = start + bound;
        let cmd = build_cmd(args);
        let out = match block {
            Some(_) => self.run_blocking(req, &name, cmd, deadline, bound).await,
            None => self.run_shared(req, &name, cmd, deadline, bound).await,
        };
        let took = start.elapsed();
        if took >= bound / 2 && block.is_none() {
            debug!(command = %name, took_ms = took.as_millis() as u64, bound_ms = bound.as_millis() as u64, "slow request");
        }
        out
    }

    pub(super) fn request_timeout(&self, timeout_ms: u32) -> Duration {
        if timeout_ms == 0 {
            self.config.request_timeout()
        } else {
            Duration::from_millis(u64::from(timeout_ms))
        }
    }

    /// The bound of a blocking command: [`bound::bound_of`], the decision
    /// shared with the client end (its own timeout plus the margin, or the
    /// request timeout if longer; when it blocks forever, the request's
    /// `timeout_ms`, else `block_forever_limit_ms`).
    fn blocking_bound(&self, bt: BlockTimeout, timeout_ms: u32) -> Duration {
        bound::bound_of(Some(bt), timeout_ms, &self.bound_defaults())
    }

    /// What request bounds are computed from (see
    /// [`bound::request_bound`], shared with the client end).
    pub(super) fn bound_defaults(&self) -> bound::BoundDefaults {
        bound::BoundDefaults {
            request_timeout: self.config.request_timeout(),
            block_forever_limit: Duration::from_millis(self.config.block_forever_limit_ms),
        }
    }

    pub(super) async fn run_shared(
        &self,
        req: &Request,
        name: &str,
        cmd: redis::Cmd,
        deadline: Instant,
        bound: Duration,
    ) -> Result<Completion, ClientError> {
        match &self.kind {
            Kind::Standalone { shared, .. } => {
                check_standalone_route(shared, &req.route)?;
                let (mut conn, generation) = shared.get(deadline).await?;
                match tokio::time::timeout_at(deadline, conn.send_packed_command(&cmd)).await {
                    Err(_) => Err(timed_out(name, bound)),
                    Ok(r) => {
                        if let Err(e) = &r {
                            shared.report(generation, e);
                        }
                        Ok(reply_to_completion(r))
                    }
                }
            }
            Kind::Cluster { shared, .. } => {
                let routing = cluster_routing(shared, &req.route, name, deadline).await?;
                let single = !matches!(routing, Some(RoutingInfo::MultiNode(_)));
                loop {
                    let mut conn = shared.conn();
                    let fut = run_cluster(&mut conn, cmd.clone(), routing.clone());
                    let r = match tokio::time::timeout_at(deadline, fut).await {
                        Err(_) => {
                            // Possibly a stuck redis-rs client: rebuild it.
                            if let Some(w) = &self.watchdog {
                                w.report();
                            }
                            return Err(timed_out(name, bound));
                        }
                        Ok(r) => r,
                    };
                    // redis-rs gives up on a redirect or a "try again" once
                    // its retries are spent, and during a failover its
                    // reconnect retries (which do not wait) spend them in
                    // moments. Such a command was not executed: send it
                    // again while the deadline allows, and never show a
                    // redirect as the command's own error.
                    match &r {
                        Err(e) if single && not_executed(e) => {
                            if Instant::now() + CLUSTER_RETRY_GAP < deadline {
                                tokio::time::sleep(CLUSTER_RETRY_GAP).await;
                                continue;
                            }
                            let mut err = map_error(e);
                            err.kind = ErrorKind::Connection;
                            return Err(err);
                        }
                        _ => return Ok(reply_to_completion(r)),
                    }
                }
            }
        }
    }

    async fn run_blocking(
        &self,
        req: &Request,
        name: &str,
        cmd: redis::Cmd,
        deadline: Instant,
        bound: Duration,
    ) -> Result<Completion, ClientError> {
        match &self.kind {
            Kind::Standalone {
                shared,
                dedicated,
                conn_config,
            } => {
                check_standalone_route(shared, &req.route)?;
                let mut lease = dedicated
                    .lease(deadline, || async {
                        standalone::open(
                            shared.client(),
                            conn_config,
                            self.config.client_name.as_deref(),
                            self.config.connection_timeout(),
                        )
                        .await
                        .map_err(connect_error)
                    })
                    .await?;
                match tokio::time::timeout_at(deadline, lease.conn.send_packed_command(&cmd)).await
                {
                    // Dropping the lease closes the connection, which ends
                    // the block server-side.
                    Err(_) => Err(timed_out(name, bound)),
                    Ok(r) => {
                        if reusable(&r) {
                            lease.done();
                        }
                        Ok(reply_to_completion(r))
                    }
                }
            }
            Kind::Cluster { shared, dedicated } => {
                let routing = cluster_routing(shared, &req.route, name, deadline).await?;
                let mut lease = dedicated
                    .lease(deadline, || {
                        cluster::open(
                            shared.client(),
                            shared.client_name(),
                            shared.connection_timeout(),
                            shared.seeds(),
                        )
                    })
                    .await?;
                let fut = run_cluster(&mut lease.conn, cmd, routing);
                match tokio::time::timeout_at(deadline, fut).await {
                    Err(_) => Err(timed_out(name, bound)),
                    Ok(r) => {
                        if reusable(&r) {
                            lease.done();
                        }
                        Ok(reply_to_completion(r))
                    }
                }
            }
        }
    }
}

async fn run_cluster(
    conn: &mut ClusterConnection,
    cmd: redis::Cmd,
    routing: Option<RoutingInfo>,
) -> RedisResult<redis::Value> {
    match routing {
        None => Cluster::auto(conn, &cmd).await,
        Some(r) => conn.route_command(cmd, r).await,
    }
}

/// A standalone backend runs every route on its one server, except an
/// `Address` naming another server.
pub(super) fn check_standalone_route(
    shared: &Standalone,
    route: &Route,
) -> Result<(), ClientError> {
    match route {
        Route::Address { host, port } => {
            super::fast::check_standalone_address(shared.endpoint(), host, *port)
        }
        _ => Ok(()),
    }
}

/// Map a request route onto redis-rs routing; `None` = let redis-rs route
/// by the command's keys (`Route::Auto`).
pub(super) async fn cluster_routing(
    cluster: &Cluster,
    route: &Route,
    name: &str,
    deadline: Instant,
) -> Result<Option<RoutingInfo>, ClientError> {
    // An explicit replica route only makes sense for reads; writes go to
    // the primary (a replica would answer MOVED anyway).
    let slot_addr = |replica: bool| {
        if replica && commands::is_read_only(name) {
            SlotAddr::ReplicaRequired
        } else {
            SlotAddr::Master
        }
    };
    Ok(Some(match route {
        Route::Auto => return Ok(None),
        Route::AllNodes => RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllNodes,
            commands::response_policy(name),
        )),
        Route::AllPrimaries => RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            commands::response_policy(name),
        )),
        Route::Random => RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        Route::SlotKey { key, replica } => RoutingInfo::SingleNode(
            SingleNodeRoutingInfo::SpecificNode(RRoute::with_key(key, slot_addr(*replica))),
        ),
        Route::SlotId { slot, replica } => {
            if *slot >= SLOTS {
                return Err(invalid(format!("slot {slot} is out of range 0..16383")));
            }
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(RRoute::new(
                *slot,
                slot_addr(*replica),
            )))
        }
        Route::Address { host, port } => {
            cluster.check_address(host, *port, deadline).await?;
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            })
        }
    }))
}
