//! Pub/sub: the exact, pattern and sharded subscriptions of the clients of
//! one backend, delivered to each client as push records on its completion
//! ring.
//!
//! * **Registry.** Each subscription key (kind + channel or pattern) maps to
//!   the clients subscribed to it; each client ([`Subscriber`]) has a
//!   [`PushSink`] that writes into its completion ring. Many clients on one
//!   key share one server-side subscription.
//! * **Links.** Server-side subscriptions live on RESP3 connections of
//!   their own ("links"), one per node: standalone, one link to the
//!   server; cluster, exact channels and patterns on one "home" primary
//!   (`PUBLISH` reaches every node through the cluster bus) and sharded
//!   channels on the primary serving the channel's slot.
//! * **Reconciliation.** A task per link keeps the link's server-side
//!   subscriptions equal to the keys assigned to its node: it subscribes
//!   what is missing, unsubscribes what nobody wants, and when its
//!   connection breaks (server restart, `CLIENT KILL`, failover) it
//!   reconnects with the configured backoff and subscribes everything
//!   again. A link with no keys left is closed, which drops its
//!   subscriptions server-side.
//! * **Truth.** What is active is what the server confirmed: the
//!   `subscribe`/`unsubscribe` pushes (including the `sunsubscribe` a node
//!   sends when it loses a slot) update each link's active set, in wire
//!   order.
//! * **Cluster topology.** Slot owners come from `CLUSTER SLOTS`, fetched
//!   when first needed, when a link fails, when a node unsubscribes a
//!   sharded channel by itself, and every `topology_refresh_interval_ms`;
//!   a `MOVED` reply to `SSUBSCRIBE` is followed at once.
//!
//! Delivery is at most once: messages published while a link is down or
//! moving are lost (Redis keeps no pub/sub backlog). A message is delivered
//! only from the link its key is currently assigned to, so a key that moves
//! between links is never delivered twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind};
use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use vshm_protocol::msg::{ClientError, Completion, ErrorKind, SubKind, Value};

use super::cluster::Cluster;
use super::standalone;
use crate::config::{Config, Endpoint, Protocol};
use crate::keys::{slot_of, SLOTS};
use crate::topology::Shard;
use crate::value::{convert, server_error, server_error_text};

/// An idle link is checked with a `PING` this often.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Most (un)subscribe commands sent in one pipeline.
const BATCH: usize = 256;
/// Pause before retrying keys that got a transient answer (TRYAGAIN,
/// CLUSTERDOWN, a redirect to the same node, no confirmation).
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Gap between failed topology fetches.
const TOPOLOGY_RETRY: Duration = Duration::from_millis(200);
/// Topology check interval while a link cannot connect.
const OUTAGE_REFRESH: Duration = Duration::from_millis(500);
/// How long a node whose link failed is not chosen as the home node.
const AVOID_FOR: Duration = Duration::from_secs(10);

/// Where a client's pub/sub messages go (its completion ring).
pub trait PushSink: Send + Sync + 'static {
    /// Deliver one push. Returns false when the client is gone: its
    /// subscriptions are then removed.
    fn push(&self, c: &Completion) -> bool;
}

/// A subscription: kind and channel (or pattern).
type Key = (SubKind, Vec<u8>);

fn sub_command(kind: SubKind, subscribe: bool) -> &'static str {
    match (kind, subscribe) {
        (SubKind::Exact, true) => "SUBSCRIBE",
        (SubKind::Exact, false) => "UNSUBSCRIBE",
        (SubKind::Pattern, true) => "PSUBSCRIBE",
        (SubKind::Pattern, false) => "PUNSUBSCRIBE",
        (SubKind::Sharded, true) => "SSUBSCRIBE",
        (SubKind::Sharded, false) => "SUNSUBSCRIBE",
    }
}

