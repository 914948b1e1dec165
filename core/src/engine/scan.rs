//! Cluster-wide SCAN (`Op::ClusterScan`).
//!
//! redis-rs 1.8 has no cluster scan (its routing table marks SCAN
//! "undefined": a plain SCAN goes to one random node). The engine keeps the
//! scan state itself, in a per-backend [`Store`] keyed by a random cursor
//! handle:
//!
//! * which of the 16384 slots are *done* (their keys have been returned);
//! * the node being scanned (its address, the slot ranges it served when
//!   its scan started, and its own SCAN cursor).
//!
//! A step picks the first slot that is not done, asks the cluster
//! (`CLUSTER SLOTS`) which primary serves it, and SCANs that node by
//! address (the node cursor only means something on the node that issued
//! it). When the node's SCAN completes, the node is asked for its own view
//! (`CLUSTER NODES`, its `myself` line): the slots it served when its scan
//! started and still serves as a primary are marked done. A slot that moved
//! away meanwhile (failover, resharding) is scanned again on its new owner.
//! On an error from the node (connection lost, failover, LOADING, ...) the
//! step re-reads the topology and starts that node's part again from
//! cursor 0 on the slot's current primary, until the request's deadline;
//! a step that fails at its deadline (a node that hangs) leaves its handle
//! set to do the same on the retry.
//! So every key that exists for the whole scan is returned at least once;
//! keys may repeat after a failover or a slot move (keys of slots already
//! done are filtered out, which removes most of those repeats).
//!
//! Cursor handles: each step returns a new handle; the handle a step was
//! made from stays valid until the next step (made from the new handle)
//! arrives, so a step whose completion was lost can be retried with the
//! same handle (it gives the same keys again, or later ones). Handles idle
//! for [`IDLE_EXPIRY`] are forgotten; at most [`MAX_LIVE`] live per backend
//! (then `Overloaded`); an unknown handle is `InvalidRequest`.
//!
//! Standalone: a plain SCAN; the cursor is the server's own (no state).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use tokio::time::Instant;
use tracing::{debug, warn};
use vshm_protocol::msg::{ClientError, Completion, ErrorKind, Request, Route, Value};

use super::backend::{check_standalone_route, invalid, timed_out, Backend, Kind};
use super::cluster::Cluster;
use crate::keys::slot_of;
use crate::value::{convert, map_error, server_error};

/// Live cursor handles per backend.
pub(crate) const MAX_LIVE: usize = 4096;

/// A handle not used for this long is forgotten.
pub(crate) const IDLE_EXPIRY: Duration = Duration::from_secs(600);

/// Pause before retrying after a node error.
const RETRY_GAP: Duration = Duration::from_millis(100);

const SLOTS: usize = 16384;

/// The options of one scan step.
pub(crate) struct ScanOpts<'a> {
    pub(crate) pattern: Option<&'a [u8]>,
    pub(crate) count: u32,
    pub(crate) type_filter: Option<&'a [u8]>,
}

#[derive(Clone, Debug)]
struct NodeScan {
    host: String,
    port: u16,
    /// The slot ranges the node served when its scan started.
    owned: Vec<(u16, u16)>,
    /// The node's SCAN cursor (decimal text, as the server sent it).
    cursor: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Position {
    done: Box<[u64; SLOTS / 64]>,
    node: Option<NodeScan>,
}

impl Position {
    fn new() -> Position {
        Position {
            done: Box::new([0; SLOTS / 64]),
            node: None,
        }
    }

    #[cfg(test)]
    fn is_done(&self, slot: u16) -> bool {
        slot_done(&self.done, slot)
    }

    fn mark(&mut self, from: u16, to: u16) {
        for s in from..=to.min(SLOTS as u16 - 1) {
            let s = usize::from(s);
            self.done[s / 64] |= 1 << (s % 64);
        }
    }

    fn first_pending(&self) -> Option<u16> {
        self.done
            .iter()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)
            .map(|(i, w)| (i * 64 + w.trailing_ones() as usize) as u16)
    }
}

fn slot_done(done: &[u64; SLOTS / 64], slot: u16) -> bool {
    let s = usize::from(slot);
    done[s / 64] & (1 << (s % 64)) != 0
}

struct Entry {
    pos: Position,
    used: Instant,
    /// The handle this position was stepped from (0: none), dropped once
    /// this one is used.
    parent: u64,
}

/// The live cluster scans of one backend.
#[derive(Default)]
pub(crate) struct Store {
    map: Mutex<HashMap<u64, Entry>>,
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The position of a live handle.
    fn get(&self, handle: u64) -> Option<Position> {
        let mut map = self.lock();
        let e = map.get_mut(&handle)?;
        if e.used.elapsed() >= IDLE_EXPIRY {
            map.remove(&handle);
            return None;
        }
        e.used = Instant::now();
        Some(e.pos.clone())
    }

