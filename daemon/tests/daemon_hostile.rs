//! Hostile clients against the real vshmd (issue 8, items 2 and 4).
//!
//! A `vshm-hostile` process registers through the real handshake and then
//! lies in its own segment (one lie per registration, then random
//! scribbles with a printed seed, then a flood) while well-behaved clients
//! run sequential SET/GET: the daemon disconnects every client whose ring
//! is corrupt with the reason in its log, answers framing-level lies with
//! exactly one error completion, stays up, and the others see no error.
//! Their latency before and during the hostile phase is printed, never
//! asserted (timing is not a test's business here).
//!
//! A client that stops reading completions gets backpressure (the daemon
//! stops taking its requests at the in-flight limit) while the others
//! carry on and the daemon's memory stays bounded; killed with `kill -9`,
//! its segment and requests are reclaimed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicU8, Ordering};

use common::{client_rows, memfd_maps, output_bounded, spawn_tied, Servers, Vshmd};
use vshm_client::client::ClientOptions;
use vshm_client::daemon::DaemonClient;
use vshm_protocol::msg::Value;
use vshm_protocol::register::Settings;

const HOSTILE: &str = env!("CARGO_BIN_EXE_vshm-hostile");

/// Resident set of `pid` in KiB.
fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// Phases of the good clients.
const BASELINE: u8 = 0;
const HOSTILE_PHASE: u8 = 1;
const STOP: u8 = 2;

struct Good {
    errors: Vec<String>,
    /// Latencies (µs) of each call, per phase.
    lat: [Vec<u64>; 2],
}

/// `n` well-behaved clients running SET/GET one at a time until STOP.
fn good_clients(
    socket: &std::path::Path,
    n: usize,
    tag: &'static str,
    phase: &Arc<AtomicU8>,
) -> Vec<std::thread::JoinHandle<Good>> {
    (0..n)
        .map(|i| {
            let (socket, phase) = (socket.to_owned(), phase.clone());
            std::thread::spawn(move || {
                let c = DaemonClient::connect(
                    &socket,
                    &Settings {
                        client_name: Some(format!("good-{i}")),
                        ..Settings::default()
                    },
                    Duration::from_secs(5),
                    ClientOptions {
                        request_timeout: Duration::from_secs(5),
                        ..ClientOptions::default()
                    },
                )
                .expect("good client registers");
                let mut g = Good {
                    errors: Vec::new(),
                    lat: [Vec::new(), Vec::new()],
                };
                let mut k = 0u64;
                loop {
                    let p = phase.load(Ordering::Relaxed);
                    if p == STOP {
                        break;
                    }
                    let key = format!("{tag}:{}:{i}:{}", std::process::id(), k % 16);
                    let val = format!("{i}-{k}");
                    let t = Instant::now();
                    let set = c.call(&[b"SET", key.as_bytes(), val.as_bytes()]);
                    g.lat[p as usize].push(t.elapsed().as_micros() as u64);
                    let t = Instant::now();
                    let get = c.call(&[b"GET", key.as_bytes()]);
                    g.lat[p as usize].push(t.elapsed().as_micros() as u64);
                    match (set, get) {
                        (Ok(_), Ok(Value::Bulk(v))) if v == val.as_bytes() => {}
                        other => g.errors.push(format!("{other:?}")),
                    }
                    k += 1;
                }
                g
            })
        })
        .collect()
}

