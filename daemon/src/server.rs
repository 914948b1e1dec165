//! The daemon: accept registrations on the Unix socket, check the peer,
//! create each client's segment, serve it through the shared dispatcher and
//! engine, reclaim it when the client's socket closes, and drain on
//! SIGTERM/SIGINT.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, AtomicU64, Ordering};

use nix::sys::socket::UnixCredentials;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};
use vshm_core::dispatch::{AttachOptions, ClientAttachment, Dispatcher};
use vshm_core::embedded::ClientExec;
use vshm_core::{Backend, Engine};
use vshm_protocol::layout::{features, Layout};
use vshm_protocol::register::{self, HandshakeReply, Hello, Settings, PROTOCOL_VERSION};
use vshm_protocol::segment::Segment;

use crate::config::{DaemonConfig, SegmentConfig};
use crate::sock::{self, Conn, Listener, Recv};
use crate::stats::{sanitize, BackendLinks, ClientRow, Hist, Snapshot};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The memfd name (shown in /proc/PID/fd as `/memfd:vshm-segment (deleted)`;
/// it is no path: nothing can open it by name).
const MEMFD_NAME: &std::ffi::CStr = c"vshm-segment";

struct ClientEntry {
    pid: i32,
    uid: u32,
    name: String,
    profile: String,
    database: Option<u32>,
    since: Instant,
    conn: Arc<ClientAttachment>,
    /// Index of the engine (pool) its backend belongs to.
    pool: usize,
    /// Keeps the backend (its server connections) alive while the client is.
    _backend: Arc<Backend>,
}

#[derive(Default)]
struct State {
    clients: BTreeMap<u64, ClientEntry>,
    /// Counters of clients gone, so totals do not drop.
    gone_requests: u64,
    gone_errors: u64,
    gone_latency: Hist,
}

/// The running daemon.
pub struct Daemon {
    cfg: DaemonConfig,
    allowed_uids: Vec<u32>,
    engines: Vec<Arc<Engine>>,
    dispatcher: Arc<Dispatcher>,
    state: Mutex<State>,
    next_id: AtomicU64,
    registrations: AtomicU64,
    refused: AtomicU64,
    draining: AtomicBool,
    started: Instant,
    /// Default backends connected at startup (`preconnect`), with the
    /// index of their engine.
    warm: Mutex<Vec<(usize, Arc<Backend>)>>,
    metrics_port: Option<u16>,
}

struct Registered {
    id: u64,
    seg: Arc<Segment>,
    conn: Arc<ClientAttachment>,
    request_timeout_ms: u32,
    block_forever_limit_ms: u64,
}

impl Daemon {
    fn new(
        cfg: DaemonConfig,
        rt: tokio::runtime::Handle,
        metrics_port: Option<u16>,
    ) -> Arc<Daemon> {
        let engines = (0..cfg.pool_size)
            .map(|_| Arc::new(Engine::new(rt.clone())))
            .collect();
        Arc::new(Daemon {
            allowed_uids: cfg.effective_allowed_uids(),
            engines,
            dispatcher: Dispatcher::new(rt),
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            registrations: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            started: Instant::now(),
            warm: Mutex::new(Vec::new()),
            metrics_port,
            cfg,
        })
    }

    fn peer_allowed(&self, uid: u32, gid: u32, groups: &[u32]) -> bool {
        self.allowed_uids.contains(&uid)
            || self.cfg.allowed_gids.contains(&gid)
            || groups.iter().any(|g| self.cfg.allowed_gids.contains(g))
    }

    /// The current statistics. The TCP peer count (a read of every open
    /// descriptor and of `/proc/net/tcp`: milliseconds with many clients)
    /// runs on the blocking pool, not on the thread that serves the rings.
    pub async fn snapshot(&self) -> Snapshot {
        let mut snap = self.snapshot_here();
        let skip: Vec<u16> = self.metrics_port.into_iter().collect();
        snap.nodes = tokio::task::spawn_blocking(move || crate::stats::tcp_peers(&skip))
            .await
            .unwrap_or_default();
        snap
    }

    /// Everything of [`Self::snapshot`] but the TCP peers.
    fn snapshot_here(&self) -> Snapshot {
        let mut snap = Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            protocol: PROTOCOL_VERSION,
            pid: std::process::id(),
            uptime: self.started.elapsed(),
            socket: self.cfg.socket_path.display().to_string(),
            draining: self.draining.load(Ordering::Relaxed),
            registrations: self.registrations.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            pool_size: self.cfg.pool_size,
            backends: self.engines.iter().map(|e| e.backend_count()).sum(),
            ..Snapshot::default()
        };
        let mut known = BTreeSet::new();
        // Live backends (shared by clients of one pool key), by identity:
        // engine index, the auth profiles using it, the backend.
        let mut live: BTreeMap<usize, (usize, BTreeSet<String>, Arc<Backend>)> = BTreeMap::new();
        let mut note = |pool: usize, profile: &str, b: &Arc<Backend>| {
            live.entry(Arc::as_ptr(b) as usize)
                .or_insert_with(|| (pool, BTreeSet::new(), b.clone()))
                .1
                .insert(profile.to_string());
        };
        {
            let st = lock(&self.state);
            snap.requests = st.gone_requests;
            snap.errors = st.gone_errors;
            snap.latency = st.gone_latency.clone();
            for (id, c) in &st.clients {
                let lat = c.conn.stats.latency.snapshot();
                let requests = c.conn.stats.requests.load(Ordering::Relaxed);
                let errors = c.conn.stats.errors.load(Ordering::Relaxed);
                snap.requests += requests;
                snap.errors += errors;
                snap.latency.add(&lat);
                let mut h = Hist::default();
                h.add(&lat);
                snap.clients.push(ClientRow {
                    id: *id,
                    pid: c.pid,
                    uid: c.uid,
                    name: c.name.clone(),
                    profile: c.profile.clone(),
                    database: c.database,
                    requests,
                    errors,
                    inflight: c.conn.inflight(),
                    latency: h,
                    up: c.since.elapsed(),
                });
                known.extend(c._backend.nodes());
                note(c.pool, &c.profile, &c._backend);
            }
        }
        for (pool, b) in lock(&self.warm).iter() {
            known.extend(b.nodes());
            note(*pool, "default", b);
        }
        snap.known_nodes = known.into_iter().collect();
        snap.links = live
            .into_values()
            .map(|(pool, profiles, b)| {
                let (nodes, topology) = b.link_stats();
                BackendLinks {
                    label: backend_label(pool, &profiles, &b),
                    nodes,
                    topology,
                }
            })
            .collect();
        snap.links.sort_by(|a, b| a.label.cmp(&b.label));
        snap.taken_at = Some(std::time::SystemTime::now());
        snap
    }

    fn refuse_count(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Serve one accepted socket from its first message to its end.
    async fn serve_socket(self: Arc<Self>, conn: Conn, slot: OwnedSemaphorePermit) {
        let cred = match register::peer_cred(&conn.as_fd()) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot read peer credentials; closing");
                self.refuse_count();
                return;
            }
        };
        // Checked before waiting for the first message: a peer that may
        // not use this vshmd holds no descriptor and no handshake slot for
        // `handshake_timeout_ms`. Its refusal is queued before the close;
        // the client reads it even if its own message then meets a closed
        // socket (`register::exchange`).
        let groups = sock::peer_groups(conn.raw());
        if !self.peer_allowed(cred.uid(), cred.gid(), &groups) {
            let why = format!(
                "uid {} (gid {}, pid {}) is not allowed to use this vshmd (see allowed_uids / allowed_gids in its configuration)",
                cred.uid(),
                cred.gid(),
                cred.pid()
            );
            self.refuse(&conn, &cred, why).await;
            // Take the client's message if it is there (no wait: a refused
            // peer holds its slot no longer than this): closing with it
            // unread makes the client's next read report a reset before
            // the refusal (the client library reads past it,
            // `register::recv_answer`).
            let _ = conn.try_recv();
            return;
        }
        let hs = Duration::from_millis(self.cfg.handshake_timeout_ms);
        let bytes = match tokio::time::timeout(hs, conn.recv()).await {
            Ok(Ok(Recv::Msg(b))) => b,
            Ok(Ok(Recv::Eof)) => return,
            Ok(Err(e)) => {
                debug!(pid = cred.pid(), error = %e, "registration socket error");
                return;
            }
            Err(_) => {
                self.refuse(
                    &conn,
                    &cred,
                    format!("no registration message within {} ms", hs.as_millis()),
                )
                .await;
                return;
            }
        };
        let hello = match register::decode_hello(&bytes) {
            Ok(h) => h,
            Err(e) => {
                let why = format!(
                    "cannot decode the registration message ({e}); this vshmd speaks protocol {PROTOCOL_VERSION}: is the client library of another version?"
                );
                self.refuse(&conn, &cred, why).await;
                return;
            }
        };
        match hello {
            Hello::Stats {
                protocol_version,
                prometheus,
            } => {
                if protocol_version != PROTOCOL_VERSION {
                    self.refuse(&conn, &cred, version_mismatch(protocol_version))
                        .await;
                    return;
                }
                let snap = self.snapshot().await;
                let text = crate::stats::truncate(if prometheus {
                    snap.prometheus()
                } else {
                    snap.text()
                });
                let reply = register::encode_reply(&HandshakeReply::Stats { text });
                if let Err(e) = conn.send(&reply, &[]).await {
                    debug!(error = %e, "cannot send stats");
                }
            }
            Hello::Register {
                protocol_version,
                pid: _,
                settings,
            } => {
                if protocol_version != PROTOCOL_VERSION {
                    self.refuse(&conn, &cred, version_mismatch(protocol_version))
                        .await;
                    return;
                }
                // Acquire: pairs with the Release store in `run` when the
                // drain begins (the flag publishes nothing else).
                if self.draining.load(Ordering::Acquire) {
                    self.refuse(&conn, &cred, "vshmd is shutting down".into())
                        .await;
                    return;
                }
                let reg = match self.register(&cred, &groups, settings).await {
                    Ok(r) => r,
                    Err(why) => {
                        self.refuse(&conn, &cred, why).await;
                        return;
                    }
                };
                drop(slot);
                self.client_session(conn, reg).await;
            }
        }
    }

    async fn refuse(&self, conn: &Conn, cred: &UnixCredentials, reason: String) {
        self.refuse_count();
        warn!(pid = cred.pid(), uid = cred.uid(), gid = cred.gid(), reason = %reason, "registration refused");
        let reply = register::encode_reply(&HandshakeReply::Refused {
            reason,
            daemon_version: PROTOCOL_VERSION,
        });
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.send(&reply, &[])).await;
    }

    /// Check the limits, connect the backend, create and attach the segment.
    async fn register(
        &self,
        cred: &UnixCredentials,
        groups: &[u32],
        settings: Settings,
    ) -> Result<Registered, String> {
        let uid = cred.uid();
        let mut cfg = self.cfg.server.clone();
        let profile = match &settings.auth_profile {
            None => "default".to_string(),
            Some(name) => {
                let p = self
                    .cfg
                    .auth_profiles
                    .get(name)
                    .ok_or_else(|| format!("unknown auth profile {:?}", sanitize(name)))?;
                let restricted = !(p.allowed_uids.is_empty() && p.allowed_gids.is_empty());
                let ok = p.allowed_uids.contains(&uid)
                    || p.allowed_gids.contains(&cred.gid())
                    || groups.iter().any(|g| p.allowed_gids.contains(g));
                if restricted && !ok {
                    return Err(format!("uid {uid} may not use auth profile {name:?}"));
                }
                cfg.username = p.username.clone();
                cfg.password = p.password.clone();
                name.clone()
            }
        };
        if let Some(db) = settings.database {
            cfg.database = db;
        }
        self.check_limits(uid)?;
        let s = &self.cfg.segment;
        let sq = SegmentConfig::ring_size(
            settings.sq_capacity,
            s.sq_size,
            s.max_sq_size,
            "max_sq_size",
        )?;
        let cq = SegmentConfig::ring_size(
            settings.cq_capacity,
            s.cq_size,
            s.max_cq_size,
            "max_cq_size",
        )?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pool = (id % self.engines.len() as u64) as usize;
        let engine = &self.engines[pool];
        let bound = cfg.connection_timeout() * 3 + Duration::from_secs(1);
        let backend = match tokio::time::timeout(bound, engine.connect(&cfg)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(format!("cannot connect to the servers: {}", e.message)),
            Err(_) => {
                return Err(format!(
                    "connecting to the servers took more than {} ms",
                    bound.as_millis()
                ))
            }
        };
        let layout = Layout::new(sq, cq, features::SQ_DOORBELL)
            .map_err(|e| format!("segment layout: {e}"))?;
        let seg = Arc::new(
            Segment::create_memfd(layout, MEMFD_NAME)
                .map_err(|e| format!("cannot create segment: {e}"))?,
        );
        let name = sanitize(settings.client_name.as_deref().unwrap_or("-"));
        let opts = AttachOptions {
            max_inflight: self.cfg.limits.max_inflight as usize,
            max_outstanding_bytes: self.cfg.limits.max_outstanding_bytes,
            label: format!("{id}:{name}:{}", cred.pid()),
            spin: Duration::from_micros(self.cfg.serve_spin_us),
        };
        let conn = self
            .dispatcher
            .attach(
                seg.clone(),
                Arc::new(ClientExec::new(backend.clone())),
                opts,
            )
            .map_err(|e| format!("cannot attach segment: {e}"))?;
        // Insert under the lock, re-checking the limits (registrations run
        // concurrently) and the drain flag (shutdown may have begun while
        // we connected).
        {
            let mut st = lock(&self.state);
            let over = limits_exceeded(&self.cfg, &st, uid);
            // Acquire: pairs with the Release store in `run`; the `state`
            // lock, which `run` takes after that store to count the
            // clients, orders this check against the drain.
            if over.is_some() || self.draining.load(Ordering::Acquire) {
                drop(st);
                conn.detach();
                return Err(over.unwrap_or_else(|| "vshmd is shutting down".into()));
            }
            st.clients.insert(
                id,
                ClientEntry {
                    pid: cred.pid(),
                    uid,
                    name: name.clone(),
                    profile: profile.clone(),
                    database: settings.database,
                    since: Instant::now(),
                    conn: conn.clone(),
                    pool,
                    _backend: backend,
                },
            );
        }
        self.registrations.fetch_add(1, Ordering::Relaxed);
        info!(client = id, pid = cred.pid(), uid, name = %name, profile = %profile, database = ?settings.database, sq, cq, "client registered");
        Ok(Registered {
            id,
            seg,
            conn,
            request_timeout_ms: cfg.request_timeout_ms,
            block_forever_limit_ms: cfg.block_forever_limit_ms,
        })
    }

    fn check_limits(&self, uid: u32) -> Result<(), String> {
        match limits_exceeded(&self.cfg, &lock(&self.state), uid) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Hand the descriptors over, then hold the socket until the client
    /// closes it (exit, crash, drop) and reclaim the segment.
    async fn client_session(&self, conn: Conn, reg: Registered) {
        let welcome = register::encode_reply(&HandshakeReply::Welcome {
            protocol_version: PROTOCOL_VERSION,
            client_id: reg.id,
            request_timeout_ms: reg.request_timeout_ms,
            block_forever_limit_ms: reg.block_forever_limit_ms,
        });
        let memfd = match reg.seg.fd() {
            Some(fd) => fd.as_raw_fd(),
            None => {
                self.remove(reg.id, "segment has no descriptor");
                return;
            }
        };
        let doorbell = reg.conn.doorbell_fd();
        let sent = tokio::time::timeout(
            Duration::from_millis(self.cfg.handshake_timeout_ms),
            conn.send(&welcome, &[memfd, doorbell.as_raw_fd()]),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.remove(reg.id, &format!("cannot send welcome: {e}"));
                return;
            }
            Err(_) => {
                self.remove(reg.id, "welcome send timed out");
                return;
            }
        }
        drop(doorbell);
        // The client sends nothing after registering: anything it does send
        // is ignored; EOF (or an error) means it is gone. A client whose
        // segment the dispatcher found corrupt is disconnected: its entry
        // goes, and dropping the socket tells the client.
        let mut watch_segment = true;
        let why = loop {
            tokio::select! {
                r = conn.recv() => match r {
                    Ok(Recv::Msg(_)) => continue,
                    Ok(Recv::Eof) => break "socket closed".to_string(),
                    Err(e) => break format!("socket error: {e}"),
                },
                _ = reg.conn.closed(), if watch_segment => {
                    match reg.conn.broken_reason() {
                        Some(r) => {
                            warn!(client = reg.id, reason = %r, "disconnecting client: its segment is corrupt");
                            break format!("disconnected: corrupt segment: {r}");
                        }
                        // Closed by shutdown: wait for the client to go.
                        None => watch_segment = false,
                    }
                }
            }
        };
        self.remove(reg.id, &why);
    }

    /// Reclaim a client: drop its in-flight requests and segment.
    fn remove(&self, id: u64, why: &str) {
        let entry = {
            let mut st = lock(&self.state);
            let e = st.clients.remove(&id);
            if let Some(e) = e {
                let inflight = e.conn.inflight();
                // Detach first, so the counters are final.
                e.conn.detach();
                st.gone_requests += e.conn.stats.requests.load(Ordering::Relaxed);
                st.gone_errors += e.conn.stats.errors.load(Ordering::Relaxed);
                let lat = e.conn.stats.latency.snapshot();
                st.gone_latency.add(&lat);
                Some((e, inflight))
            } else {
                None
            }
        };
        if let Some((e, inflight)) = entry {
            info!(
                client = id,
                pid = e.pid,
                requests = e.conn.stats.requests.load(Ordering::Relaxed),
                dropped_inflight = inflight,
                reason = why,
                "client gone; segment reclaimed"
            );
        }
    }

    /// Keep one connected default backend per engine (retrying while the
    /// servers are unreachable) so the first client does not wait for it.
    async fn preconnect(self: Arc<Self>) {
        let mut done = vec![false; self.engines.len()];
        let mut attempt = 0u32;
        // Acquire: pairs with the Release store in `run`.
        while !self.draining.load(Ordering::Acquire) && done.iter().any(|d| !d) {
            for (i, e) in self.engines.iter().enumerate() {
                if done[i] {
                    continue;
                }
                match e.connect(&self.cfg.server).await {
                    Ok(b) => {
                        lock(&self.warm).push((i, b));
                        done[i] = true;
                    }
                    Err(err) => {
                        if attempt == 0 {
                            warn!(error = %err.message, "cannot connect to the servers yet; retrying in the background");
                        }
                    }
                }
            }
            attempt += 1;
            if done.iter().any(|d| !d) {
                tokio::time::sleep(self.cfg.server.reconnect.delay(attempt)).await;
            }
        }
    }
}

