//! Statistics: a snapshot of the daemon (clients, requests, errors,
//! latency percentiles, connections per node, the server links and the
//! cluster topology of every live backend) rendered as text for
//! `vshmd stats` or as Prometheus exposition text.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use vshm_core::dispatch::latency::{bucket_upper, BUCKETS};
use vshm_core::net::{LinkState, NodeStats, TopologyStats};

/// Bucket counts of a latency histogram (see `vshm_core::dispatch::latency`).
#[derive(Clone, Debug)]
pub struct Hist(pub Vec<u64>);

impl Default for Hist {
    fn default() -> Self {
        Hist(vec![0; BUCKETS])
    }
}

impl Hist {
    pub fn add(&mut self, other: &[u64]) {
        for (a, b) in self.0.iter_mut().zip(other) {
            *a += b;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The value (µs, bucket upper bound) below which `q` of the samples
    /// fall; None without samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.0.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_upper(i));
            }
        }
        Some(bucket_upper(BUCKETS - 1))
    }

    pub fn max(&self) -> Option<u64> {
        self.0.iter().rposition(|&c| c > 0).map(bucket_upper)
    }

    /// Approximate sum in µs (each sample at its bucket's midpoint).
    pub fn approx_sum_us(&self) -> f64 {
        let mut sum = 0.0;
        let mut lo = 0u64;
        for (i, c) in self.0.iter().enumerate() {
            let hi = bucket_upper(i);
            sum += *c as f64 * (lo + hi) as f64 / 2.0;
            lo = hi + 1;
        }
        sum
    }

    /// Samples at or below `le_us`, counting whole buckets whose upper
    /// bound is at or below it.
    pub fn cumulative(&self, le_us: u64) -> u64 {
        self.0
            .iter()
            .enumerate()
            .take_while(|(i, _)| bucket_upper(*i) <= le_us)
            .map(|(_, c)| c)
            .sum()
    }
}

/// One registered client.
#[derive(Clone, Debug)]
pub struct ClientRow {
    pub id: u64,
    pub pid: i32,
    pub uid: u32,
    pub name: String,
    pub profile: String,
    pub database: Option<u32>,
    pub requests: u64,
    pub errors: u64,
    pub inflight: usize,
    pub latency: Hist,
    pub up: Duration,
}

/// Everything `vshmd stats` shows.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub version: &'static str,
    pub protocol: u32,
    pub pid: u32,
    pub uptime: Duration,
    pub socket: String,
    pub draining: bool,
    pub registrations: u64,
    pub refused: u64,
    pub pool_size: u32,
    pub backends: usize,
    pub clients: Vec<ClientRow>,
    /// All requests since start (departed clients included).
    pub requests: u64,
    pub errors: u64,
    pub latency: Hist,
    /// TCP connections this process holds, by remote address.
    pub nodes: BTreeMap<String, usize>,
    /// Node addresses the backends know (shown even with 0 connections).
    pub known_nodes: Vec<String>,
    /// The server links of every live backend (`Backend::link_stats`).
    pub links: Vec<BackendLinks>,
    /// When the snapshot was taken (durations such as "reconnecting for"
    /// are measured from it); `None`: when it is rendered.
    pub taken_at: Option<SystemTime>,
}

/// The server links of one live backend.
#[derive(Clone, Debug)]
pub struct BackendLinks {
    /// Names the backend without secrets: pool index, auth profile(s),
    /// database, mode and first address, e.g.
    /// `0:default:db0:standalone:127.0.0.1:6379`.
    pub label: String,
    pub nodes: Vec<NodeStats>,
    /// Cluster backends only.
    pub topology: Option<TopologyStats>,
}

/// Longest last-error text in the node table.
const ERROR_WIDTH: usize = 60;

/// How long a node has been without a connection (`None` unless it is
/// reconnecting).
fn reconnecting_for(state: &LinkState, now: SystemTime) -> Option<Duration> {
    match state {
        LinkState::Reconnecting { since } => {
            Some(now.duration_since(*since).unwrap_or(Duration::ZERO))
        }
        _ => None,
    }
}

fn state_text(state: &LinkState, now: SystemTime) -> String {
    match state {
        LinkState::Connected => "connected".into(),
        LinkState::Reconnecting { .. } => format!(
            "reconnecting for {:.1} s",
            reconnecting_for(state, now)
                .unwrap_or_default()
                .as_secs_f64()
        ),
        LinkState::Closed => "closed".into(),
    }
}

