//! Cluster topology: pure, no I/O.
//!
//! * [`parse_cluster_slots`]: a `CLUSTER SLOTS` reply (the wire value
//!   model, RESP2 or RESP3) into [`Shard`]s.
//! * [`SlotMap`]: O(1) slot -> primary/replicas lookup built from shards,
//!   comparable ("did the topology change?"), updatable by a MOVED.
//! * [`choose_view`]: several nodes answered `CLUSTER SLOTS`; which view
//!   to believe.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use vshm_protocol::msg::Value;

use crate::config::Endpoint;
use crate::keys::SLOTS;

/// A node address as `CLUSTER SLOTS` and MOVED name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    pub fn new(host: impl Into<String>, port: u16) -> NodeAddr {
        NodeAddr {
            host: host.into(),
            port,
        }
    }

    /// The socket path when this is a Unix socket (a standalone server
    /// given as `unix:///path`; the same convention as
    /// [`Endpoint::unix_path`]: port 0, the path as host). Cluster nodes are
    /// never Unix sockets.
    pub fn unix_path(&self) -> Option<&std::path::Path> {
        (self.port == 0).then(|| std::path::Path::new(&self.host))
    }
}

/// `host:port` (`[v6]:port` when the host is an IPv6 address, like
/// [`Endpoint`]; `unix:///path` for a Unix socket).
impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == 0 {
            write!(f, "unix://{}", self.host)
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `host:port`, `[v6]:port`, and the bare `v6:port` a MOVED or ASK
/// redirect carries (the port is after the last colon). The port must not
/// be 0.
impl FromStr for NodeAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<NodeAddr, String> {
        let bad = || format!("bad node address {s:?}: expected \"host:port\"");
        let (host, port) = s.trim().rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
            None => host,
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(NodeAddr::new(host, port))
    }
}

impl From<Endpoint> for NodeAddr {
    fn from(e: Endpoint) -> NodeAddr {
        NodeAddr::new(e.host, e.port)
    }
}

impl From<NodeAddr> for Endpoint {
    fn from(a: NodeAddr) -> Endpoint {
        Endpoint {
            host: a.host,
            port: a.port,
        }
    }
}

/// One slot range and the nodes serving it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shard {
    /// First slot (inclusive).
    pub start: u16,
    /// Last slot (inclusive).
    pub end: u16,
    pub primary: NodeAddr,
    pub replicas: Vec<NodeAddr>,
}

impl Shard {
    /// Number of slots in the range (0 for an invalid range).
    fn len(&self) -> usize {
        usize::from(self.end)
            .saturating_add(1)
            .saturating_sub(usize::from(self.start))
    }

    /// Replicas sorted by address, without duplicates or the primary.
    fn normalise(&mut self) {
        self.replicas.sort();
        self.replicas.dedup();
        let primary = &self.primary;
        self.replicas.retain(|r| r != primary);
    }
}