/// A backend's name in stats and metrics, without secrets: engine index,
/// the auth profiles using it, database, mode and first address
/// (`0:default:db0:standalone:127.0.0.1:6379`).
fn backend_label(pool: usize, profiles: &BTreeSet<String>, b: &Backend) -> String {
    let profiles = profiles.iter().cloned().collect::<Vec<_>>().join("+");
    let mode = match b.mode() {
        vshm_core::config::Mode::Standalone => "standalone",
        vshm_core::config::Mode::Cluster => "cluster",
    };
    let first = b
        .key()
        .endpoints
        .first()
        .map_or_else(|| "-".to_string(), |e| e.to_string());
    format!("{pool}:{profiles}:db{}:{mode}:{first}", b.key().database)
}

fn version_mismatch(client: u32) -> String {
    format!("protocol version mismatch: the client speaks protocol {client}, this vshmd speaks protocol {PROTOCOL_VERSION}")
}

fn limits_exceeded(cfg: &DaemonConfig, st: &State, uid: u32) -> Option<String> {
    let l = &cfg.limits;
    if st.clients.len() >= l.max_clients as usize {
        return Some(format!(
            "too many clients ({}; limits.max_clients)",
            l.max_clients
        ));
    }
    if l.max_clients_per_uid > 0
        && st.clients.values().filter(|c| c.uid == uid).count() >= l.max_clients_per_uid as usize
    {
        return Some(format!(
            "uid {uid} already has {} clients (limits.max_clients_per_uid)",
            l.max_clients_per_uid
        ));
    }
    None
}