    /// Store the position reached from `from` under a new handle; the
    /// handle `from` was made from is dropped (the client has moved on).
    fn advance(&self, from: u64, pos: Position) -> Result<u64, ClientError> {
        let mut map = self.lock();
        self.forget_parent(&mut map, from);
        if map.len() >= MAX_LIVE {
            map.retain(|_, e| e.used.elapsed() < IDLE_EXPIRY);
        }
        if map.len() >= MAX_LIVE {
            return Err(ClientError::new(
                ErrorKind::Overloaded,
                format!(
                    "{MAX_LIVE} cluster scan cursors are live on this backend; finish or abandon some (they expire after {} s idle)",
                    IDLE_EXPIRY.as_secs()
                ),
            ));
        }
        let handle = loop {
            let h = rand::random_range(1..=i64::MAX as u64);
            if !map.contains_key(&h) {
                break h;
            }
        };
        map.insert(
            handle,
            Entry {
                pos,
                used: Instant::now(),
                parent: from,
            },
        );
        Ok(handle)
    }

    /// A step from `handle` failed: its retry re-reads the topology and
    /// starts the node's part again from cursor 0 (the node may be gone).
    fn reset_node(&self, handle: u64) {
        if let Some(e) = self.lock().get_mut(&handle) {
            e.pos.node = None;
        }
    }

    /// The scan finished from `from`: drop its parent (`from` itself
    /// stays until it expires, so a retried last step still works).
    fn finished(&self, from: u64) {
        let mut map = self.lock();
        self.forget_parent(&mut map, from);
    }

    fn forget_parent(&self, map: &mut HashMap<u64, Entry>, from: u64) {
        if let Some(parent) = map.get(&from).map(|e| e.parent) {
            if parent != 0 {
                map.remove(&parent);
            }
        }
    }

    /// Live handles.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn scan_cmd(cursor: &[u8], opts: &ScanOpts<'_>) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor);
    if let Some(p) = opts.pattern {
        cmd.arg("MATCH").arg(p);
    }
    if opts.count > 0 {
        cmd.arg("COUNT").arg(opts.count);
    }
    if let Some(t) = opts.type_filter {
        cmd.arg("TYPE").arg(t);
    }
    cmd
}

fn bytes_of(v: &redis::Value) -> Option<&[u8]> {
    match v {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        redis::Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

fn bad_reply(what: &str) -> ClientError {
    ClientError::new(ErrorKind::Connection, format!("unexpected {what} reply"))
}

/// `[cursor, [keys...]]` of a SCAN reply.
fn parse_scan(v: redis::Value) -> Result<(Vec<u8>, Vec<redis::Value>), ClientError> {
    match v {
        redis::Value::ServerError(e) => Err(server_error(&e)),
        redis::Value::Array(mut items) if items.len() == 2 => {
            let keys = match items.pop() {
                Some(redis::Value::Array(k)) | Some(redis::Value::Set(k)) => k,
                _ => return Err(bad_reply("SCAN")),
            };
            let cursor = items
                .first()
                .and_then(bytes_of)
                .ok_or_else(|| bad_reply("SCAN"))?
                .to_vec();
            Ok((cursor, keys))
        }
        _ => Err(bad_reply("SCAN")),
    }
}

/// A server cursor (decimal u64 text) as the wire's integer (the u64's
/// bits, as `i64`).
fn cursor_value(cursor: &[u8]) -> Result<i64, ClientError> {
    std::str::from_utf8(cursor)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|c| c as i64)
        .ok_or_else(|| bad_reply("SCAN cursor"))
}

/// The slot ranges a node serves as a primary by its own `CLUSTER NODES`
/// (`myself` line); empty when it is not a primary.
fn own_primary_slots(text: &str) -> Vec<(u16, u16)> {
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let flags: Vec<&str> = f[2].split(',').collect();
        if !flags.contains(&"myself") {
            continue;
        }
        if !flags.contains(&"master") {
            return Vec::new();
        }
        return f[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => {
                    let n = s.parse().ok()?;
                    Some((n, n))
                }
            })
            .collect();
    }
    Vec::new()
}

/// Whether an error from a node is worth re-reading the topology and
/// trying again (the node or the cluster is in transition).
fn retryable(e: &ClientError) -> bool {
    match e.kind {
        ErrorKind::Connection | ErrorKind::Timeout => true,
        ErrorKind::Request => ["LOADING", "TRYAGAIN", "BUSY", "MASTERDOWN", "CLUSTERDOWN"]
            .iter()
            .any(|c| e.message.starts_with(c)),
        _ => false,
    }
}

