//! Pub/sub: the exact, pattern and sharded subscriptions of the clients of
//! one backend, delivered to each client as push records on its completion
//! ring.
//!
//! * **Registry** (`registry.rs`, pure): each subscription key (kind +
//!   channel or pattern) maps to the clients subscribed to it; each client
//!   ([`Subscriber`]) has a [`PushSink`] that writes into its completion
//!   ring. Many clients on one key share one server-side subscription. The
//!   placement says which node owns which key: standalone, the server;
//!   cluster, exact channels and patterns on one "home" primary (`PUBLISH`
//!   reaches every node through the cluster bus) and sharded channels on
//!   the primary serving the channel's slot.
//! * **Links** (`link.rs`): server-side subscriptions live on RESP3
//!   connections of their own, one per node, each reconciled by a task of
//!   its own; a link with no keys left is closed, which drops its
//!   subscriptions server-side.
//! * **Cluster topology** (`topology.rs`): read from the core's one slot
//!   map.
//!
//! This file holds the API ([`PubSub`]) and the shared state, and keeps
//! the links in line with the placement ([`Shared::sync_links`]).
//!
//! Delivery is at most once: messages published while a link is down or
//! moving are lost (Redis keeps no pub/sub backlog). A message is delivered
//! only from the link its key is currently assigned to, so a key that moves
//! between links is never delivered twice.

mod link;
mod registry;
mod topology;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use vshm_protocol::sync::{AtomicU64, Ordering};

use tokio::runtime::Handle;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;
use vshm_protocol::msg::{ClientError, Completion, ErrorKind, SubKind};

use super::cluster::Cluster;
use crate::config::{Config, Endpoint, Protocol};
use link::{run_link, Link};
use registry::{wanted_links, ClusterPlacement, Key, Placement, Registry};

/// Where a client's pub/sub messages go (its completion ring).
pub trait PushSink: Send + Sync + 'static {
    /// Deliver one push. Returns false when the client is gone: its
    /// subscriptions are then removed.
    fn push(&self, c: &Completion) -> bool;
}

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

struct State {
    reg: Registry,
    placement: Placement,
    links: HashMap<Endpoint, Link>,
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
        st.reg.clear();
    }
}

impl PubSub {
    pub(crate) fn new(config: &Config, target: Target, handle: Handle) -> PubSub {
        let mut config = config.clone();
        config.protocol = Protocol::Resp3;
        let cluster = matches!(target, Target::Cluster(_));
        let placement = match &target {
            Target::Standalone(ep) => Placement::Standalone(ep.clone()),
            Target::Cluster(_) => Placement::Cluster(ClusterPlacement::default()),
        };
        let (progress, _) = watch::channel(0);
        let shared = Arc::new_cyclic(|me: &Weak<Shared>| Shared {
            me: me.clone(),
            config,
            target,
            handle,
            state: Mutex::new(State {
                reg: Registry::default(),
                placement,
                links: HashMap::new(),
                stale: cluster,
                topology_task: None,
                closed: false,
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
        self.shared.lock().reg.add_client(id, sink);
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
            let Some(added) = st.reg.subscribe(id, &keys) else {
                return Err(ClientError::new(ErrorKind::Closing, "client is gone"));
            };
            s.sync_links(st);
            added
        };
        loop {
            rx.borrow_and_update();
            let waiting = {
                let st = s.lock();
                let mut waiting = None;
                for k in &keys {
                    if let Some(err) = st.reg.subs.get(k).and_then(|e| e.failed.clone()) {
                        drop(st);
                        s.rollback(id, &added);
                        return Err(err);
                    }
                    if waiting.is_none() && !s.is_active(&st, k) {
                        waiting = Some(k.clone());
                    }
                }
                match waiting {
                    None => return Ok(st.reg.count(id)),
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
        let Some(n) = st.reg.unsubscribe(id, kind, channels) else {
            return Err(ClientError::new(ErrorKind::Closing, "client is gone"));
        };
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

    fn is_active(&self, st: &State, key: &Key) -> bool {
        st.placement.assign(key).is_some_and(|a| {
            st.links
                .get(&a)
                .is_some_and(|l| l.generation != 0 && l.active.contains(key))
        })
    }

    fn not_active_error(&self, key: &Key, bound: Duration) -> ClientError {
        let st = self.lock();
        let name = String::from_utf8_lossy(&key.1);
        let cmd = sub_command(key.0, true);
        match st.placement.assign(key) {
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
        st.reg.remove_keys(id, added.iter().cloned());
        self.sync_links(st);
    }

    fn remove_client(&self, id: u64) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if !st.reg.remove_client(id) {
            return;
        }
        self.sync_links(st);
    }

    /// Make the links match the assignment: start the missing ones, close
    /// the ones no key is assigned to, wake the others to reconcile.
    fn sync_links(&self, st: &mut State) {
        if st.closed {
            return;
        }
        if self.is_cluster() {
            if !st.reg.subs.is_empty() {
                self.ensure_topology_task(st);
            }
            let homeless = st.reg.subs.keys().any(|k| k.0 != SubKind::Sharded);
            if let (true, Some(c)) = (homeless, st.placement.cluster()) {
                if c.choose_home(Instant::now(), |n| rand::random_range(0..n)) {
                    debug!(home = ?c.home.as_ref().map(|e| e.to_string()), "pub/sub home node");
                }
            }
        }
        let (wanted, unassigned) = wanted_links(&st.reg, &st.placement);
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
}
