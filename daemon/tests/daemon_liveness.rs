//! Client death and fork(): a client killed with 1,000 requests in flight
//! is reclaimed within a second (segment, mappings, in-flight requests)
//! while the other clients carry on without an error; a process that forks
//! after registering gets a fresh registration in every child, and nobody
//! sees anyone else's replies.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, AtomicU64, Ordering};

use common::{client_rows, memfd_maps, output_bounded, spawn_tied, Servers, Vshmd, WORKER};
use vshm_client::client::ClientOptions;
use vshm_client::daemon::Reconnecting;
use vshm_protocol::msg::Value;
use vshm_protocol::register::Settings;

fn flood_row(stats: &str) -> Option<Vec<String>> {
    client_rows(stats).into_iter().find(|r| r[3] == "flood")
}

#[test]
fn killed_client_is_reclaimed_within_a_second_and_others_carry_on() {
    vshm_tests::ensure_redis();
    let nodes = vshm_tests::shared_cluster().addrs();
    let d = Vshmd::start("", Servers::Cluster(&nodes), "");

    // Other clients keep working all along.
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let others: Vec<_> = (0..4)
        .map(|i| {
            let (stop, ops, socket) = (stop.clone(), ops.clone(), d.socket.clone());
            std::thread::spawn(move || {
                let rc = Reconnecting::new(
                    socket,
                    Settings {
                        client_name: Some(format!("other-{i}")),
                        ..Settings::default()
                    },
                    Duration::from_secs(5),
                    ClientOptions {
                        request_timeout: Duration::from_secs(5),
                        ..ClientOptions::default()
                    },
                );
                let mut errors = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("live:{i}:{}", n % 32);
                    let val = format!("{i}-{n}");
                    let r = rc.get().and_then(|c| {
                        c.call(&[b"SET", key.as_bytes(), val.as_bytes()])?;
                        c.call(&[b"GET", key.as_bytes()])
                    });
                    match r {
                        Ok(Value::Bulk(v)) if v == val.as_bytes() => {}
                        other => errors.push(format!("{other:?} at {:?}", Instant::now())),
                    }
                    n += 1;
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                (errors, rc.registrations.load(Ordering::Relaxed))
            })
        })
        .collect();
    // Let the others register, then take the baseline.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.clients() < 4 {
        assert!(Instant::now() < deadline, "others did not register");
        std::thread::sleep(Duration::from_millis(10));
    }
    let maps_before = memfd_maps(d.pid());

    // A client with 1,000 requests in flight that never reads a completion
    // (a 4 KiB completion ring holds ~100: the rest stay in the daemon).
    let mut flood = spawn_tied(
        Command::new(WORKER)
            .args(["flood", "--requests", "1000", "--cq", "4096", "--socket"])
            .arg(&d.socket)
            .stdout(Stdio::piped()),
    )
    .expect("spawn flood");
    let mut line = String::new();
    BufReader::new(flood.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("submitted 1000"), "flood: {line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let inflight = loop {
        let s = d.stats();
        if let Some(r) = flood_row(&s) {
            if r[6] == "1000" {
                break r[8].parse::<usize>().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "flood requests not all taken:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("flood client: 1000 submitted, {inflight} in flight in the daemon");
    assert!(
        inflight > 500,
        "most requests should be stuck in flight, got {inflight}"
    );
    assert_eq!(memfd_maps(d.pid()), maps_before + 1);

    // kill -9 it in the middle of all that.
    let t0 = Instant::now();
    flood.kill().unwrap();
    let _ = flood.wait();
    let reclaimed = loop {
        let s = d.stats();
        if flood_row(&s).is_none() && memfd_maps(d.pid()) == maps_before {
            break t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "not reclaimed within 1 s:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    println!("flood client reclaimed {reclaimed:?} after kill -9");
    assert_eq!(d.clients(), 4);
    assert!(
        d.log_text().contains("dropped_inflight"),
        "the reclaim is logged"
    );

    // The others saw nothing.
    let before = ops.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for t in others {
        let (errors, regs) = t.join().unwrap();
        assert!(
            errors.is_empty(),
            "other client saw errors: {:?}",
            &errors[..errors.len().min(3)]
        );
        assert_eq!(regs, 1, "other client had to re-register");
    }
    assert!(
        ops.load(Ordering::Relaxed) > before,
        "others kept going after the kill"
    );
}

#[test]
fn forked_children_register_anew_and_see_only_their_replies() {
    vshm_tests::ensure_redis();
    let nodes = vshm_tests::shared_cluster().addrs();
    let d = Vshmd::start("", Servers::Cluster(&nodes), "");
    let child = spawn_tied(
        Command::new(WORKER)
            .args(["prefork", "--children", "8", "--ops", "100", "--socket"])
            .arg(&d.socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("spawn prefork");
    let (st, out, err) = output_bounded(child, Duration::from_secs(60));
    println!("{out}{err}");
    assert!(
        st.expect("prefork finished in time").success(),
        "prefork failed"
    );
    let kids: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("child ") && l.contains(" ok="))
        .collect();
    assert_eq!(kids.len(), 8, "{out}");
    let field = |l: &str, name: &str| -> String {
        l.split_whitespace()
            .find_map(|f| f.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_default()
            .to_string()
    };
    let summary = out
        .lines()
        .find(|l| l.starts_with("prefork "))
        .expect("summary");
    let parent_id = field(summary, "parent_client_id");
    let mut ids = HashSet::new();
    for k in &kids {
        assert_eq!(field(k, "ok"), "100", "{k}");
        assert_eq!(field(k, "problems"), "0", "{k}");
        // Inherited the parent's registration, then made its own.
        assert_eq!(field(k, "registrations"), "2", "{k}");
        assert_ne!(field(k, "client_id"), parent_id, "{k}");
        ids.insert(field(k, "client_id"));
    }
    assert_eq!(ids.len(), 8, "every child has its own registration");
    assert_eq!(field(summary, "children_ok"), "8");
    assert_eq!(
        field(summary, "parent_registrations"),
        "1",
        "the parent is untouched"
    );
    assert_eq!(field(summary, "parent_client_id_after"), parent_id);
    assert_eq!(field(summary, "parent_problems"), "0");
    let stats = d.stats();
    assert!(stats.contains("9 registrations since start"), "{stats}");
}
