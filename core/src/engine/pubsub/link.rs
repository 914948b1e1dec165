//! The links: one RESP3 connection (a `redis` crate multiplexed connection
//! with a push handler) per node that carries server-side subscriptions.
//!
//! A task per link ([`run_link`]) keeps the link's server-side
//! subscriptions equal to the keys assigned to its node
//! ([`link_diff`]): it subscribes what is missing, unsubscribes what nobody
//! wants, and when its connection breaks (server restart, `CLIENT KILL`,
//! failover) it reconnects with the configured backoff and subscribes
//! everything again. What is active is what the server confirmed: the
//! `subscribe`/`unsubscribe` pushes (including the `sunsubscribe` a node
//! sends when it loses a slot) update each link's active set, in wire
//! order. Messages are delivered only from the link their key is assigned
//! to.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;
use vshm_protocol::sync::{AtomicBool, AtomicU64, Ordering};

use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use vshm_protocol::msg::{Completion, SubKind, Value};

use super::registry::{link_diff, Key};
use super::{sub_command, PushSink, Shared};
use crate::config::Endpoint;
use crate::engine::standalone;
use crate::resp::{parse_redirect, Redirect};
use crate::value::{convert, server_error, server_error_text};

/// An idle link is checked with a `PING` this often.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Most (un)subscribe commands sent in one pipeline.
const BATCH: usize = 256;
/// Pause before retrying keys that got a transient answer (TRYAGAIN,
/// CLUSTERDOWN, a redirect to the same node, no confirmation).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

pub(super) struct Link {
    /// The connection generation whose confirmations count; 0 while not
    /// connected.
    pub generation: u64,
    /// Keys the server confirmed on this connection.
    pub active: HashSet<Key>,
    pub last_error: Option<String>,
    pub wake: Arc<Notify>,
    pub task: JoinHandle<()>,
}

fn bytes(v: &redis::Value) -> Option<Vec<u8>> {
    match v {
        redis::Value::BulkString(b) => Some(b.clone()),
        redis::Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

/// The slot and node of a `MOVED` answer's details (`"1234 host:port"`,
/// parsed by the core's one redirect parser); an empty host is the node
/// that answered (`from`).
fn moved_to(details: &str, from: &Endpoint) -> Option<(u16, Endpoint)> {
    match parse_redirect(format!("MOVED {details}").as_bytes())? {
        Redirect::Moved { slot, host, port } => {
            let host = if host.is_empty() {
                from.host.clone()
            } else {
                host
            };
            Some((slot, Endpoint { host, port }))
        }
        Redirect::Ask { .. } => None,
    }
}

impl Shared {
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
            let home = st.placement.cluster().and_then(|c| {
                c.avoid.insert(addr.clone(), Instant::now());
                c.home.clone()
            });
            self.request_refresh(st);
            if home.as_ref() == Some(addr) {
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
        Some(link_diff(&st.reg, &st.placement, addr, &l.active))
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
                    match e.details().and_then(|d| moved_to(d, addr)) {
                        Some((slot, to)) if &to != addr => {
                            debug!(slot, from = %addr, to = %to, "SSUBSCRIBE moved");
                            if let Some(c) = st.placement.cluster() {
                                c.moved.insert(slot, to);
                            }
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
                    if let Some(entry) = st.reg.subs.get_mut(key) {
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
                    && st.reg.subs.contains_key(key)
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
                // Release: pairs with the Acquire loads of `dead` in
                // `while_alive` and `serve_link`.
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
        if st.reg.subs.contains_key(&key) {
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
                || st.placement.assign(&key).as_ref() != Some(addr)
            {
                return;
            }
            st.reg.sinks(&key)
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
                // Acquire: pairs with the Release store in `on_push`.
                if sig.dead.load(Ordering::Acquire) || sig.traffic.load(Ordering::Relaxed) == seen {
                    return None;
                }
            }
        }
    }
}

/// Keeps one link's subscriptions in line with its assigned keys,
/// reconnecting with the configured backoff.
pub(super) async fn run_link(weak: Weak<Shared>, addr: Endpoint, wake: Arc<Notify>) {
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
        // Acquire: pairs with the Release store in `on_push`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_answers() {
        let from = Endpoint {
            host: "10.0.0.9".into(),
            port: 7000,
        };
        let ep = |h: &str, port| Endpoint {
            host: h.into(),
            port,
        };
        assert_eq!(
            moved_to("3999 127.0.0.1:6381", &from),
            Some((3999, ep("127.0.0.1", 6381)))
        );
        assert_eq!(
            moved_to("3999 :6381", &from),
            Some((3999, ep("10.0.0.9", 6381)))
        );
        assert_eq!(moved_to("99999 127.0.0.1:6381", &from), None);
        assert_eq!(moved_to("x", &from), None);
    }
}