/// Connections in their handshake at once (registration or stats, from
/// accept to the answer). More wait in the listen backlog (1024, or the
/// kernel's `somaxconn` if lower), and a client's connect waits for room
/// within its own timeout: connections that send nothing hold at most
/// this many of the daemon's descriptors, each for `handshake_timeout_ms`.
const HANDSHAKE_SLOTS: usize = 256;

/// Accept the next connection once a handshake slot is free. Cancel-safe:
/// dropped before a connection is taken, it takes none and frees its slot.
async fn accept_in_slot(
    listener: &Listener,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(Conn, OwnedSemaphorePermit)> {
    let slot = slots
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    Ok((listener.accept().await?, slot))
}

/// Run until SIGTERM or SIGINT, then drain. `Ok` means a clean exit.
pub async fn run(cfg: DaemonConfig) -> Result<(), String> {
    // Signals first: a SIGTERM right after startup must drain, not kill.
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let metrics = match cfg.metrics_addr {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen on metrics_addr {a}: {e}"))?,
        ),
        None => None,
    };
    let metrics_port = metrics
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port());
    let listener = Listener::bind(
        &cfg.socket_path,
        cfg.socket_mode,
        cfg.socket_group.as_deref(),
    )?;
    let daemon = Daemon::new(cfg, tokio::runtime::Handle::current(), metrics_port);
    let c = &daemon.cfg;
    info!(
        socket = %listener.path().display(),
        mode = format!("{:o}", c.socket_mode),
        allowed_uids = ?daemon.allowed_uids,
        allowed_gids = ?c.allowed_gids,
        servers = ?c.server.addresses,
        server_mode = ?c.server.mode,
        pool_size = c.pool_size,
        metrics = ?metrics.as_ref().and_then(|l| l.local_addr().ok()),
        protocol = PROTOCOL_VERSION,
        "vshmd listening"
    );
    if c.preconnect {
        tokio::spawn(daemon.clone().preconnect());
    }
    if let Some(m) = metrics {
        tokio::spawn(crate::metrics::serve(m, daemon.clone()));
    }
    let handshakes = Arc::new(Semaphore::new(HANDSHAKE_SLOTS));
    let signame = loop {
        tokio::select! {
            r = accept_in_slot(&listener, &handshakes) => match r {
                Ok((conn, slot)) => {
                    tokio::spawn(daemon.clone().serve_socket(conn, slot));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
    };
    // Release: pairs with the Acquire loads in `serve_socket`, `register`
    // and `preconnect`.
    daemon.draining.store(true, Ordering::Release);
    // No new registrations: the socket file goes away with the listener.
    drop(listener);
    let grace = Duration::from_millis(daemon.cfg.shutdown_grace_ms);
    let (clients, inflight) = {
        let st = lock(&daemon.state);
        (
            st.clients.len(),
            st.clients
                .values()
                .map(|c| c.conn.inflight())
                .sum::<usize>(),
        )
    };
    info!(
        signal = signame,
        clients,
        inflight,
        grace_ms = grace.as_millis() as u64,
        "draining"
    );
    let t0 = Instant::now();
    daemon.dispatcher.shutdown(grace).await;
    let left: usize = lock(&daemon.state)
        .clients
        .values()
        .map(|c| c.conn.inflight())
        .sum();
    info!(
        took_ms = t0.elapsed().as_millis() as u64,
        closed_with_inflight = left,
        "drained; exiting"
    );
    Ok(())
}