fn bytes(v: &redis::Value) -> Option<Vec<u8>> {
    match v {
        redis::Value::BulkString(b) => Some(b.clone()),
        redis::Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

/// `"MOVED 1234 host:port"` -> (1234, host:port).
fn parse_moved(details: &str) -> Option<(u16, Endpoint)> {
    let mut it = details.split_whitespace();
    let slot = it.next()?.parse::<u16>().ok().filter(|s| *s < SLOTS)?;
    let ep = crate::config::parse_endpoint(it.next()?).ok()?;
    Some((slot, ep))
}

/// The deployment the links go to.
pub(crate) enum Target {
    Standalone(Endpoint),
    Cluster(Arc<Cluster>),
}

/// One client's pub/sub identity on one backend (cheap to clone). When the
/// last clone is dropped, the client's subscriptions are removed (and
/// unsubscribed server-side when no other client holds them).
#[derive(Clone)]
pub struct Subscriber(Arc<SubInner>);

struct SubInner {
    id: u64,
    shared: Weak<Shared>,
}

impl Drop for SubInner {
    fn drop(&mut self) {
        if let Some(s) = self.shared.upgrade() {
            s.remove_client(self.id);
        }
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("id", &self.0.id)
            .finish()
    }
}

impl Subscriber {
    /// The client's id within its backend.
    pub fn id(&self) -> u64 {
        self.0.id
    }
}

#[derive(Default)]
struct Entry {
    /// Clients subscribed (never empty: empty entries are removed).
    clients: HashSet<u64>,
    /// The server refused the subscription (ACL, ...): waiting subscribers
    /// fail with this; the next subscribe request clears it and retries.
    failed: Option<ClientError>,
}

struct ClientState {
    sink: Arc<dyn PushSink>,
    keys: HashSet<Key>,
}

struct Link {
    /// The connection generation whose confirmations count; 0 while not
    /// connected.
    generation: u64,
    /// Keys the server confirmed on this connection.
    active: HashSet<Key>,
    last_error: Option<String>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    subs: HashMap<Key, Entry>,
    clients: HashMap<u64, ClientState>,
    links: HashMap<Endpoint, Link>,
    /// Cluster: the topology last fetched, and the MOVED answers since.
    shards: Vec<Shard>,
    moved: HashMap<u16, Endpoint>,
    /// Cluster: the node carrying exact and pattern subscriptions.
    home: Option<Endpoint>,
    /// Cluster: nodes whose link failed recently (not chosen as home).
    avoid: HashMap<Endpoint, Instant>,
    /// Cluster: the topology must be fetched.
    stale: bool,
    topology_task: Option<JoinHandle<()>>,
    closed: bool,
}

struct Shared {
    me: Weak<Shared>,
    /// The backend's config with `protocol = resp3` (pushes need RESP3).
    config: Config,
    target: Target,
    handle: Handle,
    state: Mutex<State>,
    /// Bumped whenever an active set or a failure changes; subscribe
    /// requests wait on it.
    progress: watch::Sender<u64>,
    /// Wakes the topology task (cluster).
    refresh: Notify,
    next_id: AtomicU64,
    next_generation: AtomicU64,
}

/// The pub/sub manager of one backend.
pub(crate) struct PubSub {
    shared: Arc<Shared>,
}

impl Drop for PubSub {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.closed = true;
        for (_, l) in st.links.drain() {
            l.task.abort();
        }
        if let Some(t) = st.topology_task.take() {
            t.abort();
        }
        st.subs.clear();
        st.clients.clear();
    }
}

impl PubSub {
    pub(crate) fn new(config: &Config, target: Target, handle: Handle) -> PubSub {
        let mut config = config.clone();
        config.protocol = Protocol::Resp3;
        let cluster = matches!(target, Target::Cluster(_));
        let (progress, _) = watch::channel(0);
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            config,
            target,
            handle,
            state: Mutex::new(State {
                stale: cluster,
                ..State::default()
            }),
            progress,
            refresh: Notify::new(),
            next_id: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
        });
        PubSub { shared }
    }

    /// Register a client whose messages go to `sink`.
    pub(crate) fn subscriber(&self, sink: Arc<dyn PushSink>) -> Subscriber {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared.lock().clients.insert(
            id,
            ClientState {
                sink,
                keys: HashSet::new(),
            },
        );
        Subscriber(Arc::new(SubInner {
            id,
            shared: Arc::downgrade(&self.shared),
        }))
    }

    fn owns(&self, sub: &Subscriber) -> Result<(), ClientError> {
        if std::ptr::eq(sub.0.shared.as_ptr(), Arc::as_ptr(&self.shared)) {
            Ok(())
        } else {
            Err(ClientError::new(
                ErrorKind::InvalidRequest,
                "this subscriber belongs to another backend",
            ))
        }
    }

    /// Subscribe a client; returns once the server confirmed every key
    /// (or it already was active for another client). On an error (the
    /// server refused, or not confirmed by `deadline`) the keys this call
    /// added are removed again: an error means "not subscribed".
    pub(crate) async fn subscribe(
        &self,
        sub: &Subscriber,
        kind: SubKind,
        channels: &[Vec<u8>],
        deadline: Instant,
        bound: Duration,
    ) -> Result<usize, ClientError> {
        self.owns(sub)?;
        if channels.is_empty() {
            return Err(ClientError::new(
                ErrorKind::InvalidRequest,
                format!("{} needs at least one channel", sub_command(kind, true)),
            ));
        }
        let id = sub.id();
        let mut keys: Vec<Key> = channels.iter().map(|c| (kind, c.clone())).collect();
        keys.sort_by(|a, b| a.1.cmp(&b.1));
        keys.dedup();
        let s = &self.shared;
        let mut rx = s.progress.subscribe();
        let added = {
            let mut guard = s.lock();
            let st = &mut *guard;
            if st.closed {
                return Err(ClientError::new(ErrorKind::Closing, "backend is closing"));
            }
            let Some(cs) = st.clients.get_mut(&id) else {
                return Err(ClientError::new(ErrorKind::Closing, "client is gone"));
            };
            let added: Vec<Key> = keys
                .iter()
                .filter(|k| cs.keys.insert((*k).clone()))
                .cloned()
                .collect();
            for k in &keys {
                let e = st.subs.entry(k.clone()).or_default();
                e.clients.insert(id);
                e.failed = None;
            }
            s.sync_links(st);
            added
        };
        loop {
            rx.borrow_and_update();
            let waiting = {
                let st = s.lock();
                let mut waiting = None;
                for k in &keys {
                    if let Some(err) = st.subs.get(k).and_then(|e| e.failed.clone()) {
                        drop(st);
                        s.rollback(id, &added);
                        return Err(err);
                    }
                    if waiting.is_none() && !s.is_active(&st, k) {
                        waiting = Some(k.clone());
                    }
                }
                match waiting {
                    None => return Ok(st.clients.get(&id).map_or(0, |c| c.keys.len())),
                    Some(k) => k,
                }
            };
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => {
                    return Err(ClientError::new(ErrorKind::Closing, "backend is closing"))
                }
                Err(_) => {
                    let err = s.not_active_error(&waiting, bound);
                    s.rollback(id, &added);
                    return Err(err);
                }
            }
        }
    }

    /// Unsubscribe a client (an empty list: from every key of that kind).
    /// Delivery to this client stops at once; the server-side subscription
    /// ends in the background when no other client holds it.
    pub(crate) fn unsubscribe(
        &self,
        sub: &Subscriber,
        kind: SubKind,
        channels: &[Vec<u8>],
    ) -> Result<usize, ClientError> {
        self.owns(sub)?;
        let id = sub.id();
        let s = &self.shared;
        let mut guard = s.lock();
        let st = &mut *guard;
        let Some(cs) = st.clients.get_mut(&id) else {
            return Err(ClientError::new(ErrorKind::Closing, "client is gone"));
        };
        let keys: Vec<Key> = if channels.is_empty() {
            cs.keys.iter().filter(|k| k.0 == kind).cloned().collect()
        } else {
            channels.iter().map(|c| (kind, c.clone())).collect()
        };
        for k in keys {
            if cs.keys.remove(&k) {
                if let Some(e) = st.subs.get_mut(&k) {
                    e.clients.remove(&id);
                    if e.clients.is_empty() {
                        st.subs.remove(&k);
                    }
                }
            }
        }
        let n = cs.keys.len();
        s.sync_links(st);
        Ok(n)
    }

    /// Server-side subscriptions currently confirmed, per node (tests and
    /// diagnostics).
    pub(crate) fn active(&self) -> Vec<(String, usize)> {
        let st = self.shared.lock();
        let mut v: Vec<(String, usize)> = st
            .links
            .iter()
            .map(|(a, l)| (a.to_string(), l.active.len()))
            .collect();
        v.sort();
        v
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.progress.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// The node a key's server-side subscription belongs on.
    fn assign(&self, st: &State, key: &Key) -> Option<Endpoint> {
        match &self.target {
            Target::Standalone(ep) => Some(ep.clone()),
            Target::Cluster(_) => match key.0 {
                SubKind::Exact | SubKind::Pattern => st.home.clone(),
                SubKind::Sharded => {
                    let slot = slot_of(&key.1);
                    if let Some(ep) = st.moved.get(&slot) {
                        return Some(ep.clone());
                    }
                    st.shards
                        .iter()
                        .find(|s| s.start <= slot && slot <= s.end)
                        .map(|s| s.primary.clone().into())
                }
            },
        }
    }

    fn is_active(&self, st: &State, key: &Key) -> bool {
        self.assign(st, key).is_some_and(|a| {
            st.links
                .get(&a)
                .is_some_and(|l| l.generation != 0 && l.active.contains(key))
        })
    }

    fn not_active_error(&self, key: &Key, bound: Duration) -> ClientError {
        let st = self.lock();
        let name = String::from_utf8_lossy(&key.1);
        let cmd = sub_command(key.0, true);
        match self.assign(&st, key) {
            None => ClientError::new(
                ErrorKind::Connection,
                format!("{cmd} {name}: the cluster topology is not known yet"),
            ),
            Some(a) => match st.links.get(&a).and_then(|l| l.last_error.clone()) {
                Some(e) if st.links.get(&a).is_some_and(|l| l.generation == 0) => {
                    ClientError::new(ErrorKind::Connection, format!("{cmd} {name}: {a}: {e}"))
                }
                _ => ClientError::new(
                    ErrorKind::Timeout,
                    format!("{cmd} timed out after {} ms", bound.as_millis()),
                ),
            },
        }
    }

    fn rollback(&self, id: u64, added: &[Key]) {
        if added.is_empty() {
            return;
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        if let Some(cs) = st.clients.get_mut(&id) {
            for k in added {
                cs.keys.remove(k);
                if let Some(e) = st.subs.get_mut(k) {
                    e.clients.remove(&id);
                    if e.clients.is_empty() {
                        st.subs.remove(k);
                    }
                }
            }
        }
        self.sync_links(st);
    }

    fn remove_client(&self, id: u64) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(cs) = st.clients.remove(&id) else {
            return;
        };
        for k in cs.keys {
            if let Some(e) = st.subs.get_mut(&k) {
                e.clients.remove(&id);
                if e.clients.is_empty() {
                    st.subs.remove(&k);
                }
            }
        }
        self.sync_links(st);
    }

    /// Cluster: keep the home node unless it is gone from the topology or
    /// its link failed recently; otherwise pick a random primary (avoiding
    /// recently failed ones when possible).
    fn choose_home(&self, st: &mut State) {
        let now = Instant::now();
        st.avoid
            .retain(|_, t| now.saturating_duration_since(*t) < AVOID_FOR);
        let mut primaries: Vec<Endpoint> =
            st.shards.iter().map(|s| s.primary.clone().into()).collect();
        primaries.sort();
        primaries.dedup();
        if let Some(h) = &st.home {
            if primaries.contains(h) && !st.avoid.contains_key(h) {
                return;
            }
        }
        let good: Vec<&Endpoint> = primaries
            .iter()
            .filter(|p| !st.avoid.contains_key(*p))
            .collect();
        let pool: Vec<&Endpoint> = if good.is_empty() {
            primaries.iter().collect()
        } else {
            good
        };
        let new = if pool.is_empty() {
            None
        } else {
            Some(pool[rand::random_range(0..pool.len())].clone())
        };
        if new != st.home {
            debug!(home = ?new.as_ref().map(|e| e.to_string()), "pub/sub home node");
            st.home = new;
        }
    }

    fn ensure_topology_task(&self, st: &mut State) {
        if !self.is_cluster() || st.closed || st.topology_task.is_some() {
            return;
        }
        let every = (self.config.topology_refresh_interval_ms > 0)
            .then(|| Duration::from_millis(u64::from(self.config.topology_refresh_interval_ms)));
        st.topology_task = Some(self.handle.spawn(run_topology(self.me.clone(), every)));
    }

    fn request_refresh(&self, st: &mut State) {
        st.stale = true;
        self.ensure_topology_task(st);
        self.refresh.notify_one();
    }

    /// Make the links match the assignment: start the missing ones, close
    /// the ones no key is assigned to, wake the others to reconcile.
    fn sync_links(&self, st: &mut State) {
        if st.closed {
            return;
        }
        if self.is_cluster() {
            if !st.subs.is_empty() {
                self.ensure_topology_task(st);
            }
            if st.subs.keys().any(|k| k.0 != SubKind::Sharded) {
                self.choose_home(st);
            }
        }
        let mut wanted = HashSet::new();
        let mut unassigned = false;
        for key in st.subs.keys() {
            match self.assign(st, key) {
                Some(a) => {
                    wanted.insert(a);
                }
                None => unassigned = true,
            }
        }
        if unassigned {
            self.request_refresh(st);
        }
        st.links.retain(|a, l| {
            let keep = wanted.contains(a);
            if !keep {
                debug!(node = %a, "closing pub/sub link");
                l.task.abort();
            }
            keep
        });
        for a in wanted {
            match st.links.get(&a) {
                Some(l) => l.wake.notify_one(),
                None => {
                    let wake = Arc::new(Notify::new());
                    let task =
                        self.handle
                            .spawn(run_link(self.me.clone(), a.clone(), wake.clone()));
                    st.links.insert(
                        a,
                        Link {
                            generation: 0,
                            active: HashSet::new(),
                            last_error: None,
                            wake,
                            task,
                        },
                    );
                }
            }
        }
    }

    /// A link connected (generation `g`): nothing is subscribed on it yet.
    fn link_up(&self, addr: &Endpoint, g: u64) -> bool {
        let mut st = self.lock();
        match st.links.get_mut(addr) {
            Some(l) => {
                l.generation = g;
                l.active.clear();
                l.last_error = None;
                true
            }
            None => false,
        }
    }

    /// A link is down (connection `g` broke, or connecting failed).
    fn link_down(&self, addr: &Endpoint, g: Option<u64>, why: String) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(l) = st.links.get_mut(addr) else {
            return;
        };
        if g.is_some_and(|g| g != l.generation) {
            return;
        }
        l.generation = 0;
        l.active.clear();
        l.last_error = Some(why);
        if self.is_cluster() {
            // The node may be gone (failover): look at the topology again,
            // and carry exact/pattern subscriptions elsewhere meanwhile.
            st.avoid.insert(addr.clone(), Instant::now());
            self.request_refresh(st);
            if st.home.as_ref() == Some(addr) {
                self.sync_links(st);
            }
        }
        drop(guard);
        self.bump();
    }

    /// What link `addr` (connection `g`) must subscribe and unsubscribe;
    /// `None` if that connection is no longer the link's.
    fn diff(&self, addr: &Endpoint, g: u64) -> Option<(Vec<Key>, Vec<Key>)> {
        let st = self.lock();
        let l = st.links.get(addr)?;
        if l.generation != g {
            return None;
        }
        let mut subs = Vec::new();
        for (k, e) in &st.subs {
            if e.failed.is_none()
                && !l.active.contains(k)
                && self.assign(&st, k).as_ref() == Some(addr)
            {
                subs.push(k.clone());
            }
        }
        let unsubs = l
            .active
            .iter()
            .filter(|k| !st.subs.contains_key(*k) || self.assign(&st, k).as_ref() != Some(addr))
            .cloned()
            .collect();
        Some((subs, unsubs))
    }

    /// Act on the replies to one (un)subscribe pipeline. The confirmations
    /// themselves were applied by the push handler already. Returns true
    /// when the link should pause before its next round (some key did not
    /// reach the wanted state for a transient reason).
    fn apply_replies(
        &self,
        addr: &Endpoint,
        batch: &[(Key, bool)],
        replies: &[redis::Value],
    ) -> bool {
        let mut guard = self.lock();
        let st = &mut *guard;
        let mut pause = replies.len() != batch.len();
        let mut resync = false;
        for ((key, subscribe), reply) in batch.iter().zip(replies) {
            let redis::Value::ServerError(e) = reply else {
                continue;
            };
            if !*subscribe {
                debug!(node = %addr, error = %server_error_text(e), "unsubscribe refused");
                continue;
            }
            match e.code() {
                "MOVED" => {
                    match e.details().and_then(parse_moved) {
                        Some((slot, to)) if &to != addr => {
                            debug!(slot, from = %addr, to = %to, "SSUBSCRIBE moved");
                            st.moved.insert(slot, to);
                            resync = true;
                        }
                        _ => pause = true,
                    }
                    self.request_refresh(st);
                }
                "ASK" | "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "LOADING" | "BUSY" => {
                    pause = true;
                    if self.is_cluster() {
                        self.request_refresh(st);
                    }
                }
                _ => {
                    if let Some(entry) = st.subs.get_mut(key) {
                        warn!(node = %addr, error = %server_error_text(e), "subscription refused");
                        entry.failed = Some(server_error(e));
                    }
                }
            }
        }
        // A key that was answered without error but is still not active
        // (its confirmation was taken for another reply): try again later.
        if let Some(l) = st.links.get(addr) {
            for ((key, subscribe), reply) in batch.iter().zip(replies) {
                if *subscribe
                    && !matches!(reply, redis::Value::ServerError(_))
                    && !l.active.contains(key)
                    && st.subs.contains_key(key)
                {
                    pause = true;
                }
            }
        }
        if resync {
            self.sync_links(st);
        }
        drop(guard);
        self.bump();
        pause
    }

    /// A push from link `addr`, connection `g`.
    fn on_push(&self, addr: &Endpoint, g: u64, info: PushInfo, sig: &Signals, wake: &Notify) {
        sig.traffic.fetch_add(1, Ordering::Relaxed);
        let c = match info.kind {
            PushKind::Disconnection => {
                sig.dead.store(true, Ordering::Release);
                wake.notify_one();
                return;
            }
            PushKind::Message | PushKind::PMessage | PushKind::SMessage => {
                self.deliver(addr, g, info);
                return;
            }
            PushKind::Subscribe => (SubKind::Exact, true),
            PushKind::PSubscribe => (SubKind::Pattern, true),
            PushKind::SSubscribe => (SubKind::Sharded, true),
            PushKind::Unsubscribe => (SubKind::Exact, false),
            PushKind::PUnsubscribe => (SubKind::Pattern, false),
            PushKind::SUnsubscribe => (SubKind::Sharded, false),
            _ => return,
        };
        // A nil channel: an unsubscribe-all with nothing to unsubscribe.
        let Some(channel) = info.data.first().and_then(bytes) else {
            return;
        };
        let (kind, subscribed) = c;
        let key = (kind, channel);
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(l) = st.links.get_mut(addr) else {
            return;
        };
        if l.generation != g {
            return;
        }
        if subscribed {
            // Subscribers are woken when the link has the whole batch's
            // answers (`apply_replies`), not once per confirmation.
            l.active.insert(key);
            return;
        }
        l.active.remove(&key);
        if st.subs.contains_key(&key) {
            // The server dropped a subscription we still want (the slot
            // moved away, the node became a replica): find out where it
            // belongs now.
            l.wake.notify_one();
            if self.is_cluster() {
                info!(node = %addr, channel = %String::from_utf8_lossy(&key.1), "server ended a subscription; re-subscribing");
                self.request_refresh(st);
            }
        }
        drop(guard);
        self.bump();
    }

    /// Hand a message to the clients subscribed to its key.
    fn deliver(&self, addr: &Endpoint, g: u64, info: PushInfo) {
        let mut data = info.data;
        let (kind, name, out_kind) = match info.kind {
            PushKind::Message if data.len() >= 2 => (SubKind::Exact, bytes(&data[0]), "message"),
            PushKind::SMessage if data.len() >= 2 => {
                (SubKind::Sharded, bytes(&data[0]), "smessage")
            }
            PushKind::PMessage if data.len() >= 3 => {
                // The server sends [pattern, channel, payload]; clients get
                // [channel, pattern, payload]: the channel always first,
                // the payload always last.
                data.swap(0, 1);
                (SubKind::Pattern, bytes(&data[1]), "pmessage")
            }
            _ => return,
        };
        let Some(name) = name else { return };
        let key = (kind, name);
        let sinks: Vec<(u64, Arc<dyn PushSink>)> = {
            let st = self.lock();
            if st.links.get(addr).is_none_or(|l| l.generation != g)
                || self.assign(&st, &key).as_ref() != Some(addr)
            {
                return;
            }
            let Some(e) = st.subs.get(&key) else { return };
            e.clients
                .iter()
                .filter_map(|id| st.clients.get(id).map(|c| (*id, c.sink.clone())))
                .collect()
        };
        if sinks.is_empty() {
            return;
        }
        let c = Completion::Push(Value::Push {
            kind: out_kind.as_bytes().to_vec(),
            data: data.into_iter().map(convert).collect(),
        });
        for (id, sink) in sinks {
            if !sink.push(&c) {
                debug!(
                    client = id,
                    "pub/sub client gone; removing its subscriptions"
                );
                self.remove_client(id);
            }
        }
    }

    async fn open_link(
        &self,
        addr: &Endpoint,
        g: u64,
        sig: &Arc<Signals>,
        wake: &Arc<Notify>,
    ) -> Result<MultiplexedConnection, String> {
        let client = standalone::client_for(&self.config, addr).map_err(|e| e.message)?;
        let me = self.me.clone();
        let (a, d, w) = (addr.clone(), sig.clone(), wake.clone());
        let cfg = standalone::connection_config(&self.config).set_push_sender(
            move |info: PushInfo| -> Result<(), ()> {
                if let Some(s) = me.upgrade() {
                    s.on_push(&a, g, info, &d, &w);
                }
                Ok(())
            },
        );
        standalone::open(
            &client,
            &cfg,
            self.config.client_name.as_deref(),
            self.config.connection_timeout(),
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Fetch the slot owners (cluster).
    async fn fetch_topology(&self) -> Result<Vec<Shard>, ClientError> {
        let Target::Cluster(c) = &self.target else {
            return Ok(Vec::new());
        };
        c.shards(true).await
    }
}

/// Signals from one link connection's push handler.
#[derive(Default)]
struct Signals {
    /// redis-rs reported the connection closed.
    dead: AtomicBool,
    /// Pushes received (a link busy delivering a flood answers commands
    /// late, behind the messages, but is alive).
    traffic: AtomicU64,
}

/// Await `fut` on a link: gives up (`None`) after `bound` without an
/// answer *and* without any push arriving meanwhile; while messages keep
/// arriving, the connection is alive and the wait goes on.
async fn while_alive<F: std::future::Future>(
    fut: F,
    bound: Duration,
    sig: &Signals,
) -> Option<F::Output> {
    tokio::pin!(fut);
    loop {
        let seen = sig.traffic.load(Ordering::Relaxed);
        tokio::select! {
            r = &mut fut => return Some(r),
            _ = tokio::time::sleep(bound) => {
                if sig.dead.load(Ordering::Acquire) || sig.traffic.load(Ordering::Relaxed) == seen {
                    return None;
                }
            }
        }
    }
}

/// Keeps one link's subscriptions in line with its assigned keys,
/// reconnecting with the configured backoff.
async fn run_link(weak: Weak<Shared>, addr: Endpoint, wake: Arc<Notify>) {
    let mut failures: u32 = 0;
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let g = shared.next_generation.fetch_add(1, Ordering::Relaxed);
        let sig = Arc::new(Signals::default());
        match shared.open_link(&addr, g, &sig, &wake).await {
            Err(e) => {
                if failures == 0 {
                    warn!(node = %addr, error = %e, "pub/sub link cannot connect; retrying");
                } else {
                    debug!(node = %addr, error = %e, attempt = failures, "pub/sub link cannot connect");
                }
                shared.link_down(&addr, None, format!("cannot connect: {e}"));
                let delay = shared.config.reconnect.delay(failures);
                failures = failures.saturating_add(1);
                drop(shared);
                tokio::time::sleep(delay).await;
            }
            Ok(mut conn) => {
                if !shared.link_up(&addr, g) {
                    return;
                }
                if failures > 0 {
                    info!(node = %addr, attempts = failures + 1, "pub/sub link reconnected; re-subscribing");
                }
                failures = 0;
                drop(shared);
                let why = serve_link(&weak, &addr, g, &mut conn, &sig, &wake).await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                warn!(node = %addr, reason = %why, "pub/sub link lost; reconnecting");
                shared.link_down(&addr, Some(g), why);
            }
        }
    }
}

