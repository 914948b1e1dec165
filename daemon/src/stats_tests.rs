//! Tests of `stats.rs` (rendering of `vshmd stats`, Prometheus text, helpers).

use super::*;

#[test]
fn quantiles() {
    let mut h = Hist::default();
    assert_eq!(h.quantile(0.5), None);
    let mut b = vec![0u64; BUCKETS];
    b[10] = 90;
    b[20] = 9;
    b[31] = 1;
    h.add(&b);
    assert_eq!(h.quantile(0.5), Some(10));
    assert_eq!(h.quantile(0.9), Some(10));
    assert_eq!(h.quantile(0.99), Some(20));
    assert_eq!(h.quantile(1.0), Some(31));
    assert_eq!(h.max(), Some(31));
    assert_eq!(h.cumulative(20), 99);
}

#[test]
fn hex_addrs() {
    assert_eq!(
        parse_hex_addr("0100007F:1F90", false).unwrap().to_string(),
        "127.0.0.1:8080"
    );
    assert_eq!(
        parse_hex_addr("0000000000000000FFFF00000100007F:1F90", true)
            .unwrap()
            .to_string(),
        "127.0.0.1:8080"
    );
    assert_eq!(
        parse_hex_addr("00000000000000000000000001000000:0050", true)
            .unwrap()
            .to_string(),
        "[::1]:80"
    );
}

#[test]
fn sees_own_tcp_connection() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let _c = std::net::TcpStream::connect(addr).unwrap();
    let (_s, _) = l.accept().unwrap();
    let peers = tcp_peers(&[]);
    assert!(
        peers.get(&addr.to_string()).copied().unwrap_or(0) >= 1,
        "{peers:?}"
    );
    let peers = tcp_peers(&[addr.port()]);
    assert_eq!(
        peers.get(&addr.to_string()).copied().unwrap_or(0),
        1,
        "{peers:?}"
    );
}

fn node(addr: &str, state: LinkState, requests: u64, writes: u64) -> NodeStats {
    NodeStats {
        addr: addr.into(),
        state,
        last_error: None,
        requests,
        writes,
        connects: 1,
        disconnects: 0,
        connect_attempts: 1,
        recent_attempts: Vec::new(),
        timeouts: 0,
        inflight: 0,
        deadlines: 0,
    }
}

fn links_snapshot() -> Snapshot {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut down = node(
        "10.0.0.2:6380",
        LinkState::Reconnecting {
            since: now - Duration::from_millis(12_340),
        },
        7,
        0,
    );
    down.last_error = Some(format!("connection refused\n{}", "x".repeat(200)));
    down.connects = 2;
    down.disconnects = 2;
    down.timeouts = 3;
    let mut up = node("10.0.0.1:6379", LinkState::Connected, 1000, 400);
    up.inflight = 5;
    Snapshot {
        taken_at: Some(now),
        links: vec![
            BackendLinks {
                label: "0:default:db0:standalone:127.0.0.1:6379".into(),
                nodes: vec![node("127.0.0.1:6379", LinkState::Closed, 0, 0)],
                topology: None,
            },
            BackendLinks {
                label: "1:default:db0:cluster:10.0.0.1:6379".into(),
                nodes: vec![
                    up,
                    down,
                    node("odd\"host\\\n:1", LinkState::Connected, 3, 3),
                ],
                topology: Some(TopologyStats {
                    refreshes: 42,
                    failures: 4,
                    changes: 2,
                    last_duration: Duration::from_micros(3_250),
                    last_at: Some(now - Duration::from_secs(90)),
                    last_error: Some("no node answered".into()),
                    moved: 11,
                    ask: 6,
                    retries: 9,
                    slow_path_rebuilds: 1,
                }),
            },
        ],
        ..Snapshot::default()
    }
}

#[test]
fn link_table_text() {
    let t = links_snapshot().text();
    for col in [
        "NODE",
        "STATE",
        "REQUESTS",
        "WRITES",
        "REQ/WRITE",
        "CONNECTS",
        "DISCONNECTS",
        "TIMEOUTS",
        "INFLIGHT",
        "LAST ERROR",
    ] {
        assert!(t.contains(col), "no {col} in:\n{t}");
    }
    assert!(
        t.contains("backend 1:default:db0:cluster:10.0.0.1:6379"),
        "{t}"
    );
    let row = |addr: &str| {
        t.lines()
            .find(|l| l.trim_start().starts_with(addr))
            .unwrap_or_else(|| panic!("no row {addr} in:\n{t}"))
            .to_string()
    };
    let up = row("10.0.0.1:6379");
    assert!(up.contains(" connected "), "{up}");
    // 1000 requests in 400 writes.
    assert!(up.contains(" 2.50 "), "{up}");
    let down = row("10.0.0.2:6380");
    assert!(down.contains("reconnecting for 12.3 s"), "{down}");
    assert!(down.contains("connection refused x"), "{down}");
    assert!(down.trim_end().ends_with("..."), "{down}");
    assert!(down.len() < 200, "error not truncated: {down}");
    // No writes: no ratio.
    let cols: Vec<&str> = down.split_whitespace().collect();
    assert_eq!(
        &cols[5..13],
        ["7", "0", "-", "2", "2", "3", "0", "connection"]
    );
    assert!(row("127.0.0.1:6379").contains(" closed "));
    let topo = t
        .lines()
        .find(|l| l.contains("topology:"))
        .unwrap_or_else(|| panic!("no topology line in:\n{t}"));
    for part in [
        "refreshes 42 (failures 4, changes 2)",
        "last took 3.2 ms",
        "90.0 s ago",
        "last error: no node answered",
        "MOVED 11, ASK 6, retries 9",
        "slow-path rebuilds 1",
    ] {
        assert!(topo.contains(part), "no {part:?} in {topo}");
    }
    // One topology line: the standalone backend has none.
    assert_eq!(t.matches("topology:").count(), 1);
    assert!(Snapshot::default().text().contains("(no live backend)"));
}

