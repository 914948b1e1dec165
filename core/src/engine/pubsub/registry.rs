//! Who is subscribed to what, and which link (node) owns which
//! subscription: pure state, no I/O, unit tested.
//!
//! * [`Registry`]: each subscription key (kind + channel or pattern) and
//!   the clients subscribed to it; each client's keys and push sink.
//! * [`Placement`]: the node a key's server-side subscription belongs on:
//!   standalone, the server; cluster, exact channels and patterns on the
//!   "home" primary and sharded channels on the primary of the channel's
//!   slot (the core's slot map, corrected by `MOVED` answers since).
//! * [`link_diff`] / [`wanted_links`]: what a link must (un)subscribe, and
//!   which links must exist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use vshm_protocol::msg::{ClientError, SubKind};

use super::PushSink;
use crate::config::Endpoint;
use crate::keys::slot_of;
use crate::topology::Shard;

/// How long a node whose link failed is not chosen as the home node.
pub(super) const AVOID_FOR: Duration = Duration::from_secs(10);

/// A subscription: kind and channel (or pattern).
pub(super) type Key = (SubKind, Vec<u8>);

#[derive(Default)]
pub(super) struct Entry {
    /// Clients subscribed (never empty: empty entries are removed).
    pub clients: HashSet<u64>,
    /// The server refused the subscription (ACL, ...): waiting subscribers
    /// fail with this; the next subscribe request clears it and retries.
    pub failed: Option<ClientError>,
}

pub(super) struct ClientState {
    pub sink: Arc<dyn PushSink>,
    pub keys: HashSet<Key>,
}

/// The subscriptions of the clients of one backend.
#[derive(Default)]
pub(super) struct Registry {
    pub subs: HashMap<Key, Entry>,
    pub clients: HashMap<u64, ClientState>,
}

impl Registry {
    pub fn add_client(&mut self, id: u64, sink: Arc<dyn PushSink>) {
        self.clients.insert(
            id,
            ClientState {
                sink,
                keys: HashSet::new(),
            },
        );
    }

    /// Subscribe client `id` to `keys` (clearing an earlier refusal of
    /// each, so that it is tried again). Returns the keys the client did
    /// not have before; `None` when the client is gone.
    pub fn subscribe(&mut self, id: u64, keys: &[Key]) -> Option<Vec<Key>> {
        let cs = self.clients.get_mut(&id)?;
        let added: Vec<Key> = keys
            .iter()
            .filter(|k| cs.keys.insert((*k).clone()))
            .cloned()
            .collect();
        for k in keys {
            let e = self.subs.entry(k.clone()).or_default();
            e.clients.insert(id);
            e.failed = None;
        }
        Some(added)
    }

    /// Remove `keys` from client `id` (keys nobody holds any more go).
    pub fn remove_keys(&mut self, id: u64, keys: impl IntoIterator<Item = Key>) {
        let Some(cs) = self.clients.get_mut(&id) else {
            return;
        };
        for k in keys {
            if cs.keys.remove(&k) {
                drop_holder(&mut self.subs, &k, id);
            }
        }
    }

    /// Unsubscribe client `id` from `channels` of `kind` (an empty list:
    /// from every key of that kind). Returns how many keys it still has;
    /// `None` when the client is gone.
    pub fn unsubscribe(&mut self, id: u64, kind: SubKind, channels: &[Vec<u8>]) -> Option<usize> {
        let cs = self.clients.get(&id)?;
        let keys: Vec<Key> = if channels.is_empty() {
            cs.keys.iter().filter(|k| k.0 == kind).cloned().collect()
        } else {
            channels.iter().map(|c| (kind, c.clone())).collect()
        };
        self.remove_keys(id, keys);
        Some(self.count(id))
    }

    /// Remove a client and all its keys.
    pub fn remove_client(&mut self, id: u64) -> bool {
        let Some(cs) = self.clients.remove(&id) else {
            return false;
        };
        for k in cs.keys {
            drop_holder(&mut self.subs, &k, id);
        }
        true
    }