async fn bounded<T>(
    deadline: Instant,
    what: &str,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout_at(deadline, fut).await {
        Err(_) => Err(ClientError::new(
            ErrorKind::Timeout,
            format!("{what} did not answer in time"),
        )),
        Ok(r) => r.map_err(|e| map_error(&e)),
    }
}

/// One attempt of a step: returns the keys to give back and updates `pos`.
async fn attempt(
    cluster: &Cluster,
    conn: &mut ClusterConnection,
    pos: &mut Position,
    opts: &ScanOpts<'_>,
    deadline: Instant,
) -> Result<Vec<Value>, ClientError> {
    if pos.node.is_none() {
        let Some(slot) = pos.first_pending() else {
            return Ok(Vec::new());
        };
        let topology = match tokio::time::timeout_at(deadline, cluster.shards(true)).await {
            Ok(t) => t?,
            Err(_) => {
                return Err(ClientError::new(
                    ErrorKind::Timeout,
                    "cluster topology timed out",
                ))
            }
        };
        let primary = topology
            .iter()
            .find(|s| s.start <= slot && slot <= s.end)
            .map(|s| &s.primary)
            .ok_or_else(|| {
                ClientError::new(
                    ErrorKind::Connection,
                    format!("slot {slot} is not served by any node"),
                )
            })?;
        let owned = topology
            .iter()
            .filter(|s| s.primary == *primary)
            .map(|s| (s.start, s.end))
            .collect();
        debug!(node = %primary, first_slot = slot, "cluster scan: next node");
        pos.node = Some(NodeScan {
            host: primary.host.clone(),
            port: primary.port,
            owned,
            cursor: b"0".to_vec(),
        });
    }
    let Some(node) = pos.node.as_mut() else {
        return Ok(Vec::new());
    };
    let by_address = || {
        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: node.host.clone(),
            port: node.port,
        })
    };
    let reply = bounded(
        deadline,
        "SCAN",
        conn.route_command(scan_cmd(&node.cursor, opts), by_address()),
    )
    .await?;
    let (next, keys) = parse_scan(reply)?;
    let done = &pos.done;
    let keys: Vec<Value> = keys
        .into_iter()
        .filter(|k| bytes_of(k).is_none_or(|b| !slot_done(done, slot_of(b))))
        .map(convert)
        .collect();
    if next.as_slice() != b"0" {
        node.cursor = next;
        return Ok(keys);
    }
    // The node's part is complete: its slots are done if it still serves
    // them as a primary, by its own account.
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("NODES");
    let view = bounded(
        deadline,
        "CLUSTER NODES",
        conn.route_command(cmd, by_address()),
    )
    .await;
    let finished = pos.node.take();
    match (view, finished) {
        (Ok(v), Some(node)) => {
            let text = bytes_of(&v)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let now = own_primary_slots(&text);
            for &(a, b) in &node.owned {
                for &(c, d) in &now {
                    let (from, to) = (a.max(c), b.min(d));
                    if from <= to {
                        pos.mark(from, to);
                    }
                }
            }
        }
        (Err(e), Some(node)) => {
            debug!(node = %format!("{}:{}", node.host, node.port), error = %e, "cluster scan: cannot confirm the node's slots; scanning them again");
        }
        (_, None) => {}
    }
    Ok(keys)
}

fn step_reply(next: i64, keys: Vec<Value>) -> Completion {
    Completion::Ok(Value::Array(vec![Value::Int(next), Value::Array(keys)]))
}

impl Backend {
    /// Run one `Op::ClusterScan` step (see the module docs).
    pub(super) async fn run_scan(
        &self,
        req: &Request,
        cursor: u64,
        opts: ScanOpts<'_>,
    ) -> Result<Completion, ClientError> {
        let bound = self.request_timeout(req.timeout_ms);
        let deadline = Instant::now() + bound;
        match &self.kind {
            Kind::Standalone { shared, .. } => {
                check_standalone_route(shared, &req.route)?;
                let cmd = scan_cmd(cursor.to_string().as_bytes(), &opts);
                let (mut conn, generation) = shared.get(deadline).await?;
                let r =
                    match tokio::time::timeout_at(deadline, conn.send_packed_command(&cmd)).await {
                        Err(_) => return Err(timed_out("SCAN", bound)),
                        Ok(r) => r,
                    };
                let v = r.map_err(|e| {
                    shared.report(generation, &e);
                    map_error(&e)
                })?;
                let (next, keys) = parse_scan(v)?;
                Ok(step_reply(
                    cursor_value(&next)?,
                    keys.into_iter().map(convert).collect(),
                ))
            }
            Kind::Cluster { shared, .. } => {
                if req.route != Route::Auto {
                    return Err(invalid(
                        "a cluster scan covers the whole cluster: use Route::Auto (a SCAN command with an Address route scans one node)",
                    ));
                }
                self.cluster_scan(shared, cursor, &opts, deadline, bound)
                    .await
            }
        }
    }