/// The host a node entry names, or `None` when the entry is to be left
/// out. Per the `CLUSTER SLOTS` documentation (and as redis-rs does): a
/// NULL or empty endpoint, and a wildcard address a node announces when it
/// does not know its own, mean "the node that answered" (`queried`, when
/// it is known; left out otherwise); `"?"` means a node with an unknown
/// endpoint (announced hostnames configured but none set), left out.
fn node_host(v: &Value, queried: Option<&str>) -> Result<Option<String>, String> {
    let host = match v {
        Value::Nil => return Ok(queried.map(str::to_string)),
        Value::Bulk(b) | Value::Simple(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Verbatim { text, .. } => String::from_utf8_lossy(text).into_owned(),
        other => return Err(format!("node host is not a string: {other:?}")),
    };
    Ok(match host.as_str() {
        "" | "0.0.0.0" | "::" => queried.map(str::to_string),
        "?" => None,
        _ => Some(host),
    })
}

/// One node entry: `[host, port, id, metadata...]` (the id and the RESP3
/// metadata map, or its RESP2 array, are ignored). `None`: left out (see
/// [`node_host`]; port 0 is a node without a usable port).
fn node(v: &Value, queried: Option<&str>) -> Result<Option<NodeAddr>, String> {
    let Value::Array(fields) = unwrap_attribute(v) else {
        return Err(format!("node entry is not an array: {v:?}"));
    };
    let (Some(host), Some(port)) = (fields.first(), fields.get(1)) else {
        return Err(format!(
            "node entry has {} fields, expected 2 or more",
            fields.len()
        ));
    };
    let host = node_host(unwrap_attribute(host), queried)?;
    let port = match unwrap_attribute(port) {
        Value::Int(p) => u16::try_from(*p).map_err(|_| format!("node port {p} out of range"))?,
        other => return Err(format!("node port is not an integer: {other:?}")),
    };
    Ok(host.filter(|_| port != 0).map(|h| NodeAddr::new(h, port)))
}

fn unwrap_attribute(v: &Value) -> &Value {
    match v {
        Value::Attribute { data, .. } => unwrap_attribute(data),
        v => v,
    }
}

fn slot_number(v: &Value, what: &str) -> Result<u16, String> {
    match unwrap_attribute(v) {
        Value::Int(i) => u16::try_from(*i)
            .ok()
            .filter(|s| *s < SLOTS)
            .ok_or_else(|| format!("{what} slot {i} out of range")),
        other => Err(format!("{what} slot is not an integer: {other:?}")),
    }
}

/// Parse a `CLUSTER SLOTS` reply that `queried` sent: an array of
/// `[start, end, primary, replicas...]`, each node `[host, port, id,
/// metadata]` (RESP3 may give the metadata as a map).
///
/// Node entries with a NULL, empty or wildcard host mean the node that
/// answered (`queried.host` is used); `"?"` hosts (unknown endpoint) and
/// port 0 are left out. A range whose primary is left out is left out
/// (its slots are not covered: sending its writes to a replica would only
/// earn MOVED). Shards come sorted by start, replicas sorted by address.
/// Errors: a reply of the wrong shape, a range outside `0..16384` or with
/// `start > end`, overlapping ranges.
pub fn parse_cluster_slots(v: &Value, queried: &NodeAddr) -> Result<Vec<Shard>, String> {
    parse(v, Some(&queried.host))
}

/// [`parse_cluster_slots`] for a reply from a node that is not known (a
/// request routed to a random node): node entries that mean "the node that
/// answered" are left out too.
pub fn parse_cluster_slots_unattributed(v: &Value) -> Result<Vec<Shard>, String> {
    parse(v, None)
}

fn parse(v: &Value, queried: Option<&str>) -> Result<Vec<Shard>, String> {
    let Value::Array(ranges) = unwrap_attribute(v) else {
        return Err(format!("CLUSTER SLOTS reply is not an array: {v:?}"));
    };
    // Every range of the reply is validated, the left-out ones too.
    let mut all: Vec<(u16, u16, Option<Shard>)> = Vec::with_capacity(ranges.len());
    for r in ranges {
        let Value::Array(items) = unwrap_attribute(r) else {
            return Err(format!("slot range is not an array: {r:?}"));
        };
        let (Some(start), Some(end)) = (items.first(), items.get(1)) else {
            return Err(format!(
                "slot range has {} fields, expected 3 or more",
                items.len()
            ));
        };
        let start = slot_number(start, "start")?;
        let end = slot_number(end, "end")?;
        if start > end {
            return Err(format!("slot range {start}-{end} is reversed"));
        }
        let mut nodes = items[2..].iter();
        let primary = match nodes.next() {
            Some(p) => node(p, queried)?,
            None => None,
        };
        let mut replicas = Vec::new();
        for n in nodes {
            replicas.extend(node(n, queried)?);
        }
        let shard = primary.map(|primary| {
            let mut s = Shard {
                start,
                end,
                primary,
                replicas,
            };
            s.normalise();
            s
        });
        all.push((start, end, shard));
    }
    all.sort_by_key(|(start, _, _)| *start);
    for w in all.windows(2) {
        if w[1].0 <= w[0].1 {
            return Err(format!(
                "slot ranges {}-{} and {}-{} overlap",
                w[0].0, w[0].1, w[1].0, w[1].1
            ));
        }
    }
    Ok(all.into_iter().filter_map(|(_, _, s)| s).collect())
}

/// Validate shards (ranges inside `0..16384`, `start <= end`, no overlap)
/// and put them in canonical form: sorted by start, replicas sorted and
/// without duplicates or the primary, adjacent ranges with the same nodes
/// merged (`CLUSTER SLOTS` reports them merged).
fn canonical(mut shards: Vec<Shard>) -> Result<Vec<Shard>, String> {
    for s in &mut shards {
        if s.start > s.end || s.end >= SLOTS {
            return Err(format!("bad slot range {}-{}", s.start, s.end));
        }
        s.normalise();
    }
    shards.sort_by_key(|s| s.start);
    let mut out: Vec<Shard> = Vec::with_capacity(shards.len());
    for s in shards {
        if let Some(last) = out.last_mut() {
            if s.start <= last.end {
                return Err(format!(
                    "slot ranges {}-{} and {}-{} overlap",
                    last.start, last.end, s.start, s.end
                ));
            }
            if s.start == last.end + 1 && s.primary == last.primary && s.replicas == last.replicas {
                last.end = s.end;
                continue;
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// No shard serves the slot.
const NO_SHARD: u16 = u16::MAX;

/// Which node serves each slot: the shards, and for each slot the index of
/// its shard (O(1) lookup). Equality compares the topology (canonical
/// shards), not how the map was built.
#[derive(Clone)]
pub struct SlotMap {
    shards: Vec<Shard>,
    owner: Box<[u16; SLOTS as usize]>,
}

impl SlotMap {
    /// A map of the shards (validated and put in canonical form: see
    /// [`SlotMap::shards`]). Errors: a range outside `0..16384`, with
    /// `start > end`, or overlapping another.
    pub fn new(shards: Vec<Shard>) -> Result<SlotMap, String> {
        let shards = canonical(shards)?;
        let mut owner: Box<[u16; SLOTS as usize]> = vec![NO_SHARD; usize::from(SLOTS)]
            .into_boxed_slice()
            .try_into()
            .map_err(|_| "slot table size".to_string())?;
        for (i, s) in shards.iter().enumerate() {
            // At most SLOTS non-overlapping shards: the index fits.
            let i = i as u16;
            owner[usize::from(s.start)..=usize::from(s.end)].fill(i);
        }
        Ok(SlotMap { shards, owner })
    }

    /// A map serving no slot.
    pub fn empty() -> SlotMap {
        SlotMap {
            shards: Vec::new(),
            owner: Box::new([NO_SHARD; SLOTS as usize]),
        }
    }

    /// The shard serving `slot`.
    pub fn shard(&self, slot: u16) -> Option<&Shard> {
        let i = *self.owner.get(usize::from(slot))?;
        self.shards.get(usize::from(i))
    }

    /// The primary serving `slot` (`None`: not covered, or `slot >= 16384`).
    pub fn primary(&self, slot: u16) -> Option<&NodeAddr> {
        self.shard(slot).map(|s| &s.primary)
    }

    /// The replicas of `slot`'s shard, sorted by address (empty when the
    /// slot is not covered).
    pub fn replicas(&self, slot: u16) -> &[NodeAddr] {
        self.shard(slot).map_or(&[], |s| &s.replicas)
    }

    /// The shards: sorted by start, not overlapping, replicas sorted by
    /// address, adjacent ranges with the same nodes merged.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The distinct primaries, sorted.
    pub fn primaries(&self) -> Vec<&NodeAddr> {
        let set: BTreeSet<&NodeAddr> = self.shards.iter().map(|s| &s.primary).collect();
        set.into_iter().collect()
    }

    /// Every distinct node, primaries and replicas, sorted.
    pub fn nodes(&self) -> Vec<&NodeAddr> {
        let set: BTreeSet<&NodeAddr> = self
            .shards
            .iter()
            .flat_map(|s| std::iter::once(&s.primary).chain(&s.replicas))
            .collect();
        set.into_iter().collect()
    }

    /// Whether every slot has a primary.
    pub fn covers_all(&self) -> bool {
        self.shards.iter().map(Shard::len).sum::<usize>() == usize::from(SLOTS)
    }

    /// The map after a `MOVED slot addr`: `slot` is now served by `addr` as
    /// a primary. The replicas are those of a shard `addr` is already the
    /// primary of, else none (a new address: a new shard of one slot). An
    /// out-of-range slot changes nothing.
    pub fn with_moved(&self, slot: u16, addr: &NodeAddr) -> SlotMap {
        if slot >= SLOTS || self.primary(slot) == Some(addr) {
            return self.clone();
        }
        let replicas = self
            .shards
            .iter()
            .find(|s| s.primary == *addr)
            .map(|s| s.replicas.clone())
            .unwrap_or_default();
        let mut shards = Vec::with_capacity(self.shards.len() + 2);
        for s in &self.shards {
            if s.start <= slot && slot <= s.end {
                if s.start < slot {
                    shards.push(Shard {
                        end: slot - 1,
                        ..s.clone()
                    });
                }
                if slot < s.end {
                    shards.push(Shard {
                        start: slot + 1,
                        ..s.clone()
                    });
                }
            } else {
                shards.push(s.clone());
            }
        }
        shards.push(Shard {
            start: slot,
            end: slot,
            primary: addr.clone(),
            replicas,
        });
        // Built from a valid map with the slot carved out: cannot fail.
        SlotMap::new(shards).unwrap_or_else(|_| self.clone())
    }
}

impl Default for SlotMap {
    fn default() -> SlotMap {
        SlotMap::empty()
    }
}

impl PartialEq for SlotMap {
    fn eq(&self, other: &SlotMap) -> bool {
        // The slot table is derived from the canonical shards.
        self.shards == other.shards
    }
}

impl Eq for SlotMap {}

impl fmt::Debug for SlotMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotMap")
            .field("shards", &self.shards)
            .finish()
    }
}

/// Several nodes answered `CLUSTER SLOTS` (`(node, its shards)`): the view
/// most of them report, comparing canonical shard lists (see
/// [`SlotMap::shards`]); on a tie the view covering the most slots, then
/// the first reported. A view that covers no slot (a node that has not
/// joined yet, or was reset) and an invalid one (overlapping ranges) are
/// not counted. `None`: no view left.
pub fn choose_view(views: &[(NodeAddr, Vec<Shard>)]) -> Option<Vec<Shard>> {
    // (view, votes, slots covered), in order of first appearance.
    let mut tally: Vec<(Vec<Shard>, usize, usize)> = Vec::new();
    for (_, shards) in views {
        let Ok(view) = canonical(shards.clone()) else {
            continue;
        };
        if view.is_empty() {
            continue;
        }
        match tally.iter_mut().find(|(v, _, _)| *v == view) {
            Some(t) => t.1 += 1,
            None => {
                let covered = view.iter().map(Shard::len).sum();
                tally.push((view, 1, covered));
            }
        }
    }
    let mut best: Option<(Vec<Shard>, usize, usize)> = None;
    for t in tally {
        // Strictly better only: the first of equals stays.
        if best.as_ref().is_none_or(|b| (t.1, t.2) > (b.1, b.2)) {
            best = Some(t);
        }
    }
    best.map(|(v, _, _)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    /// A RESP2 node entry: host, port, id, (empty) metadata array.
    fn node2(host: &str, port: i64) -> Value {
        Value::Array(vec![
            bulk(host),
            Value::Int(port),
            bulk("09dbe9720cda62f7865eabc5fd8857c5d2678366"),
            Value::Array(vec![]),
        ])
    }

    fn range(start: i64, end: i64, nodes: Vec<Value>) -> Value {
        let mut v = vec![Value::Int(start), Value::Int(end)];
        v.extend(nodes);
        Value::Array(v)
    }

    fn addr(s: &str) -> NodeAddr {
        s.parse().unwrap()
    }

    fn shard(start: u16, end: u16, primary: &str, replicas: &[&str]) -> Shard {
        Shard {
            start,
            end,
            primary: addr(primary),
            replicas: replicas.iter().map(|r| addr(r)).collect(),
        }
    }

    fn three_shards() -> Vec<Shard> {
        vec![
            shard(0, 5460, "10.0.0.1:7000", &["10.0.0.4:7003"]),
            shard(5461, 10922, "10.0.0.2:7001", &["10.0.0.5:7004"]),
            shard(10923, 16383, "10.0.0.3:7002", &["10.0.0.6:7005"]),
        ]
    }

    const Q: &str = "10.0.0.9:7000";

    #[test]
    fn addresses() {
        let a = NodeAddr::new("127.0.0.1", 6379);
        assert_eq!(a.to_string(), "127.0.0.1:6379");
        assert_eq!(addr("127.0.0.1:6379"), a);
        assert_eq!(addr("[::1]:7000"), NodeAddr::new("::1", 7000));
        // MOVED gives IPv6 addresses without brackets.
        assert_eq!(addr("::1:7000"), NodeAddr::new("::1", 7000));
        assert_eq!(NodeAddr::new("::1", 7000).to_string(), "[::1]:7000");
        for bad in [
            "",
            "host",
            "host:",
            ":7000",
            "host:0",
            "host:70000",
            "[::1:7000",
        ] {
            assert!(bad.parse::<NodeAddr>().is_err(), "{bad}");
        }
        let e: Endpoint = a.clone().into();
        assert_eq!(NodeAddr::from(e), a);
        assert!(NodeAddr::new("a", 2) < NodeAddr::new("b", 1));
    }

    #[test]
    fn parses_resp2_reply() {
        // As redis-server 7 sends it, ranges not in order, replicas in
        // any order.
        let v = Value::Array(vec![
            range(
                5461,
                10922,
                vec![node2("10.0.0.2", 7001), node2("10.0.0.5", 7004)],
            ),
            range(
                0,
                5460,
                vec![node2("10.0.0.1", 7000), node2("10.0.0.4", 7003)],
            ),
            range(
                10923,
                16383,
                vec![node2("10.0.0.3", 7002), node2("10.0.0.6", 7005)],
            ),
        ]);
        let shards = parse_cluster_slots(&v, &addr(Q)).unwrap();
        assert_eq!(shards, three_shards());
        // Redis 6 and older: node entries of host and port only, or with
        // the id but no metadata.
        let old = Value::Array(vec![range(
            0,
            16383,
            vec![
                Value::Array(vec![bulk("a"), Value::Int(1)]),
                Value::Array(vec![bulk("c"), Value::Int(3), bulk("id")]),
                Value::Array(vec![bulk("b"), Value::Int(2), bulk("id")]),
            ],
        )]);
        assert_eq!(
            parse_cluster_slots(&old, &addr(Q)).unwrap(),
            [shard(0, 16383, "a:1", &["b:2", "c:3"])]
        );
    }

    #[test]
    fn parses_resp3_reply_with_metadata_map() {
        let node3 = |ip: &str, port: i64, hostname: &str| {
            Value::Array(vec![
                bulk(ip),
                Value::Int(port),
                bulk("id"),
                Value::Map(vec![vshm_protocol::msg::Pair {
                    key: bulk("hostname"),
                    value: bulk(hostname),
                }]),
            ])
        };
        let v = Value::Array(vec![
            range(
                0,
                8191,
                vec![
                    node3("10.0.0.1", 7000, "a.example"),
                    node3("10.0.0.3", 7002, "c.example"),
                ],
            ),
            range(8192, 16383, vec![node3("10.0.0.2", 7001, "b.example")]),
        ]);
        let shards = parse_cluster_slots(&v, &addr(Q)).unwrap();
        assert_eq!(
            shards,
            [
                shard(0, 8191, "10.0.0.1:7000", &["10.0.0.3:7002"]),
                // A shard without replicas.
                shard(8192, 16383, "10.0.0.2:7001", &[]),
            ]
        );
        // The same through the redis crate's value model and `convert`.
        let r = redis::Value::Array(vec![redis::Value::Array(vec![
            redis::Value::Int(0),
            redis::Value::Int(16383),
            redis::Value::Array(vec![
                redis::Value::BulkString(b"h".to_vec()),
                redis::Value::Int(1),
                redis::Value::BulkString(b"id".to_vec()),
                redis::Value::Map(vec![]),
            ]),
        ])]);
        assert_eq!(
            parse_cluster_slots(&crate::value::convert(r), &addr(Q)).unwrap(),
            [shard(0, 16383, "h:1", &[])]
        );
    }

    #[test]
    fn unknown_and_answering_node_hosts() {
        let q = addr("seed.example:7000");
        let v = Value::Array(vec![
            // Empty host: the answering node's host, with its own port.
            range(
                0,
                99,
                vec![node2("", 7001), node2("?", 7002), node2("r", 0)],
            ),
            // NULL and wildcard hosts: the answering node.
            range(
                100,
                199,
                vec![
                    Value::Array(vec![Value::Nil, Value::Int(7003)]),
                    node2("0.0.0.0", 7004),
                ],
            ),
            // "?" primary: an unknown node; the range is left out rather
            // than its replica taken for the primary.
            range(200, 299, vec![node2("?", 7005), node2("x", 7006)]),
            // Port 0 primary: left out too.
            range(300, 399, vec![node2("y", 0)]),
            // No nodes at all.
            Value::Array(vec![Value::Int(400), Value::Int(499)]),
        ]);
        assert_eq!(
            parse_cluster_slots(&v, &q).unwrap(),
            [
                shard(0, 99, "seed.example:7001", &[]),
                shard(100, 199, "seed.example:7003", &["seed.example:7004"]),
            ]
        );
        // Not knowing which node answered, those entries are left out.
        assert_eq!(
            parse_cluster_slots_unattributed(&v).unwrap(),
            Vec::<Shard>::new()
        );
        // The left-out ranges still take part in validation.
        let overlap = Value::Array(vec![
            range(0, 99, vec![node2("a", 1)]),
            range(50, 60, vec![node2("?", 1)]),
        ]);
        assert!(parse_cluster_slots(&overlap, &q).is_err());
    }

    #[test]
    fn malformed_replies() {
        let q = addr(Q);
        let ok_node = || node2("a", 1);
        let bad = [
            Value::Int(1),
            Value::Nil,
            bulk("ERR"),
            Value::Array(vec![Value::Int(0)]),
            Value::Array(vec![Value::Array(vec![Value::Int(0)])]),
            Value::Array(vec![range(0, 16384, vec![ok_node()])]),
            Value::Array(vec![range(-1, 5, vec![ok_node()])]),
            Value::Array(vec![range(10, 5, vec![ok_node()])]),
            Value::Array(vec![Value::Array(vec![
                bulk("0"),
                Value::Int(5),
                ok_node(),
            ])]),
            Value::Array(vec![range(0, 5, vec![Value::Int(1)])]),
            Value::Array(vec![range(0, 5, vec![Value::Array(vec![bulk("a")])])]),
            Value::Array(vec![range(
                0,
                5,
                vec![Value::Array(vec![bulk("a"), bulk("7000")])],
            )]),
            Value::Array(vec![range(
                0,
                5,
                vec![Value::Array(vec![bulk("a"), Value::Int(65536)])],
            )]),
            Value::Array(vec![range(
                0,
                5,
                vec![Value::Array(vec![Value::Int(1), Value::Int(1)])],
            )]),
            Value::Array(vec![
                range(0, 5, vec![ok_node()]),
                range(5, 9, vec![ok_node()]),
            ]),
        ];
        for v in &bad {
            assert!(parse_cluster_slots(v, &q).is_err(), "{v:?}");
        }
        // An empty reply is valid (a node not in a cluster yet).
        assert_eq!(
            parse_cluster_slots(&Value::Array(vec![]), &q).unwrap(),
            Vec::<Shard>::new()
        );
    }

    #[test]
    fn slot_map_lookups() {
        let m = SlotMap::new(three_shards()).unwrap();
        assert!(m.covers_all());
        assert_eq!(m.primary(0), Some(&addr("10.0.0.1:7000")));
        assert_eq!(m.primary(5460), Some(&addr("10.0.0.1:7000")));
        assert_eq!(m.primary(5461), Some(&addr("10.0.0.2:7001")));
        assert_eq!(m.primary(16383), Some(&addr("10.0.0.3:7002")));
        assert_eq!(m.primary(16384), None);
        assert_eq!(m.replicas(12000), [addr("10.0.0.6:7005")]);
        assert!(m.replicas(u16::MAX).is_empty());
        assert_eq!(m.shards(), three_shards());
        assert_eq!(
            m.primaries(),
            [
                &addr("10.0.0.1:7000"),
                &addr("10.0.0.2:7001"),
                &addr("10.0.0.3:7002")
            ]
        );
        assert_eq!(m.nodes().len(), 6);

        // A gap: not covered.
        let partial = SlotMap::new(vec![
            shard(0, 99, "a:1", &[]),
            shard(200, 16383, "b:1", &[]),
        ])
        .unwrap();
        assert!(!partial.covers_all());
        assert_eq!(partial.primary(150), None);
        assert!(partial.replicas(150).is_empty());
        assert!(!SlotMap::empty().covers_all());
        assert!(SlotMap::default().primaries().is_empty());

        // Invalid shard lists.
        assert!(SlotMap::new(vec![shard(0, 10, "a:1", &[]), shard(10, 20, "b:1", &[])]).is_err());
        assert!(SlotMap::new(vec![shard(0, 16384, "a:1", &[])]).is_err());
        assert!(SlotMap::new(vec![shard(5, 4, "a:1", &[])]).is_err());
    }

    #[test]
    fn slot_map_equality_is_the_topology() {
        let a = SlotMap::new(three_shards()).unwrap();
        // Order of shards and of replicas does not matter; neither does
        // a split of a range between the same nodes.
        let mut shuffled = three_shards();
        shuffled.reverse();
        shuffled[0].replicas = vec![addr("z:1"), addr("10.0.0.6:7005")];
        let mut expected = three_shards();
        expected[2].replicas = vec![addr("10.0.0.6:7005"), addr("z:1")];
        assert_eq!(
            SlotMap::new(shuffled).unwrap(),
            SlotMap::new(expected).unwrap()
        );
        let mut split = three_shards();
        split[0].end = 99;
        split.push(shard(100, 5460, "10.0.0.1:7000", &["10.0.0.4:7003"]));
        assert_eq!(SlotMap::new(split).unwrap(), a);
        // A changed primary is a change.
        let mut failed_over = three_shards();
        failed_over[0].primary = addr("10.0.0.4:7003");
        failed_over[0].replicas = vec![addr("10.0.0.1:7000")];
        assert_ne!(SlotMap::new(failed_over).unwrap(), a);
        assert_ne!(SlotMap::empty(), a);
        assert!(format!("{a:?}").contains("10.0.0.1"));
    }

    #[test]
    fn moved() {
        let m = SlotMap::new(three_shards()).unwrap();
        // To a known primary: joins its node set (with its replicas).
        let n = m.with_moved(100, &addr("10.0.0.2:7001"));
        assert_eq!(n.primary(100), Some(&addr("10.0.0.2:7001")));
        assert_eq!(n.replicas(100), [addr("10.0.0.5:7004")]);
        assert_eq!(n.primary(99), Some(&addr("10.0.0.1:7000")));
        assert_eq!(n.primary(101), Some(&addr("10.0.0.1:7000")));
        assert_eq!(n.shards().len(), 5);
        assert!(n.covers_all());
        assert_ne!(n, m);
        // The last slot of a range moving to the next range's primary
        // merges with it.
        let e = m.with_moved(5460, &addr("10.0.0.2:7001"));
        assert_eq!(e.shards().len(), 3);
        assert_eq!(e.shards()[1].start, 5460);
        // To a new address: a shard of one slot, no replicas.
        let f = m.with_moved(0, &addr("10.0.0.7:7006"));
        assert_eq!(f.shards()[0], shard(0, 0, "10.0.0.7:7006", &[]));
        assert_eq!(f.shards()[1].start, 1);
        // Into a gap.
        let g = SlotMap::empty().with_moved(42, &addr("a:1"));
        assert_eq!(g.shards(), [shard(42, 42, "a:1", &[])]);
        assert_eq!(g.primary(42), Some(&addr("a:1")));
        // No change, and an out-of-range slot.
        assert_eq!(m.with_moved(0, &addr("10.0.0.1:7000")), m);
        assert_eq!(m.with_moved(16384, &addr("x:1")), m);
        // Moving every slot of a shard away leaves no trace of it.
        let mut h = SlotMap::new(vec![shard(0, 1, "a:1", &[]), shard(2, 3, "b:1", &[])]).unwrap();
        h = h.with_moved(0, &addr("b:1")).with_moved(1, &addr("b:1"));
        assert_eq!(h.shards(), [shard(0, 3, "b:1", &[])]);
        assert_eq!(h.primaries(), [&addr("b:1")]);
    }

    #[test]
    fn choose_views() {
        let n = |i: u16| addr(&format!("10.0.0.{i}:700{i}"));
        let new = three_shards();
        // A node that has not yet learned of the failover of the first
        // shard (10.0.0.4 took over from 10.0.0.1).
        let mut after = new.clone();
        after[0].primary = addr("10.0.0.4:7003");
        after[0].replicas = vec![addr("10.0.0.1:7000")];
        let stale = new.clone();
        // Replicas in another order in one answer: the same view.
        let mut reordered = after.clone();
        reordered.reverse();
        reordered[2].replicas = vec![addr("10.0.0.1:7000"), addr("10.0.0.1:7000")];
        let views = vec![
            (n(1), stale.clone()),
            (n(2), after.clone()),
            (n(3), reordered),
        ];
        assert_eq!(choose_view(&views), Some(after.clone()));
        // A tie: the view covering more slots.
        let mut partial = after.clone();
        partial.pop();
        let views = vec![(n(1), partial.clone()), (n(2), after.clone())];
        assert_eq!(choose_view(&views), Some(after.clone()));
        // A tie with equal coverage: the first.
        let views = vec![(n(1), stale.clone()), (n(2), after.clone())];
        assert_eq!(choose_view(&views), Some(stale.clone()));
        let views = vec![(n(2), after.clone()), (n(1), stale.clone())];
        assert_eq!(choose_view(&views), Some(after.clone()));
        // Empty views (nodes not joined yet) do not outvote a real one;
        // an invalid view is not counted.
        let overlapping = vec![shard(0, 10, "a:1", &[]), shard(5, 20, "b:1", &[])];
        let views = vec![
            (n(1), vec![]),
            (n(2), vec![]),
            (n(3), overlapping.clone()),
            (n(4), partial.clone()),
        ];
        assert_eq!(choose_view(&views), Some(partial));
        assert_eq!(choose_view(&[]), None);
        assert_eq!(choose_view(&[(n(1), vec![]), (n(2), overlapping)]), None);
    }
}