fn percentile(v: &mut [u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Stop the good clients; assert they saw no error; print their latency.
fn finish_good(phase: &AtomicU8, threads: Vec<std::thread::JoinHandle<Good>>, what: &str) {
    phase.store(STOP, Ordering::Relaxed);
    let mut all = [Vec::new(), Vec::new()];
    for t in threads {
        let g = t.join().expect("good client thread");
        assert!(
            g.errors.is_empty(),
            "a good client saw errors during {what}: {:?}",
            &g.errors[..g.errors.len().min(3)]
        );
        for (p, (all, lat)) in all.iter_mut().zip(&g.lat).enumerate() {
            assert!(!lat.is_empty(), "a good client made no call in phase {p}");
            all.extend_from_slice(lat);
        }
    }
    for (p, name) in [(0, "baseline"), (1, what)] {
        let n = all[p].len();
        let p50 = percentile(&mut all[p], 0.5);
        let p99 = percentile(&mut all[p], 0.99);
        println!("good clients, {name}: {n} calls, p50 {p50} us, p99 {p99} us");
    }
}

fn wait_clients(d: &Vshmd, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.clients() != n {
        assert!(
            Instant::now() < deadline,
            "expected {n} clients:\n{}",
            d.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run_hostile(d: &Vshmd, args: &[&str]) -> String {
    let child = spawn_tied(
        Command::new(HOSTILE)
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("spawn vshm-hostile");
    let (st, out, err) = output_bounded(child, Duration::from_secs(90));
    println!("vshm-hostile {}:\n{out}{err}", args.join(" "));
    assert!(
        st.expect("vshm-hostile finished in time").success(),
        "vshm-hostile {args:?} failed: {err}"
    );
    out
}

#[test]
fn hostile_clients_are_disconnected_and_others_see_nothing() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start("", Servers::Standalone(&server.addr()), "");
    let phase = Arc::new(AtomicU8::new(BASELINE));
    let good = good_clients(&d.socket, 3, "hostile", &phase);
    wait_clients(&d, 3);
    std::thread::sleep(Duration::from_millis(1500));
    let rss0 = rss_kib(d.pid());
    let maps0 = memfd_maps(d.pid());

    phase.store(HOSTILE_PHASE, Ordering::Relaxed);
    let out = run_hostile(&d, &["scenarios"]);
    let seed = format!("{}", rand_seed());
    let rnd = run_hostile(&d, &["random", "--seed", &seed, "--iterations", "40"]);
    let flood = run_hostile(&d, &["flood", "--secs", "2"]);
    finish_good(&phase, good, "hostile phase");

    // Every lie got its answer.
    let outcome = |name: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(&format!("scenario {name} ")))
            .unwrap_or_else(|| panic!("no line for scenario {name}:\n{out}"))
            .to_string()
    };
    assert!(outcome("bad-magic").contains("outcome=served ok=10/10"));
    assert!(outcome("huge-total").contains("outcome=refused-and-served"));
    assert!(outcome("huge-counts").contains("state=OPEN"));
    // The good clients' calls (checked by `finish_good`) kept completing
    // meanwhile: the daemon's thread was never held by this client.
    assert!(outcome("empty-fragments").contains("state=OPEN"));
    let log = d.log_text();
    for (name, reason) in [
        ("lying-length", "record longer than max_record"),
        ("past-tail", "record extends past tail or end of ring"),
        (
            "tail-past-end",
            "producer tail moved backwards or past capacity",
        ),
        (
            "tail-backwards",
            "producer tail moved backwards or past capacity",
        ),
        (
            "head-backwards",
            "consumer head moved backwards or past the tail",
        ),
        ("interleave", "fragments of a refused message interleaved"),
    ] {
        let line = outcome(name);
        assert!(line.contains("outcome=disconnected state=BROKEN"), "{line}");
        let label = format!(":hostile-{name}:");
        assert!(
            log.lines().any(|l| l.contains("client segment corrupt")
                && l.contains(&label)
                && l.contains(reason)),
            "no log line for {name} ({reason}):\n{log}"
        );
    }
    assert!(log.contains("disconnecting client: its segment is corrupt"));
    assert!(rnd.contains("random done"), "{rnd}");
    assert!(flood.contains("errors=0"), "{flood}");

    // Still serving, everything of the hostile processes reclaimed, and
    // the memory bounded.
    wait_clients(&d, 0);
    let c = DaemonClient::connect(
        &d.socket,
        &Settings::default(),
        Duration::from_secs(5),
        ClientOptions::default(),
    )
    .expect("daemon still registers clients");
    assert_eq!(
        c.call(&[b"PING"]).expect("PING"),
        Value::Simple(b"PONG".to_vec())
    );
    drop(c);
    wait_clients(&d, 0);
    assert_eq!(memfd_maps(d.pid()), maps0 - 3);
    let rss1 = rss_kib(d.pid());
    println!("daemon RSS: {rss0} KiB before the hostile phase, {rss1} KiB after");
    assert!(
        rss1 < rss0 + 64 * 1024,
        "daemon RSS grew from {rss0} to {rss1} KiB"
    );
}

fn rand_seed() -> u64 {
    std::env::var("VSHM_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

#[test]
fn slow_consumer_gets_backpressure_and_dead_one_is_reclaimed() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start(
        "",
        Servers::Standalone(&server.addr()),
        "[limits]\nmax_inflight = 64\n",
    );
    let phase = Arc::new(AtomicU8::new(BASELINE));
    let good = good_clients(&d.socket, 2, "slow", &phase);
    wait_clients(&d, 2);
    std::thread::sleep(Duration::from_millis(1000));
    let maps0 = memfd_maps(d.pid());
    let rss0 = rss_kib(d.pid());

    phase.store(HOSTILE_PHASE, Ordering::Relaxed);
    let mut slow = spawn_tied(
        Command::new(HOSTILE)
            .arg("--socket")
            .arg(&d.socket)
            .args(["slow", "--cq", "4096"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )
    .expect("spawn slow consumer");
    let mut line = String::new();
    BufReader::new(slow.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    println!("{}", line.trim());
    assert!(line.starts_with("slow submitted="), "{line}");
    let unconsumed: u64 = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("unconsumed_bytes="))
        .and_then(|v| v.parse().ok())
        .expect("unconsumed_bytes");
    assert!(
        unconsumed > 0,
        "the daemon should stop draining a client that reads nothing: {line}"
    );
    assert!(
        line.contains("state=OPEN"),
        "backpressure, not a disconnect: {line}"
    );
    // The daemon holds exactly the in-flight limit for it, and takes no
    // more while it reads nothing.
    let row = |s: &str| {
        client_rows(s)
            .into_iter()
            .find(|r| r[3] == "hostile-slow")
            .unwrap_or_else(|| panic!("no hostile-slow row:\n{s}"))
    };
    let r1 = row(&d.stats());
    std::thread::sleep(Duration::from_millis(500));
    let r2 = row(&d.stats());
    println!("slow consumer row: {r2:?}");
    assert_eq!(r2[8], "64", "in flight at the limit");
    assert_eq!(r1[6], r2[6], "no request taken while it reads nothing");
    let rss1 = rss_kib(d.pid());
    println!("daemon RSS: {rss0} KiB before the slow consumer, {rss1} KiB with it");
    assert!(rss1 < rss0 + 64 * 1024);

    // kill -9 with requests in flight and ring space held: reclaimed.
    slow.kill().unwrap();
    let _ = slow.wait();
    wait_clients(&d, 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while memfd_maps(d.pid()) != maps0 {
        assert!(
            Instant::now() < deadline,
            "segment of the dead client still mapped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(d.log_text().contains("dropped_inflight"));
    std::thread::sleep(Duration::from_millis(300));
    finish_good(&phase, good, "slow consumer phase");
}