    /// How many keys client `id` holds.
    pub fn count(&self, id: u64) -> usize {
        self.clients.get(&id).map_or(0, |c| c.keys.len())
    }

    /// The sinks of the clients subscribed to `key`.
    pub fn sinks(&self, key: &Key) -> Vec<(u64, Arc<dyn PushSink>)> {
        let Some(e) = self.subs.get(key) else {
            return Vec::new();
        };
        e.clients
            .iter()
            .filter_map(|id| self.clients.get(id).map(|c| (*id, c.sink.clone())))
            .collect()
    }

    /// Forget everything (the backend closes).
    pub fn clear(&mut self) {
        self.subs.clear();
        self.clients.clear();
    }
}

fn drop_holder(subs: &mut HashMap<Key, Entry>, k: &Key, id: u64) {
    if let Some(e) = subs.get_mut(k) {
        e.clients.remove(&id);
        if e.clients.is_empty() {
            subs.remove(k);
        }
    }
}

/// Where the server-side subscriptions go.
pub(super) enum Placement {
    /// Every key on the one server.
    Standalone(Endpoint),
    Cluster(ClusterPlacement),
}

/// A cluster's slot owners as last read from the core's slot map, the
/// `MOVED` answers since, and the home node.
#[derive(Default)]
pub(super) struct ClusterPlacement {
    pub shards: Vec<Shard>,
    /// `SSUBSCRIBE` answered `MOVED` since the shards were read.
    pub moved: HashMap<u16, Endpoint>,
    /// The node carrying exact and pattern subscriptions.
    pub home: Option<Endpoint>,
    /// Nodes whose link failed recently (not chosen as home).
    pub avoid: HashMap<Endpoint, Instant>,
}

impl Placement {
    /// The node a key's server-side subscription belongs on (`None`: not
    /// known yet).
    pub fn assign(&self, key: &Key) -> Option<Endpoint> {
        match self {
            Placement::Standalone(ep) => Some(ep.clone()),
            Placement::Cluster(c) => match key.0 {
                SubKind::Exact | SubKind::Pattern => c.home.clone(),
                SubKind::Sharded => {
                    let slot = slot_of(&key.1);
                    if let Some(ep) = c.moved.get(&slot) {
                        return Some(ep.clone());
                    }
                    c.shards
                        .iter()
                        .find(|s| s.start <= slot && slot <= s.end)
                        .map(|s| s.primary.clone().into())
                }
            },
        }
    }

    pub fn cluster(&mut self) -> Option<&mut ClusterPlacement> {
        match self {
            Placement::Cluster(c) => Some(c),
            Placement::Standalone(_) => None,
        }
    }
}

impl ClusterPlacement {
    /// New slot owners: the `MOVED` answers are superseded.
    pub fn set_shards(&mut self, shards: Vec<Shard>) {
        self.shards = shards;
        self.moved.clear();
    }

    /// Keep the home node unless it is gone from the topology or its link
    /// failed within [`AVOID_FOR`] of `now`; otherwise pick a primary with
    /// `pick(n)` (an index below `n`), avoiding recently failed ones when
    /// possible. Returns whether the home changed.
    pub fn choose_home(&mut self, now: Instant, pick: impl FnOnce(usize) -> usize) -> bool {
        self.avoid
            .retain(|_, t| now.saturating_duration_since(*t) < AVOID_FOR);
        let mut primaries: Vec<Endpoint> = self
            .shards
            .iter()
            .map(|s| s.primary.clone().into())
            .collect();
        primaries.sort();
        primaries.dedup();
        if let Some(h) = &self.home {
            if primaries.contains(h) && !self.avoid.contains_key(h) {
                return false;
            }
        }
        let good: Vec<&Endpoint> = primaries
            .iter()
            .filter(|p| !self.avoid.contains_key(*p))
            .collect();
        let pool: Vec<&Endpoint> = if good.is_empty() {
            primaries.iter().collect()
        } else {
            good
        };
        let new = if pool.is_empty() {
            None
        } else {
            Some(pool[pick(pool.len()).min(pool.len() - 1)].clone())
        };
        let changed = new != self.home;
        self.home = new;
        changed
    }
}

