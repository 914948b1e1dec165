//! Per-client resource limits of vshmd (issue 8, item 5), each triggered
//! with the clear error it gives: ring sizes above `[segment].max_*_size`
//! are refused at registration, a request above
//! `[limits].max_outstanding_bytes` gets one `Overloaded` completion (the
//! client stays registered), requests that together exceed it wait
//! (backpressure) and all succeed, the in-flight limit stops the daemon
//! from taking more of a client's requests (whose submissions then end
//! with `Overloaded` when its ring stays full), and `max_clients` refuses
//! the next registration. And 1,000 idle clients: all registered, served,
//! and their CPU and memory cost in the daemon printed.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client_rows, spawn_tied, Servers, Vshmd};
use vshm_client::client::ClientOptions;
use vshm_client::daemon::DaemonClient;
use vshm_protocol::msg::{ClientError, ErrorKind, Route, Value};
use vshm_protocol::register::Settings;

const HOSTILE: &str = env!("CARGO_BIN_EXE_vshm-hostile");

fn connect(d: &Vshmd, s: Settings, timeout: Duration) -> Result<DaemonClient, ClientError> {
    DaemonClient::connect(
        &d.socket,
        &s,
        Duration::from_secs(5),
        ClientOptions {
            request_timeout: timeout,
            ..ClientOptions::default()
        },
    )
}

fn named(name: &str) -> Settings {
    Settings {
        client_name: Some(name.into()),
        ..Settings::default()
    }
}

/// A client named `name` with a 4 KiB completion ring (what it does not
/// read waits in the daemon).
fn small_cq(name: &str) -> Settings {
    Settings {
        cq_capacity: 4096,
        ..named(name)
    }
}