/// Requests per `write` call: how many requests (of all clients) one
/// syscall carried. "-" before the first write.
pub fn req_per_write(requests: u64, writes: u64) -> String {
    if writes == 0 {
        "-".into()
    } else {
        format!("{:.2}", requests as f64 / writes as f64)
    }
}

/// An error text on one line, at most `max` characters ("-" for none).
fn one_line(e: Option<&str>, max: usize) -> String {
    let Some(e) = e else {
        return "-".into();
    };
    let flat: String = e
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.is_empty() {
        return "-".into();
    }
    if flat.chars().count() <= max {
        return flat.to_string();
    }
    let mut out: String = flat.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// Microseconds, human readable.
pub fn fmt_us(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(us) if us < 1000 => format!("{us}us"),
        Some(us) if us < 1_000_000 => format!("{:.1}ms", us as f64 / 1000.0),
        Some(us) => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// Keep what a client sent as its name printable and short.
pub fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .take(48)
        .collect();
    if out.is_empty() {
        out.push('-');
    }
    out
}

/// Largest text sent in one stats reply (a handshake message is at most
/// 64 KiB).
pub const MAX_TEXT: usize = 60_000;

pub fn truncate(mut s: String) -> String {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let cut = s[..MAX_TEXT].rfind('\n').unwrap_or(0);
    s.truncate(cut + 1);
    s.push_str("# ... truncated (too many clients for one reply; use the metrics endpoint)\n");
    s
}

impl Snapshot {
    pub fn node_rows(&self) -> Vec<(String, usize)> {
        let mut rows: BTreeMap<String, usize> =
            self.known_nodes.iter().map(|n| (n.clone(), 0)).collect();
        for (k, v) in &self.nodes {
            *rows.entry(k.clone()).or_default() += v;
        }
        rows.into_iter().collect()
    }

    fn now(&self) -> SystemTime {
        self.taken_at.unwrap_or_else(SystemTime::now)
    }

    /// The server links of every backend: a node table each, and the
    /// topology line of a cluster backend.
    fn links_text(&self, s: &mut String) {
        let now = self.now();
        let _ = writeln!(
            s,
            "server links per backend (REQ/WRITE: requests carried per write syscall, the pipelining across clients):"
        );
        if self.links.is_empty() {
            let _ = writeln!(s, "(no live backend)");
        }
        for b in &self.links {
            let _ = writeln!(s, "backend {}", b.label);
            let _ = writeln!(
                s,
                "  {:<28} {:<24} {:>10} {:>10} {:>9} {:>8} {:>11} {:>8} {:>8}  LAST ERROR",
                "NODE",
                "STATE",
                "REQUESTS",
                "WRITES",
                "REQ/WRITE",
                "CONNECTS",
                "DISCONNECTS",
                "TIMEOUTS",
                "INFLIGHT"
            );
            for n in &b.nodes {
                let _ = writeln!(
                    s,
                    "  {:<28} {:<24} {:>10} {:>10} {:>9} {:>8} {:>11} {:>8} {:>8}  {}",
                    one_line(Some(&n.addr), 64),
                    state_text(&n.state, now),
                    n.requests,
                    n.writes,
                    req_per_write(n.requests, n.writes),
                    n.connects,
                    n.disconnects,
                    n.timeouts,
                    n.inflight,
                    one_line(n.last_error.as_deref(), ERROR_WIDTH)
                );
            }
            if let Some(t) = &b.topology {
                let ago = match t.last_at {
                    Some(at) => format!(
                        "{:.1} s ago",
                        now.duration_since(at).unwrap_or_default().as_secs_f64()
                    ),
                    None => "never".into(),
                };
                let _ = writeln!(
                    s,
                    "  topology: refreshes {} (failures {}, changes {}), last took {:.1} ms, {}, last error: {}; MOVED {}, ASK {}, retries {}; slow-path rebuilds {}",
                    t.refreshes,
                    t.failures,
                    t.changes,
                    t.last_duration.as_secs_f64() * 1000.0,
                    ago,
                    one_line(t.last_error.as_deref(), ERROR_WIDTH),
                    t.moved,
                    t.ask,
                    t.retries,
                    t.slow_path_rebuilds
                );
            }
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "vshmd {} (protocol {}), pid {}, up {:.1} s, socket {}{}",
            self.version,
            self.protocol,
            self.pid,
            self.uptime.as_secs_f64(),
            self.socket,
            if self.draining { ", SHUTTING DOWN" } else { "" }
        );
        let _ = writeln!(
            s,
            "clients: {} registered now, {} registrations since start, {} refused",
            self.clients.len(),
            self.registrations,
            self.refused
        );
        let l = &self.latency;
        let _ = writeln!(
            s,
            "requests: {} total, {} errors; latency p50 {} p90 {} p99 {} p99.9 {} max {}",
            self.requests,
            self.errors,
            fmt_us(l.quantile(0.5)),
            fmt_us(l.quantile(0.9)),
            fmt_us(l.quantile(0.99)),
            fmt_us(l.quantile(0.999)),
            fmt_us(l.max()),
        );
        let _ = writeln!(
            s,
            "pool: pool_size {0} ({0} fast-path and {0} slow-path connection(s) per node per backend), {1} backend(s) live",
            self.pool_size, self.backends
        );
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "per client (latency in the daemon: taken from the ring -> completion queued):"
        );
        let _ = writeln!(
            s,
            "{:>6} {:>8} {:>6} {:<16} {:<10} {:>3} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "ID", "PID", "UID", "NAME", "PROFILE", "DB", "REQUESTS", "ERRORS", "INFLIGHT", "P50", "P99", "P99.9", "MAX",
            "UP"
        );
        for c in &self.clients {
            let _ = writeln!(
                s,
                "{:>6} {:>8} {:>6} {:<16} {:<10} {:>3} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7.0}s",
                c.id,
                c.pid,
                c.uid,
                c.name,
                c.profile,
                c.database.map_or("-".to_string(), |d| d.to_string()),
                c.requests,
                c.errors,
                c.inflight,
                fmt_us(c.latency.quantile(0.5)),
                fmt_us(c.latency.quantile(0.99)),
                fmt_us(c.latency.quantile(0.999)),
                fmt_us(c.latency.max()),
                c.up.as_secs_f64(),
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "per node (TCP connections this daemon holds, all paths; requests per node: see the server links):"
        );
        let _ = writeln!(s, "{:<28} {:>11}", "NODE", "CONNECTIONS");
        let rows = self.node_rows();
        let total: usize = rows.iter().map(|r| r.1).sum();
        for (n, c) in rows {
            let _ = writeln!(s, "{n:<28} {c:>11}");
        }
        let _ = writeln!(s, "{:<28} {:>11}", "total", total);
        let _ = writeln!(s);
        self.links_text(&mut s);
        truncate(s)
    }

    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        let gauge = |s: &mut String, name: &str, help: &str, kind: &str, v: String| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge(
            &mut s,
            "vshmd_up_seconds",
            "Seconds since the daemon started.",
            "gauge",
            format!("{:.3}", self.uptime.as_secs_f64()),
        );
        gauge(
            &mut s,
            "vshmd_draining",
            "1 while shutting down.",
            "gauge",
            u8::from(self.draining).to_string(),
        );
        gauge(
            &mut s,
            "vshmd_clients",
            "Clients registered now.",
            "gauge",
            self.clients.len().to_string(),
        );
        gauge(
            &mut s,
            "vshmd_registrations_total",
            "Registrations accepted since start.",
            "counter",
            self.registrations.to_string(),
        );
        gauge(
            &mut s,
            "vshmd_refused_total",
            "Connections refused (not allowed, bad version, limits, errors).",
            "counter",
            self.refused.to_string(),
        );
        gauge(
            &mut s,
            "vshmd_backends",
            "Live backends (pool key x pool_size).",
            "gauge",
            self.backends.to_string(),
        );
        gauge(
            &mut s,
            "vshmd_requests_total",
            "Requests taken from client rings since start.",
            "counter",
            self.requests.to_string(),
        );
        gauge(
            &mut s,
            "vshmd_errors_total",
            "Requests completed with an error since start.",
            "counter",
            self.errors.to_string(),
        );
        let _ = writeln!(
            s,
            "# HELP vshmd_request_latency_seconds Request latency in the daemon (ring -> completion), all clients.\n# TYPE vshmd_request_latency_seconds histogram"
        );
        for le in [
            50u64, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000,
            500_000, 1_000_000, 2_500_000, 10_000_000,
        ] {
            let _ = writeln!(
                s,
                "vshmd_request_latency_seconds_bucket{{le=\"{}\"}} {}",
                le as f64 / 1e6,
                self.latency.cumulative(le)
            );
        }
        let _ = writeln!(
            s,
            "vshmd_request_latency_seconds_bucket{{le=\"+Inf\"}} {}",
            self.latency.count()
        );
        let _ = writeln!(
            s,
            "vshmd_request_latency_seconds_sum {:.6}",
            self.latency.approx_sum_us() / 1e6
        );
        let _ = writeln!(
            s,
            "vshmd_request_latency_seconds_count {}",
            self.latency.count()
        );

        let per_client: [(&str, &str, &str); 3] = [
            (
                "vshmd_client_requests_total",
                "Requests of one registered client.",
                "counter",
            ),
            (
                "vshmd_client_errors_total",
                "Error completions of one registered client.",
                "counter",
            ),
            (
                "vshmd_client_inflight",
                "Requests of one client in flight in the daemon.",
                "gauge",
            ),
        ];
        for (i, (name, help, kind)) in per_client.iter().enumerate() {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for c in &self.clients {
                let v = match i {
                    0 => c.requests,
                    1 => c.errors,
                    _ => c.inflight as u64,
                };
                let _ = writeln!(s, "{name}{{{}}} {v}", client_labels(c));
            }
        }
        let _ = writeln!(
            s,
            "# HELP vshmd_client_latency_seconds Request latency of one client in the daemon.\n# TYPE vshmd_client_latency_seconds summary"
        );
        for c in &self.clients {
            for q in [0.5, 0.9, 0.99, 0.999] {
                if let Some(v) = c.latency.quantile(q) {
                    let _ = writeln!(
                        s,
                        "vshmd_client_latency_seconds{{{},quantile=\"{q}\"}} {}",
                        client_labels(c),
                        v as f64 / 1e6
                    );
                }
            }
            let _ = writeln!(
                s,
                "vshmd_client_latency_seconds_sum{{{}}} {:.6}\nvshmd_client_latency_seconds_count{{{}}} {}",
                client_labels(c),
                c.latency.approx_sum_us() / 1e6,
                client_labels(c),
                c.latency.count()
            );
        }
        let _ = writeln!(
            s,
            "# HELP vshmd_node_connections TCP connections the daemon holds to a server node.\n# TYPE vshmd_node_connections gauge"
        );
        for (n, c) in self.node_rows() {
            let _ = writeln!(s, "vshmd_node_connections{{node=\"{}\"}} {c}", escape(&n));
        }
        self.links_prometheus(&mut s);
        s
    }

    /// Per node and per cluster topology metrics of every backend.
    fn links_prometheus(&self, s: &mut String) {
        let now = self.now();
        type NodeValue = fn(&NodeStats, SystemTime) -> String;
        let per_node: [(&str, &str, &str, NodeValue); 8] = [
            (
                "vshmd_node_connected",
                "1 while the backend's connection to the node is up, else 0.",
                "gauge",
                |n, _| u8::from(n.state == LinkState::Connected).to_string(),
            ),
            (
                "vshmd_node_reconnecting_seconds",
                "Seconds the node has been without a connection (0 when connected).",
                "gauge",
                |n, now| {
                    format!(
                        "{:.3}",
                        reconnecting_for(&n.state, now)
                            .unwrap_or_default()
                            .as_secs_f64()
                    )
                },
            ),
            (
                "vshmd_node_requests_total",
                "Requests submitted to the node.",
                "counter",
                |n, _| n.requests.to_string(),
            ),
            (
                "vshmd_node_writes_total",
                "write syscalls on the node's connections (requests_total / writes_total: requests per write).",
                "counter",
                |n, _| n.writes.to_string(),
            ),
            (
                "vshmd_node_connects_total",
                "Connections to the node established (the first included).",
                "counter",
                |n, _| n.connects.to_string(),
            ),
            (
                "vshmd_node_disconnects_total",
                "Connections to the node lost.",
                "counter",
                |n, _| n.disconnects.to_string(),
            ),
            (
                "vshmd_node_timeouts_total",
                "Requests that timed out on the node.",
                "counter",
                |n, _| n.timeouts.to_string(),
            ),
            (
                "vshmd_node_inflight",
                "Replies the node owes now (timed-out requests' included).",
                "gauge",
                |n, _| n.inflight.to_string(),
            ),
        ];
        for (name, help, kind, value) in per_node {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for b in &self.links {
                for n in &b.nodes {
                    let _ = writeln!(
                        s,
                        "{name}{{backend=\"{}\",node=\"{}\"}} {}",
                        escape(&b.label),
                        escape(&n.addr),
                        value(n, now)
                    );
                }
            }
        }
        type TopoValue = fn(&TopologyStats) -> String;
        let per_topology: [(&str, &str, &str, TopoValue); 6] = [
            (
                "vshmd_topology_refreshes_total",
                "Cluster topology refreshes run.",
                "counter",
                |t| t.refreshes.to_string(),
            ),
            (
                "vshmd_topology_refresh_failures_total",
                "Topology refreshes in which no node answered with a usable view.",
                "counter",
                |t| t.failures.to_string(),
            ),
            (
                "vshmd_topology_changes_total",
                "Topology refreshes that changed the slot map.",
                "counter",
                |t| t.changes.to_string(),
            ),
            (
                "vshmd_topology_last_refresh_seconds",
                "Duration of the last topology refresh.",
                "gauge",
                |t| format!("{:.6}", t.last_duration.as_secs_f64()),
            ),
            (
                "vshmd_topology_retries_total",
                "Requests sent again after a \"not executed\" error (TRYAGAIN, LOADING, CLUSTERDOWN, ...).",
                "counter",
                |t| t.retries.to_string(),
            ),
            (
                "vshmd_slow_path_rebuilds_total",
                "Times the slow paths' cluster connection was rebuilt.",
                "counter",
                |t| t.slow_path_rebuilds.to_string(),
            ),
        ];
        let clusters: Vec<(&BackendLinks, &TopologyStats)> = self
            .links
            .iter()
            .filter_map(|b| b.topology.as_ref().map(|t| (b, t)))
            .collect();
        for (name, help, kind, value) in per_topology {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (b, t) in &clusters {
                let _ = writeln!(s, "{name}{{backend=\"{}\"}} {}", escape(&b.label), value(t));
            }
        }
        let _ = writeln!(
            s,
            "# HELP vshmd_topology_last_refresh_timestamp_seconds Unix time the last topology refresh ended.\n# TYPE vshmd_topology_last_refresh_timestamp_seconds gauge"
        );
        for (b, t) in &clusters {
            if let Some(at) = t.last_at {
                let _ = writeln!(
                    s,
                    "vshmd_topology_last_refresh_timestamp_seconds{{backend=\"{}\"}} {:.3}",
                    escape(&b.label),
                    at.duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64()
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP vshmd_topology_redirects_total MOVED and ASK replies seen.\n# TYPE vshmd_topology_redirects_total counter"
        );
        for (b, t) in &clusters {
            for (kind, v) in [("moved", t.moved), ("ask", t.ask)] {
                let _ = writeln!(
                    s,
                    "vshmd_topology_redirects_total{{backend=\"{}\",kind=\"{kind}\"}} {v}",
                    escape(&b.label)
                );
            }
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn client_labels(c: &ClientRow) -> String {
    format!(
        "client=\"{}\",pid=\"{}\",uid=\"{}\",name=\"{}\",profile=\"{}\"",
        c.id,
        c.pid,
        c.uid,
        escape(&c.name),
        escape(&c.profile)
    )
}

/// Established TCP connections of this process, counted by remote
/// address, leaving out those whose local port is in `skip_local_ports`
/// (the metrics listener's). Read from /proc: our socket inodes
/// (/proc/self/fd) matched against /proc/self/net/tcp{,6}.
pub fn tcp_peers(skip_local_ports: &[u16]) -> BTreeMap<String, usize> {
    let mut inodes = HashSet::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_link(e.path()) {
                let t = t.to_string_lossy();
                if let Some(n) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(n) = n.parse::<u64>() {
                        inodes.insert(n);
                    }
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for (file, v6) in [("/proc/self/net/tcp", false), ("/proc/self/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue; // not ESTABLISHED
            }
            let Ok(inode) = f[9].parse::<u64>() else {
                continue;
            };
            if !inodes.contains(&inode) {
                continue;
            }
            let (Some(local), Some(remote)) = (parse_hex_addr(f[1], v6), parse_hex_addr(f[2], v6))
            else {
                continue;
            };
            if skip_local_ports.contains(&local.port()) {
                continue;
            }
            *out.entry(remote.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// `0100007F:1F90` (IPv4, host-order words) or the 32-hex-digit IPv6 form.
fn parse_hex_addr(s: &str, v6: bool) -> Option<std::net::SocketAddr> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    if !v6 {
        let w = u32::from_str_radix(a, 16).ok()?;
        let ip = std::net::Ipv4Addr::from(w.to_le_bytes());
        return Some((ip, port).into());
    }
    if a.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for i in 0..4 {
        let w = u32::from_str_radix(&a[i * 8..i * 8 + 8], 16).ok()?;
        bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    let ip = std::net::Ipv6Addr::from(bytes);
    let ip: std::net::IpAddr = match ip.to_ipv4_mapped() {
        Some(v4) => v4.into(),
        None => ip.into(),
    };
    Some((ip, port).into())
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
