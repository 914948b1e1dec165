//! The daemon's own life: kill -9 with clients waiting (each gets a
//! connection error well within its timeout, and the same client objects
//! work again once the daemon is back), and SIGTERM with requests in
//! flight (each completes or gets a Closing error; exit code 0).

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use vshm_protocol::sync::{AtomicBool, Ordering};

use common::{client_rows, Servers, Vshmd};
use vshm_client::client::{into_result, ClientOptions};
use vshm_client::daemon::{DaemonClient, Reconnecting};
use vshm_protocol::msg::{ErrorKind, Route, Value};
use vshm_protocol::register::Settings;

fn reconnecting(socket: &std::path::Path, name: &str) -> Arc<Reconnecting> {
    Arc::new(Reconnecting::new(
        socket.to_path_buf(),
        Settings {
            client_name: Some(name.into()),
            ..Settings::default()
        },
        Duration::from_secs(5),
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        },
    ))
}

#[test]
fn daemon_killed_while_clients_wait_then_restarted() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let mut d = Vshmd::start("", Servers::Standalone(&server.addr()), "");
    let request_timeout = Duration::from_secs(15);
    let clients: Vec<_> = (0..4)
        .map(|i| reconnecting(&d.socket, &format!("waiter-{i}")))
        .collect();
    for c in &clients {
        c.get().unwrap().call(&[b"PING"]).unwrap();
    }
    // Each waits on a BLPOP that nobody will serve for 10 s.
    let waiters: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, rc)| {
            let rc = rc.clone();
            std::thread::spawn(move || {
                let c = rc.get().unwrap();
                let key = format!("lifecycle:empty:{i}");
                let r = c.call_routed(
                    &[b"BLPOP", key.as_bytes(), b"10"],
                    &Route::Auto,
                    Some(request_timeout),
                );
                (r, Instant::now())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = d.stats();
        let waiting = client_rows(&s).iter().filter(|r| r[8] == "1").count();
        if waiting == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "BLPOPs not in flight:\n{s}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let t0 = Instant::now();
    d.kill9();
    for w in waiters {
        let (r, at) = w.join().unwrap();
        let took = at.duration_since(t0);
        let e = r.expect_err("the daemon is dead");
        println!("waiter got {:?} after {took:?}: {}", e.kind, e.message);
        assert_eq!(e.kind, ErrorKind::Connection, "{}", e.message);
        assert!(took < request_timeout, "error only after {took:?}");
    }
    // While it is down, calls fail fast with a connection error.
    let e = clients[0].get().err().expect("no daemon");
    assert_eq!(e.kind, ErrorKind::Connection);

    // Back up on the same socket path (the dead daemon's file is stale).
    d.restart();
    for (i, rc) in clients.iter().enumerate() {
        let key = format!("lifecycle:again:{i}");
        let c = rc.get().expect("re-registered");
        c.call(&[b"SET", key.as_bytes(), b"back"]).unwrap();
        assert_eq!(
            c.call(&[b"GET", key.as_bytes()]).unwrap(),
            Value::Bulk(b"back".to_vec())
        );
        assert_eq!(
            rc.registrations.load(Ordering::Relaxed),
            2,
            "one new registration"
        );
    }
    assert_eq!(d.clients(), 4);
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let mut d = Vshmd::start(
        "shutdown_grace_ms = 4000",
        Servers::Standalone(&server.addr()),
        "",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(5));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (stop, started, socket) = (stop.clone(), started.clone(), d.socket.clone());
            std::thread::spawn(move || {
                let c = DaemonClient::connect(
                    &socket,
                    &Settings::default(),
                    Duration::from_secs(5),
                    ClientOptions {
                        request_timeout: Duration::from_secs(5),
                        ..ClientOptions::default()
                    },
                )
                .unwrap();
                let mut results = Vec::new();
                let mut first = true;
                'outer: while !stop.load(Ordering::Relaxed) {
                    // A window of 20: two BLPOPs that take 1 s, 18 quick ones.
                    let mut ids = Vec::new();
                    for n in 0..20 {
                        let key = format!("term:{i}:{n}");
                        let r = if n < 2 {
                            c.submit(&[b"BLPOP", key.as_bytes(), b"1"], &Route::Auto, None)
                        } else {
                            c.submit(&[b"INCR", key.as_bytes()], &Route::Auto, None)
                        };
                        match r {
                            Ok(id) => ids.push(id),
                            Err(e) => {
                                results.push((Err(e), Instant::now()));
                                break;
                            }
                        }
                    }
                    if first {
                        started.wait();
                        first = false;
                    }
                    let mut failed = false;
                    for id in ids {
                        let r = c.wait(id, None).and_then(into_result);
                        failed |= r.is_err();
                        results.push((r, Instant::now()));
                    }
                    if failed || results.last().is_some_and(|r| r.0.is_err()) {
                        break 'outer;
                    }
                }
                results
            })
        })
        .collect();
    started.wait();
    // Every worker has a window with two 1 s BLPOPs in flight now.
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let status = d.sigterm(Duration::from_secs(15));
    println!("vshmd exited {status} {:?} after SIGTERM", t0.elapsed());
    assert_eq!(status.code(), Some(0), "exit code");
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut ok_after, mut closing) = (0, 0, 0);
    for w in workers {
        for (r, at) in w.join().unwrap() {
            match r {
                Ok(_) => {
                    ok += 1;
                    if at > t0 {
                        ok_after += 1;
                    }
                }
                Err(e) if e.kind == ErrorKind::Closing => closing += 1,
                Err(e) => panic!("a request got {:?}: {}", e.kind, e.message),
            }
        }
    }
    println!("completed {ok} ({ok_after} after SIGTERM), closing errors {closing}");
    assert!(
        ok_after > 0,
        "in-flight requests completed during the drain"
    );
    assert!(closing >= 4, "every worker ends with a Closing error");
    let log = d.log_text();
    assert!(
        log.contains("draining") && log.contains("drained; exiting"),
        "{log}"
    );
    // No new registrations: the socket is gone.
    assert!(!d.socket.exists());
    let e = DaemonClient::connect(
        &d.socket,
        &Settings::default(),
        Duration::from_secs(2),
        ClientOptions::default(),
    )
    .err()
    .expect("no daemon");
    assert_eq!(e.kind, ErrorKind::Connection);
}