#[test]
fn link_metrics() {
    let m = links_snapshot().prometheus();
    let b = "backend=\"1:default:db0:cluster:10.0.0.1:6379\"";
    let up = format!("{b},node=\"10.0.0.1:6379\"");
    let down = format!("{b},node=\"10.0.0.2:6380\"");
    for line in [
        format!("vshmd_node_connected{{{up}}} 1"),
        format!("vshmd_node_connected{{{down}}} 0"),
        format!("vshmd_node_reconnecting_seconds{{{up}}} 0.000"),
        format!("vshmd_node_reconnecting_seconds{{{down}}} 12.340"),
        format!("vshmd_node_requests_total{{{up}}} 1000"),
        format!("vshmd_node_writes_total{{{up}}} 400"),
        format!("vshmd_node_connects_total{{{down}}} 2"),
        format!("vshmd_node_disconnects_total{{{down}}} 2"),
        format!("vshmd_node_timeouts_total{{{down}}} 3"),
        format!("vshmd_node_inflight{{{up}}} 5"),
        "vshmd_node_connected{backend=\"0:default:db0:standalone:127.0.0.1:6379\",node=\"127.0.0.1:6379\"} 0".into(),
        format!("vshmd_topology_refreshes_total{{{b}}} 42"),
        format!("vshmd_topology_refresh_failures_total{{{b}}} 4"),
        format!("vshmd_topology_changes_total{{{b}}} 2"),
        format!("vshmd_topology_last_refresh_seconds{{{b}}} 0.003250"),
        format!("vshmd_topology_last_refresh_timestamp_seconds{{{b}}} 1699999910.000"),
        format!("vshmd_topology_redirects_total{{{b},kind=\"moved\"}} 11"),
        format!("vshmd_topology_redirects_total{{{b},kind=\"ask\"}} 6"),
        format!("vshmd_topology_retries_total{{{b}}} 9"),
        format!("vshmd_slow_path_rebuilds_total{{{b}}} 1"),
        // Escaped label value.
        format!("vshmd_node_requests_total{{{b},node=\"odd\\\"host\\\\\\n:1\"}} 3"),
    ] {
        assert!(m.lines().any(|l| l == line), "no line {line:?} in:\n{m}");
    }
    for name in [
        "vshmd_node_connected",
        "vshmd_node_reconnecting_seconds",
        "vshmd_node_requests_total",
        "vshmd_node_writes_total",
        "vshmd_node_connects_total",
        "vshmd_node_disconnects_total",
        "vshmd_node_timeouts_total",
        "vshmd_node_inflight",
        "vshmd_topology_refreshes_total",
        "vshmd_topology_refresh_failures_total",
        "vshmd_topology_changes_total",
        "vshmd_topology_last_refresh_seconds",
        "vshmd_topology_redirects_total",
        "vshmd_topology_retries_total",
        "vshmd_slow_path_rebuilds_total",
    ] {
        assert_eq!(m.matches(&format!("# TYPE {name} ")).count(), 1, "{name}");
        assert_eq!(m.matches(&format!("# HELP {name} ")).count(), 1, "{name}");
    }
    // No topology series for the standalone backend.
    assert!(!m.contains("vshmd_topology_refreshes_total{backend=\"0:"));
    // Every sample line is `name{labels} number` or `name number`.
    for l in m.lines().filter(|l| !l.starts_with('#')) {
        let v = l.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "bad sample line {l:?}");
    }
}

#[test]
fn names_are_sanitized_and_text_is_bounded() {
    assert_eq!(sanitize("a b\n\x07c"), "a_bc");
    assert_eq!(sanitize(""), "-");
    let mut snap = Snapshot::default();
    for i in 0..2000 {
        snap.clients.push(ClientRow {
            id: i,
            pid: 1,
            uid: 0,
            name: "x".into(),
            profile: "default".into(),
            database: None,
            requests: 0,
            errors: 0,
            inflight: 0,
            latency: Hist::default(),
            up: Duration::ZERO,
        });
    }
    let t = snap.text();
    assert!(t.len() <= MAX_TEXT + 200);
    assert!(t.ends_with("endpoint)\n"));
    assert!(snap
        .prometheus()
        .contains("vshmd_client_requests_total{client=\"1999\""));
}