/// The links the subscriptions need; `true` when some key has no node yet
/// (the topology must be read).
pub(super) fn wanted_links(reg: &Registry, placement: &Placement) -> (HashSet<Endpoint>, bool) {
    let mut wanted = HashSet::new();
    let mut unassigned = false;
    for key in reg.subs.keys() {
        match placement.assign(key) {
            Some(a) => {
                wanted.insert(a);
            }
            None => unassigned = true,
        }
    }
    (wanted, unassigned)
}

/// What the link to `addr`, with the server-confirmed `active` keys, must
/// subscribe (wanted, assigned to it, not refused, not active) and
/// unsubscribe (active but no longer wanted there).
pub(super) fn link_diff(
    reg: &Registry,
    placement: &Placement,
    addr: &Endpoint,
    active: &HashSet<Key>,
) -> (Vec<Key>, Vec<Key>) {
    let mut subs = Vec::new();
    for (k, e) in &reg.subs {
        if e.failed.is_none() && !active.contains(k) && placement.assign(k).as_ref() == Some(addr) {
            subs.push(k.clone());
        }
    }
    let unsubs = active
        .iter()
        .filter(|k| !reg.subs.contains_key(*k) || placement.assign(k).as_ref() != Some(addr))
        .cloned()
        .collect();
    (subs, unsubs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::NodeAddr;
    use vshm_protocol::msg::{Completion, ErrorKind};

    struct NoSink;
    impl PushSink for NoSink {
        fn push(&self, _: &Completion) -> bool {
            true
        }
    }

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            host: "n".into(),
            port,
        }
    }

    fn key(kind: SubKind, c: &str) -> Key {
        (kind, c.as_bytes().to_vec())
    }

    fn shard(start: u16, end: u16, port: u16) -> Shard {
        Shard {
            start,
            end,
            primary: NodeAddr::new("n", port),
            replicas: Vec::new(),
        }
    }

    #[test]
    fn clients_share_keys_until_the_last_one_leaves() {
        let mut r = Registry::default();
        r.add_client(1, Arc::new(NoSink));
        r.add_client(2, Arc::new(NoSink));
        let a = key(SubKind::Exact, "a");
        let b = key(SubKind::Exact, "b");
        let p = key(SubKind::Pattern, "p*");
        assert_eq!(r.subscribe(1, &[a.clone(), b.clone()]).unwrap().len(), 2);
        // Already held: nothing added (a rollback must not remove it).
        assert!(r.subscribe(1, std::slice::from_ref(&a)).unwrap().is_empty());
        r.subscribe(2, &[a.clone(), p.clone()]).unwrap();
        assert_eq!(r.sinks(&a).len(), 2);
        // Unsubscribe-all of one kind keeps the other kinds.
        assert_eq!(r.unsubscribe(2, SubKind::Exact, &[]), Some(1));
        assert_eq!(r.sinks(&a).len(), 1);
        assert!(r.subs.contains_key(&p));
        r.remove_keys(1, [a.clone()]);
        assert!(!r.subs.contains_key(&a), "nobody holds a");
        assert!(r.remove_client(2));
        assert!(!r.subs.contains_key(&p));
        assert_eq!(r.count(1), 1);
        assert!(r.subscribe(9, &[a]).is_none(), "unknown client");
        assert_eq!(r.unsubscribe(9, SubKind::Exact, &[]), None);
    }

    #[test]
    fn a_new_subscribe_clears_a_refusal() {
        let mut r = Registry::default();
        r.add_client(1, Arc::new(NoSink));
        let a = key(SubKind::Exact, "a");
        r.subscribe(1, std::slice::from_ref(&a)).unwrap();
        r.subs.get_mut(&a).unwrap().failed = Some(ClientError::new(ErrorKind::Request, "NOPERM"));
        r.subscribe(1, std::slice::from_ref(&a)).unwrap();
        assert!(r.subs[&a].failed.is_none());
    }

    #[test]
    fn cluster_assignment_and_diff() {
        let mut c = ClusterPlacement::default();
        c.set_shards(vec![shard(0, 8191, 1), shard(8192, 16383, 2)]);
        let s = key(SubKind::Sharded, "ch");
        let owner = if slot_of(b"ch") <= 8191 { ep(1) } else { ep(2) };
        let e = key(SubKind::Exact, "news");
        let mut p = Placement::Cluster(c);
        assert_eq!(p.assign(&s), Some(owner.clone()));
        assert_eq!(p.assign(&e), None, "no home yet");
        let c = p.cluster().unwrap();
        assert!(c.choose_home(Instant::now(), |_| 1));
        assert_eq!(c.home, Some(ep(2)));
        // A MOVED answer overrides the shards until they are read again.
        c.moved.insert(slot_of(b"ch"), ep(3));
        assert_eq!(p.assign(&s), Some(ep(3)));

        let mut r = Registry::default();
        r.add_client(1, Arc::new(NoSink));
        r.subscribe(1, &[s.clone(), e.clone()]).unwrap();
        let (wanted, unassigned) = wanted_links(&r, &p);
        assert!(!unassigned);
        assert_eq!(wanted, [ep(2), ep(3)].into_iter().collect::<HashSet<_>>());
        // Node 2 has `s` active from before the move and lacks `e`.
        let active: HashSet<Key> = [s.clone()].into_iter().collect();
        assert_eq!(
            link_diff(&r, &p, &ep(2), &active),
            (vec![e.clone()], vec![s.clone()])
        );
        assert_eq!(
            link_diff(&r, &p, &ep(3), &HashSet::new()),
            (vec![s.clone()], vec![])
        );
        // A refused key is not sent again until a new subscribe.
        r.subs.get_mut(&s).unwrap().failed = Some(ClientError::new(ErrorKind::Request, "x"));
        assert_eq!(link_diff(&r, &p, &ep(3), &HashSet::new()), (vec![], vec![]));
        // New shards drop the MOVED answers.
        p.cluster().unwrap().set_shards(vec![shard(0, 16383, 1)]);
        assert_eq!(p.assign(&s), Some(ep(1)));
    }

    #[test]
    fn home_avoids_failed_nodes_and_keeps_a_good_one() {
        let now = Instant::now();
        let mut c = ClusterPlacement::default();
        c.set_shards(vec![shard(0, 100, 1), shard(101, 16383, 2)]);
        assert!(c.choose_home(now, |_| 0));
        assert_eq!(c.home, Some(ep(1)));
        assert!(!c.choose_home(now, |_| 1), "a good home is kept");
        c.avoid.insert(ep(1), now);
        assert!(c.choose_home(now, |_| 0));
        assert_eq!(c.home, Some(ep(2)), "the failed node is avoided");
        // Every node failed: any primary rather than none.
        c.avoid.insert(ep(2), now);
        c.choose_home(now, |_| 0);
        assert!(c.home.is_some());
        // Avoidance ends.
        c.choose_home(now + AVOID_FOR, |_| 0);
        assert!(c.avoid.is_empty());
        c.set_shards(Vec::new());
        c.choose_home(now, |_| 0);
        assert_eq!(c.home, None);
    }

    #[test]
    fn standalone_assigns_everything_to_the_server() {
        let p = Placement::Standalone(ep(9));
        for k in [key(SubKind::Exact, "a"), key(SubKind::Sharded, "b")] {
            assert_eq!(p.assign(&k), Some(ep(9)));
        }
    }
}