/// Reconcile one connected link until its connection breaks; returns why.
async fn serve_link(
    weak: &Weak<Shared>,
    addr: &Endpoint,
    g: u64,
    conn: &mut MultiplexedConnection,
    sig: &Signals,
    wake: &Notify,
) -> String {
    let mut traffic_seen = sig.traffic.load(Ordering::Relaxed);
    loop {
        if sig.dead.load(Ordering::Acquire) {
            return "connection closed".into();
        }
        let Some(shared) = weak.upgrade() else {
            return "backend closed".into();
        };
        let bound = shared.config.connection_timeout();
        let Some((subs, unsubs)) = shared.diff(addr, g) else {
            return "replaced".into();
        };
        drop(shared);
        if subs.is_empty() && unsubs.is_empty() {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(PING_EVERY) => {
                    // Messages arriving prove the link alive; PING only
                    // a quiet one.
                    let now = sig.traffic.load(Ordering::Relaxed);
                    if now != traffic_seen {
                        traffic_seen = now;
                        continue;
                    }
                    match while_alive(conn.send_packed_command(&redis::cmd("PING")), bound, sig).await {
                        None => return "health check timed out".into(),
                        Some(Err(e)) if e.is_io_error() || e.is_unrecoverable_error() => {
                            return format!("health check failed: {e}");
                        }
                        Some(_) => {}
                    }
                }
            }
            continue;
        }
        let batch: Vec<(Key, bool)> = unsubs
            .into_iter()
            .map(|k| (k, false))
            .chain(subs.into_iter().map(|k| (k, true)))
            .take(BATCH)
            .collect();
        let mut pipe = redis::pipe();
        for ((kind, channel), subscribe) in &batch {
            // One channel per command: each is answered by exactly one
            // confirmation (or one error), which keeps redis-rs's reply
            // matching in step.
            pipe.cmd(sub_command(*kind, *subscribe))
                .arg(channel.as_slice());
        }
        let replies =
            match while_alive(conn.send_packed_commands(&pipe, 0, batch.len()), bound, sig).await {
                None => return "subscribe commands timed out".into(),
                Some(Err(e)) => return format!("subscribe commands failed: {e}"),
                Some(Ok(v)) => v,
            };
        let Some(shared) = weak.upgrade() else {
            return "backend closed".into();
        };
        let pause = shared.apply_replies(addr, &batch, &replies);
        drop(shared);
        if pause {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// Cluster: fetch the topology when asked (stale) and periodically; re-
/// assign keys and re-link after each fetch.
async fn run_topology(weak: Weak<Shared>, every: Option<Duration>) {
    let mut last_fetch: Option<Instant> = None;
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if shared.lock().stale {
            // At most one fetch per TOPOLOGY_RETRY, however often asked
            // (a slot nobody serves keeps asking).
            if let Some(t) = last_fetch {
                tokio::time::sleep_until(t + TOPOLOGY_RETRY).await;
            }
            last_fetch = Some(Instant::now());
            match shared.fetch_topology().await {
                Ok(shards) => {
                    let mut guard = shared.lock();
                    let st = &mut *guard;
                    st.stale = false;
                    if st.shards != shards {
                        debug!(shards = shards.len(), "pub/sub topology changed");
                    }
                    st.shards = shards;
                    st.moved.clear();
                    shared.sync_links(st);
                    drop(guard);
                    shared.bump();
                }
                Err(e) => {
                    debug!(error = %e, "pub/sub topology fetch failed");
                    continue;
                }
            }
        }
        // While a link cannot connect (its node may be failing over), look
        // again soon: the promotion of a replica produces no event here.
        let link_down = shared
            .lock()
            .links
            .values()
            .any(|l| l.generation == 0 && l.last_error.is_some());
        let every = match (every, link_down) {
            (Some(e), true) => Some(e.min(OUTAGE_REFRESH)),
            (None, true) => Some(OUTAGE_REFRESH),
            (e, false) => e,
        };
        let refresh = shared.refresh.notified();
        match every {
            Some(d) => {
                tokio::select! {
                    _ = refresh => {}
                    _ = tokio::time::sleep(d) => shared.lock().stale = true,
                }
            }
            None => refresh.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_moved() {
        assert_eq!(
            parse_moved("3999 127.0.0.1:6381"),
            Some((
                3999,
                Endpoint {
                    host: "127.0.0.1".into(),
                    port: 6381
                }
            ))
        );
        assert_eq!(parse_moved("99999 127.0.0.1:6381"), None);
        assert_eq!(parse_moved("x"), None);
    }
}