/// Until the daemon no longer lists a client named `name` (bounded).
fn wait_unregistered(d: &Vshmd, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while client_rows(&d.stats()).iter().any(|r| r[3] == name) {
        assert!(Instant::now() < deadline, "{name} still registered");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn each_limit_gives_a_clear_error() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start(
        "",
        Servers::Standalone(&server.addr()),
        "[segment]\nmax_sq_size = 1048576\nmax_cq_size = 1048576\n\
         [limits]\nmax_outstanding_bytes = 1048576\nmax_inflight = 16\nmax_clients = 3\n",
    );

    // Segment size: asking for more than the maximum is refused.
    for (sq, cq, key) in [(4 << 20, 0, "max_sq_size"), (0, 4 << 20, "max_cq_size")] {
        let e = connect(
            &d,
            Settings {
                sq_capacity: sq,
                cq_capacity: cq,
                ..Settings::default()
            },
            Duration::from_secs(5),
        )
        .err()
        .expect("an oversized ring is refused");
        println!("ring size refusal: {}", e.message);
        assert_eq!(e.kind, ErrorKind::Connection);
        assert!(
            e.message.contains(&format!("[segment].{key}")),
            "{}",
            e.message
        );
    }

    // Outstanding bytes: one request above the limit gets Overloaded and
    // the client stays; requests under it work, also several at once
    // whose sum is above it (they wait for each other).
    let c = connect(&d, named("bytes"), Duration::from_secs(10)).expect("register");
    let big = vec![b'x'; 2 << 20];
    let e = c
        .call(&[b"SET", b"limits:big", &big])
        .expect_err("a 2 MiB request over a 1 MiB limit");
    println!("outstanding-bytes refusal: {e}");
    assert_eq!(e.kind, ErrorKind::Overloaded);
    assert!(e.message.contains("max_outstanding_bytes"), "{}", e.message);
    let half = vec![b'y'; 600 << 10];
    let ids: Vec<u64> = (0..6)
        .map(|i| {
            c.submit(
                &[b"SET", format!("limits:half:{i}").as_bytes(), &half],
                &Route::Auto,
                None,
            )
            .expect("submit")
        })
        .collect();
    for id in ids {
        let r = c.wait(id, None).expect("completion");
        assert!(matches!(r, vshm_protocol::msg::Completion::Ok(_)), "{r:?}");
    }
    assert_eq!(
        c.call(&[b"STRLEN", b"limits:half:5"]).expect("STRLEN"),
        Value::Int(600 << 10)
    );
    assert!(c.healthy());

    // A client that reads nothing while large replies come back: past
    // twice its byte limit the daemon keeps small Overloaded errors in
    // their place; every request still gets exactly one completion.
    let lazy = connect(&d, small_cq("lazy"), Duration::from_secs(10)).expect("register");
    let value = vec![b'v'; 300 << 10];
    lazy.call(&[b"SET", b"limits:v", &value]).expect("SET");
    let ids: Vec<u64> = (0..16)
        .map(|_| {
            lazy.submit(&[b"GET", b"limits:v"], &Route::Auto, None)
                .expect("submit")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (mut full, mut overloaded) = (0, 0);
    for id in ids {
        match lazy.wait(id, None).expect("completion") {
            vshm_protocol::msg::Completion::Ok(Value::Bulk(v)) if v == value => full += 1,
            vshm_protocol::msg::Completion::Err(e) if e.kind == ErrorKind::Overloaded => {
                assert!(e.message.contains("not reading"), "{e}");
                overloaded += 1
            }
            other => panic!("unexpected completion {other:?}"),
        }
    }
    println!("unread large replies: {full} kept, {overloaded} replaced by Overloaded");
    assert!(
        full >= 1 && overloaded >= 1,
        "{full} kept, {overloaded} replaced"
    );
    assert_eq!(full + overloaded, 16);
    drop(lazy);
    // Its registration is gone before the client limit is tested below.
    wait_unregistered(&d, "lazy");

    // Pub/sub to a client that reads nothing: the messages waiting for it
    // in the daemon are bounded by its byte limit too, not only by count.
    let sub = connect(&d, small_cq("sub"), Duration::from_secs(10)).expect("register");
    let op = vshm_protocol::msg::Op::<vshm_protocol::msg::ArgsRef<'_>>::Subscribe {
        kind: vshm_protocol::msg::SubKind::Exact,
        channels: vec![b"limits:chan".to_vec()],
    };
    let id = sub
        .submit_op(&op, &Route::Auto, None, 0)
        .expect("subscribe");
    let r = sub.wait(id, None).expect("subscribed");
    assert!(matches!(r, vshm_protocol::msg::Completion::Ok(_)), "{r:?}");
    let msg = vec![b'm'; 256 << 10];
    c.call(&[
        b"EVAL",
        b"for i = 1, 40 do redis.call('PUBLISH', KEYS[1], ARGV[1]) end return 1",
        b"1",
        b"limits:chan",
        &msg,
    ])
    .expect("publish 40 messages of 256 KiB");
    std::thread::sleep(Duration::from_millis(500));
    let mut got = 0;
    while let Some(v) = sub.wait_push(Duration::from_millis(500)).expect("push") {
        assert!(matches!(v, Value::Push { .. }), "{v:?}");
        got += 1;
    }
    println!("pushes kept for a client that read nothing: {got} of 40 (256 KiB each)");
    assert!((1..40).contains(&got), "{got} of 40 kept");
    drop(sub);
    wait_unregistered(&d, "sub");

    // In-flight requests: a client that reads nothing has exactly
    // max_inflight requests in the daemon; its next submissions wait for
    // ring space and end with Overloaded.
    let slow = connect(
        &d,
        Settings {
            client_name: Some("stuck".into()),
            sq_capacity: 4096,
            cq_capacity: 4096,
            ..Settings::default()
        },
        Duration::from_millis(300),
    )
    .expect("register");
    let err = loop {
        match slow.submit(&[b"PING"], &Route::Auto, None) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    println!("in-flight limit: submit ended with {err}");
    assert_eq!(err.kind, ErrorKind::Overloaded);
    assert!(err.message.contains("backpressure"), "{}", err.message);
    let row = client_rows(&d.stats())
        .into_iter()
        .find(|r| r[3] == "stuck")
        .expect("stuck row");
    assert_eq!(row[8], "16", "in flight at max_inflight: {row:?}");

    // Clients: the third registration is the last.
    let third = connect(&d, named("third"), Duration::from_secs(1)).expect("third client");
    let e = connect(&d, named("fourth"), Duration::from_secs(1))
        .err()
        .expect("max_clients reached");
    println!("client limit: {}", e.message);
    assert!(e.message.contains("limits.max_clients"), "{}", e.message);
    drop((third, slow, c));
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = &s[s.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // state is field 3 (index 0 here); utime 14 and stime 15 -> 11, 12.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// (Rss, Pss) of `pid` in KiB from smaps_rollup.
fn rss_pss(pid: i32) -> (u64, u64) {
    let t = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let get = |k: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (get("Rss:"), get("Pss:"))
}

#[test]
fn a_thousand_idle_clients_cost_next_to_nothing() {
    vshm_tests::ensure_redis();
    let server = vshm_tests::shared_standalone();
    let d = Vshmd::start("", Servers::Standalone(&server.addr()), "");
    let pid = d.pid();
    let (rss0, pss0) = rss_pss(pid);
    let t0 = Instant::now();
    let mut holders: Vec<Child> = (0..4)
        .map(|_| {
            spawn_tied(
                Command::new(HOSTILE)
                    .arg("--socket")
                    .arg(&d.socket)
                    .args(["idle", "--count", "250"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped()),
            )
            .expect("spawn idle holder")
        })
        .collect();
    for h in &mut holders {
        let mut line = String::new();
        BufReader::new(h.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "idle registered=250");
    }
    let took = t0.elapsed();
    let last = connect(&d, named("last"), Duration::from_secs(5)).expect("client 1,001");
    assert_eq!(d.clients(), 1001);
    assert_eq!(
        last.call(&[b"PING"]).unwrap(),
        Value::Simple(b"PONG".to_vec())
    );
    // Let registration work settle, then measure 10 s of idling.
    std::thread::sleep(Duration::from_secs(1));
    let hz = 100.0; // USER_HZ: 100 on Linux
    let c0 = cpu_ticks(pid);
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let cpu = (cpu_ticks(pid) - c0) as f64 / hz / w0.elapsed().as_secs_f64() * 100.0;
    let (rss1, pss1) = rss_pss(pid);
    println!(
        "1,000 idle clients: registered in {took:?}; daemon CPU {cpu:.2}% of one core over 10 s; \
         RSS {rss0} -> {rss1} KiB ({:.1} KiB/client), PSS {pss0} -> {pss1} KiB ({:.1} KiB/client)",
        (rss1.saturating_sub(rss0)) as f64 / 1001.0,
        (pss1.saturating_sub(pss0)) as f64 / 1001.0,
    );
    assert_eq!(
        last.call(&[b"PING"]).unwrap(),
        Value::Simple(b"PONG".to_vec())
    );
    for mut h in holders {
        drop(h.stdin.take());
        let _ = h.stdin.as_mut().map(|s| s.flush());
        assert!(
            common::wait_bounded(&mut h, Duration::from_secs(20)).is_some(),
            "idle holder did not exit"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.clients() != 1 {
        assert!(Instant::now() < deadline, "idle clients not reclaimed");
        std::thread::sleep(Duration::from_millis(20));
    }
}
