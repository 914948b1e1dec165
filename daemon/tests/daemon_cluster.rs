//! 32 client processes through one vshmd against the 6-node cluster:
//! every command succeeds and checks out, the connections the servers hold
//! do not grow with the number of processes, and the same workload run
//! directly (redis crate cluster client per process) shows what the daemon
//! replaces. `vshmd stats` is read live while the workers run.
//!
//! One test in this binary: it counts every connection the shared cluster
//! holds, so nothing else may use the cluster at the same time.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, Ordering};

use common::{client_rows, parse_clients, spawn_tied, Servers, Vshmd, WORKER};

struct BenchResult {
    summary: String,
    /// node -> (before, during)
    conns: BTreeMap<String, (usize, usize)>,
    total_during: usize,
    /// `vshmd stats` taken while the workers were held connected.
    held_stats: Option<String>,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

/// Run `vshm-demo-worker bench` with `--hold`; while held, `on_hold` runs.
fn bench(
    mode: &str,
    procs: u32,
    ops: u64,
    nodes: &[String],
    daemon: Option<&Vshmd>,
) -> BenchResult {
    let mut cmd = Command::new(WORKER);
    cmd.args([
        "bench",
        "--mode",
        mode,
        "--procs",
        &procs.to_string(),
        "--ops",
        &ops.to_string(),
    ])
    .arg("--nodes")
    .arg(nodes.join(","))
    .arg("--hold")
    // 32 processes on a few cores: clients park at once instead of
    // spinning and yielding first (which takes the daemon's CPU).
    .env("VSHM_DEMO_WAIT", "park")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if let Some(d) = daemon {
        cmd.arg("--socket").arg(&d.socket);
    }
    let mut child = spawn_tied(&mut cmd).expect("spawn bench");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(200);
    let mut res = BenchResult {
        summary: String::new(),
        conns: BTreeMap::new(),
        total_during: 0,
        held_stats: None,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("bench {mode} {procs} did not finish in time");
            }
        };
        println!("{line}");
        if line.starts_with("bench ") {
            res.summary = line.clone();
        } else if line.starts_with("conns ") {
            if line.contains(" total ") {
                res.total_during = field(&line, "during").unwrap().parse().unwrap();
                // Everyone still connected: look at the daemon now.
                if let Some(d) = daemon {
                    let out = d.stats_cli(false);
                    assert!(
                        out.status.success(),
                        "vshmd stats failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    res.held_stats = Some(String::from_utf8_lossy(&out.stdout).to_string());
                }
                child
                    .stdin
                    .as_mut()
                    .unwrap()
                    .write_all(b"release\n")
                    .unwrap();
                break;
            }
            let node = field(&line, "node").unwrap().to_string();
            let b = field(&line, "before").unwrap().parse().unwrap();
            let d = field(&line, "during").unwrap().parse().unwrap();
            res.conns.insert(node, (b, d));
        }
    }
    drop(child.stdin.take());
    let st = common::wait_bounded(&mut child, Duration::from_secs(30)).expect("bench exits");
    assert!(
        st.success(),
        "bench {mode} {procs} failed ({st}): {}",
        res.summary
    );
    res
}

#[test]
fn many_processes_share_the_daemons_connections() {
    vshm_tests::ensure_redis();
    let cluster = vshm_tests::shared_cluster();
    let nodes = cluster.addrs();
    // (Keys right after the [server] section belong to it.) The engine's
    // periodic topology check sends CLUSTER SLOTS to a random node, which
    // may open one more connection (to a replica) at any moment: off here,
    // so that the counts compare like with like.
    let d = Vshmd::start(
        "",
        Servers::Cluster(&nodes),
        "topology_refresh_interval_ms = 0\n",
    );

    // Watch the daemon's stats while the 32 workers run.
    let stop = Arc::new(AtomicBool::new(false));
    let best = Arc::new(Mutex::new((0usize, String::new())));
    let watcher = {
        let (stop, best, socket) = (stop.clone(), best.clone(), d.socket.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(t) = vshm_client::daemon::stats(&socket, false, Duration::from_secs(5)) {
                    let busy = client_rows(&t)
                        .iter()
                        .filter(|r| r[8] != "0" || r[6] != "0")
                        .count();
                    let mut b = best.lock().unwrap();
                    if parse_clients(&t) >= b.0 && busy > 0 {
                        *b = (parse_clients(&t), t);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let small = bench("daemon", 4, 500, &nodes, Some(&d));
    let big = bench("daemon", 32, 2000, &nodes, Some(&d));
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let direct = bench("direct", 32, 2000, &nodes, None);

    // The daemon: the same connections whatever the number of processes.
    for (node, (_, during)) in &big.conns {
        assert_eq!(
            Some(during),
            small.conns.get(node).map(|c| &c.1),
            "connections on {node} grew with the number of processes: 4 procs {:?}, 32 procs {during}",
            small.conns.get(node)
        );
        assert!(*during <= 2, "{node}: daemon holds {during} connections");
    }
    // Direct: each process connects to every node it routes to.
    let direct_added: usize = direct.conns.values().map(|(b, d)| d - b).sum();
    let primaries_hit = direct.conns.values().filter(|(b, d)| d - b >= 32).count();
    assert!(
        primaries_hit >= 3,
        "direct workers should hold >= 32 connections per primary: {:?}",
        direct.conns
    );
    assert!(big.total_during < 32, "daemon total {}", big.total_during);

    // Stats while held: 32 workers, each 2000 commands (+3 setup), no errors.
    let held = big.held_stats.expect("stats while held");
    let rows: Vec<_> = client_rows(&held)
        .into_iter()
        .filter(|r| r[3].starts_with("worker-"))
        .collect();
    assert_eq!(rows.len(), 32, "{held}");
    for r in &rows {
        assert_eq!(r[6], "2003", "requests of {r:?}");
        assert_eq!(r[7], "0", "errors of {r:?}");
    }
    let per_node = held.split("per node (").nth(1).expect("per-node section");
    assert!(per_node.lines().any(|l| l.starts_with("total")), "{held}");
    let prom = d.stats_cli(true);
    let prom = String::from_utf8_lossy(&prom.stdout);
    assert!(prom.contains("vshmd_requests_total"), "{prom}");
    assert!(prom.contains("vshmd_node_connections{node="), "{prom}");

    println!("\n=== connections the servers hold (CLIENT LIST, all 6 nodes) ===");
    println!("through vshmd, 4 processes:  {}", small.total_during);
    println!("through vshmd, 32 processes: {}", big.total_during);
    println!("direct, 32 processes:        {direct_added} (added by the workers)");
    println!("{}\n{}\n{}", small.summary, big.summary, direct.summary);
    let (n, sample) = best.lock().unwrap().clone();
    println!("\n=== vshmd stats under load ({n} clients) ===\n{sample}");
    println!("=== vshmd stats while 32 workers are connected ===\n{held}");
}