    async fn cluster_scan(
        &self,
        cluster: &Cluster,
        handle: u64,
        opts: &ScanOpts<'_>,
        deadline: Instant,
        bound: Duration,
    ) -> Result<Completion, ClientError> {
        let mut pos = if handle == 0 {
            Position::new()
        } else {
            self.scans.get(handle).ok_or_else(|| {
                invalid(format!(
                    "unknown cluster scan cursor {handle} (never issued, finished, or expired after {} s idle): start again with cursor 0",
                    IDLE_EXPIRY.as_secs()
                ))
            })?
        };
        let mut conn = cluster.conn();
        loop {
            match attempt(cluster, &mut conn, &mut pos, opts, deadline).await {
                Ok(keys) => {
                    if pos.first_pending().is_none() {
                        self.scans.finished(handle);
                        return Ok(step_reply(0, keys));
                    }
                    let next = self.scans.advance(handle, pos)?;
                    return Ok(step_reply(next as i64, keys));
                }
                Err(e) if !retryable(&e) => return Err(e),
                Err(e) => {
                    let now = Instant::now();
                    if now >= deadline {
                        if handle != 0 {
                            self.scans.reset_node(handle);
                        }
                        return Err(ClientError::new(
                            ErrorKind::Timeout,
                            format!(
                                "cluster scan step timed out after {} ms (last error: {})",
                                bound.as_millis(),
                                e.message
                            ),
                        ));
                    }
                    if let Some(n) = pos.node.take() {
                        warn!(node = %format!("{}:{}", n.host, n.port), error = %e, "cluster scan: node failed; restarting its slots from cursor 0");
                    } else {
                        debug!(error = %e, "cluster scan: topology read failed; retrying");
                    }
                    tokio::time::sleep_until(deadline.min(now + RETRY_GAP)).await;
                    // The shared connection may have been rebuilt.
                    conn = cluster.conn();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let mut p = Position::new();
        assert_eq!(p.first_pending(), Some(0));
        p.mark(0, 100);
        assert_eq!(p.first_pending(), Some(101));
        assert!(p.is_done(100) && !p.is_done(101));
        p.mark(101, 16383);
        assert_eq!(p.first_pending(), None);
        let mut q = Position::new();
        q.mark(0, 63);
        q.mark(65, 16383);
        assert_eq!(q.first_pending(), Some(64));
        // Out-of-range ends are clamped.
        let mut r = Position::new();
        r.mark(16000, u16::MAX);
        assert!(r.is_done(16383));
    }

    #[test]
    fn store_handles() {
        let s = Store::default();
        assert!(s.get(42).is_none());
        let a = s.advance(0, Position::new()).unwrap();
        assert!(a > 0 && a <= i64::MAX as u64);
        let b = s.advance(a, Position::new()).unwrap();
        // `a` stays until a step from `b` arrives.
        assert!(s.get(a).is_some());
        let c = s.advance(b, Position::new()).unwrap();
        assert!(s.get(a).is_none());
        assert!(s.get(b).is_some() && s.get(c).is_some());
        s.finished(c);
        assert!(s.get(b).is_none());
        assert!(s.get(c).is_some());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn store_is_bounded() {
        let s = Store::default();
        for _ in 0..MAX_LIVE {
            s.advance(0, Position::new()).unwrap();
        }
        let e = s.advance(0, Position::new()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Overloaded);
    }

    #[test]
    fn cluster_nodes_myself() {
        let text = "\
07c3 127.0.0.1:30004@40004 master - 0 1 1 connected 0-5460 7000 [5461->-abc]
e7d1 127.0.0.1:30002@40002 myself,master - 0 0 2 connected 5461-6999 7001-10922
aaaa 127.0.0.1:30005@40005 slave e7d1 0 0 2 connected";
        assert_eq!(own_primary_slots(text), [(5461, 6999), (7001, 10922)]);
        let replica = "e7d1 127.0.0.1:30002@40002 myself,slave 07c3 0 0 2 connected";
        assert!(own_primary_slots(replica).is_empty());
        assert!(own_primary_slots("garbage").is_empty());
    }

    #[test]
    fn replies() {
        use redis::Value as R;
        let v = R::Array(vec![
            R::BulkString(b"17".to_vec()),
            R::Array(vec![R::BulkString(b"k".to_vec())]),
        ]);
        let (c, k) = parse_scan(v).unwrap();
        assert_eq!(c, b"17");
        assert_eq!(k.len(), 1);
        assert!(parse_scan(R::Nil).is_err());
        assert_eq!(cursor_value(b"18446744073709551615").unwrap(), -1);
        assert!(cursor_value(b"x").is_err());
    }
}
