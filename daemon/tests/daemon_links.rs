//! Server link statistics end to end: `vshmd stats` and the metrics
//! endpoint show a standalone backend's node connected with requests and
//! write syscalls counted; with the server stopped, the node shows
//! reconnecting with a last error; with it back, connected again.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Servers, Vshmd};
use vshm_client::client::ClientOptions;
use vshm_client::daemon::DaemonClient;
use vshm_protocol::register::Settings;
use vshm_tests::RedisServer;

/// `vshmd stats` through the binary, as an operator runs it.
fn stats_text(d: &Vshmd) -> String {
    let out = d.stats_cli(false);
    assert!(
        out.status.success(),
        "vshmd stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stats")
}

/// The node-table row of `addr` (indented, unlike the TCP connection
/// table), split on whitespace with the state as one field:
/// [node, state, requests, writes, req/write, connects, disconnects,
/// timeouts, inflight, last error...].
fn node_row(stats: &str, addr: &str) -> Option<Vec<String>> {
    let line = stats
        .lines()
        .find(|l| l.starts_with("  ") && l.trim_start().starts_with(&format!("{addr} ")))?;
    let mut f: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    if f.get(1).map(String::as_str) == Some("reconnecting") {
        // "reconnecting for N.N s"
        let state = f.drain(1..5).collect::<Vec<_>>().join(" ");
        f.insert(1, state);
    }
    Some(f)
}

fn metrics_addr(d: &Vshmd) -> String {
    let log = d.log_text();
    log.split("metrics=Some(")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
        .to_string()
}

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    out
}

/// The value of metric `name` for node `node` (any backend).
fn node_metric(metrics: &str, name: &str, node: &str) -> Option<f64> {
    let label = format!("node=\"{node}\"");
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Poll `f` (every 50 ms) until it returns Some, for at most `bound`.
fn poll<T>(bound: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + bound;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    Instant::now() < deadline,
                    "{what} not seen within {bound:?}; last:\n{last}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn node_links_show_connected_reconnecting_and_back() {
    vshm_tests::ensure_redis();
    let mut server = RedisServer::start();
    let addr = server.addr();
    let d = Vshmd::start(
        "metrics_addr = \"127.0.0.1:0\"",
        Servers::Standalone(&addr),
        "",
    );
    let maddr = metrics_addr(&d);
    let c = DaemonClient::connect(
        &d.socket,
        &Settings::default(),
        Duration::from_secs(5),
        ClientOptions::default(),
    )
    .expect("register");
    for i in 0..50 {
        let k = format!("links:{i}");
        c.call(&[b"SET", k.as_bytes(), b"v"]).expect("SET");
        c.call(&[b"GET", k.as_bytes()]).expect("GET");
    }

    // Connected, with requests and writes counted.
    let bound = Duration::from_secs(20);
    let row = poll(bound, "node connected with requests", || {
        let s = stats_text(&d);
        match node_row(&s, &addr) {
            Some(r) if r[1] == "connected" && r[2].parse::<u64>().unwrap_or(0) >= 100 => Ok(r),
            _ => Err(s),
        }
    });
    let writes: u64 = row[3].parse().expect("writes");
    assert!(writes > 0, "{row:?}");
    assert_ne!(row[4], "-", "{row:?}");
    assert!(row[4].parse::<f64>().expect("req/write") > 0.0, "{row:?}");
    let s = stats_text(&d);
    println!("{s}");
    assert!(s.contains("REQ/WRITE") && s.contains("LAST ERROR"), "{s}");
    assert!(
        s.contains(&format!("backend 0:default:db0:standalone:{addr}")),
        "{s}"
    );
    let m = scrape(&maddr);
    assert_eq!(
        node_metric(&m, "vshmd_node_connected", &addr),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        node_metric(&m, "vshmd_node_reconnecting_seconds", &addr),
        Some(0.0),
        "{m}"
    );
    assert!(
        node_metric(&m, "vshmd_node_requests_total", &addr).unwrap_or(0.0) >= 100.0,
        "{m}"
    );
    assert!(
        node_metric(&m, "vshmd_node_writes_total", &addr).unwrap_or(0.0) > 0.0,
        "{m}"
    );
    assert!(
        node_metric(&m, "vshmd_node_connects_total", &addr).unwrap_or(0.0) >= 1.0,
        "{m}"
    );

    // Server gone: reconnecting, with the reason.
    server.stop();
    let row = poll(bound, "node reconnecting with a last error", || {
        let s = stats_text(&d);
        match node_row(&s, &addr) {
            Some(r) if r[1].starts_with("reconnecting for ") && r[9] != "-" => Ok(r),
            _ => Err(s),
        }
    });
    println!("while down: {row:?}");
    assert!(row[6].parse::<u64>().expect("disconnects") >= 1, "{row:?}");
    let m = poll(bound, "metrics showing the node down", || {
        let m = scrape(&maddr);
        if node_metric(&m, "vshmd_node_connected", &addr) == Some(0.0) {
            Ok(m)
        } else {
            Err(m)
        }
    });
    assert!(
        node_metric(&m, "vshmd_node_disconnects_total", &addr).unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    assert!(
        node_metric(&m, "vshmd_node_reconnecting_seconds", &addr).is_some(),
        "{m}"
    );

    // Back: connected again, a second connection counted.
    server.restart();
    let row = poll(bound, "node connected again", || {
        let s = stats_text(&d);
        match node_row(&s, &addr) {
            Some(r) if r[1] == "connected" => Ok(r),
            _ => Err(s),
        }
    });
    assert!(row[5].parse::<u64>().expect("connects") >= 2, "{row:?}");
    poll(bound, "a request through the daemon again", || {
        c.call(&[b"PING"]).map(|_| ()).map_err(|e| e.message)
    });
    let m = scrape(&maddr);
    assert_eq!(
        node_metric(&m, "vshmd_node_connected", &addr),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        node_metric(&m, "vshmd_node_reconnecting_seconds", &addr),
        Some(0.0),
        "{m}"
    );
}
