//! The core driven through the rings (in-process mode) against real
//! servers: the path every vshm request takes, end to end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vshm_client::embedded::{EmbeddedCore, EmbeddedOpen};
use vshm_core::config::{Mode, Protocol};
use vshm_core::Config;
use vshm_protocol::msg::{ErrorKind, Route, Value};
use vshm_tests::{shared_cluster, shared_standalone};

fn standalone_cfg() -> Config {
    Config {
        addresses: vec![shared_standalone().addr()],
        mode: Mode::Standalone,
        request_timeout_ms: 2000,
        ..Config::default()
    }
}

fn cluster_cfg() -> Config {
    Config {
        addresses: shared_cluster().addrs(),
        mode: Mode::Cluster,
        request_timeout_ms: 2000,
        ..Config::default()
    }
}

fn bulk(v: &[u8]) -> Value {
    Value::Bulk(v.to_vec())
}

#[test]
fn in_process_mixed_workload_8_threads_100k_commands_zero_lost() {
    let core = EmbeddedCore::start(1).unwrap();
    let client = Arc::new(core.open(&cluster_cfg()).unwrap());
    let start = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let c = client.clone();
            std::thread::spawn(move || {
                let mut ok = 0u32;
                for i in 0..12_500u32 {
                    let key = format!("rings:{t}:{}", i % 100);
                    let val = format!("v{i}");
                    match i % 5 {
                        0 => {
                            assert_eq!(
                                c.call(&[b"SET", key.as_bytes(), val.as_bytes()]).unwrap(),
                                Value::Simple(b"OK".to_vec())
                            );
                            assert_eq!(
                                c.call(&[b"GET", key.as_bytes()]).unwrap(),
                                bulk(val.as_bytes())
                            );
                        }
                        1 => {
                            let k = format!("rings:ctr:{t}");
                            assert!(matches!(
                                c.call(&[b"INCR", k.as_bytes()]).unwrap(),
                                Value::Int(_)
                            ));
                        }
                        2 => {
                            let k = format!("rings:h:{t}");
                            c.call(&[b"HSET", k.as_bytes(), b"f", val.as_bytes()])
                                .unwrap();
                        }
                        3 => {
                            let k = format!("rings:l:{t}");
                            c.call(&[b"LPUSH", k.as_bytes(), val.as_bytes()]).unwrap();
                            c.call(&[b"LTRIM", k.as_bytes(), b"0", b"9"]).unwrap();
                        }
                        _ => {
                            c.call(&[b"EXISTS", key.as_bytes()]).unwrap();
                        }
                    }
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let total: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 100_000);
    let conn = client.attachment();
    let st = &conn.stats;
    let req = st.requests.load(vshm_protocol::sync::Ordering::Relaxed);
    let done = st.completions.load(vshm_protocol::sync::Ordering::Relaxed);
    assert_eq!(req, done, "every request got exactly one completion");
    assert_eq!(st.errors.load(vshm_protocol::sync::Ordering::Relaxed), 0);
    eprintln!("{req} requests in {:?}", start.elapsed());
    drop(client);
    core.shutdown(Duration::from_secs(2));
}

#[test]
fn blpop_on_one_client_does_not_delay_another() {
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = standalone_cfg();
    let a = core.open(&cfg).unwrap();
    let b = core.open(&cfg).unwrap();
    b.call(&[b"SET", b"rings:blpop:probe", b"x"]).unwrap();
    std::thread::scope(|s| {
        let blocker = s.spawn(|| {
            let t0 = Instant::now();
            let r = a
                .call_routed(
                    &[b"BLPOP", b"rings:blpop:empty", b"2"],
                    &Route::Auto,
                    Some(Duration::from_secs(5)),
                )
                .unwrap();
            assert_eq!(r, Value::Nil);
            t0.elapsed()
        });
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(b.call(&[b"GET", b"rings:blpop:probe"]).unwrap(), bulk(b"x"));
        }
        let gets = t0.elapsed();
        let blocked = blocker.join().unwrap();
        assert!(
            blocked >= Duration::from_millis(1900),
            "BLPOP returned after {blocked:?}"
        );
        // The GETs finished while the BLPOP was still blocking.
        assert!(gets < blocked, "1000 GETs took {gets:?}, BLPOP {blocked:?}");
    });
}

#[test]
fn server_errors_timeouts_and_recovery() {
    // A server of its own: DEBUG SLEEP stalls every client of the server.
    let server = vshm_tests::RedisServer::start();
    let core = EmbeddedCore::start(1).unwrap();
    let mut cfg = standalone_cfg();
    cfg.addresses = vec![server.addr()];
    cfg.request_timeout_ms = 300;
    let c = core.open(&cfg).unwrap();
    c.call(&[b"SET", b"rings:str", b"x"]).unwrap();
    let e = c.call(&[b"LPUSH", b"rings:str", b"y"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Request);
    assert!(e.message.contains("WRONGTYPE"), "{}", e.message);
    let t0 = Instant::now();
    let e = c.call(&[b"DEBUG", b"SLEEP", b"0.5"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(
        t0.elapsed() < Duration::from_millis(480),
        "{:?}",
        t0.elapsed()
    );
    // The next command on the same client succeeds (the connection was not
    // dropped; the server answers once its sleep ends, within the timeout).
    assert_eq!(c.call(&[b"GET", b"rings:str"]).unwrap(), bulk(b"x"));
}

#[test]
fn databases_are_isolated_and_state_commands_refused() {
    let core = EmbeddedCore::start(1).unwrap();
    let mut c1 = standalone_cfg();
    c1.database = 1;
    let mut c2 = standalone_cfg();
    c2.database = 2;
    let a = core.open(&c1).unwrap();
    let b = core.open(&c2).unwrap();
    a.call(&[b"SET", b"rings:db", b"one"]).unwrap();
    b.call(&[b"SET", b"rings:db", b"two"]).unwrap();
    assert_eq!(a.call(&[b"GET", b"rings:db"]).unwrap(), bulk(b"one"));
    assert_eq!(b.call(&[b"GET", b"rings:db"]).unwrap(), bulk(b"two"));
    let e = a.call(&[b"SELECT", b"2"]).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert!(
        e.message.to_lowercase().contains("database"),
        "{}",
        e.message
    );
}

#[test]
fn resp3_types_and_big_values_through_the_rings() {
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&standalone_cfg()).unwrap();
    c.call(&[b"DEL", b"rings:h", b"rings:s", b"rings:z"])
        .unwrap();
    c.call(&[b"HSET", b"rings:h", b"f", b"v"]).unwrap();
    c.call(&[b"SADD", b"rings:s", b"m"]).unwrap();
    c.call(&[b"ZADD", b"rings:z", b"1.5", b"m"]).unwrap();
    assert!(matches!(
        c.call(&[b"HGETALL", b"rings:h"]).unwrap(),
        Value::Map(_)
    ));
    assert!(matches!(
        c.call(&[b"SMEMBERS", b"rings:s"]).unwrap(),
        Value::Set(_)
    ));
    assert_eq!(
        c.call(&[b"ZSCORE", b"rings:z", b"m"]).unwrap(),
        Value::Double(1.5)
    );

    let mut cfg2 = standalone_cfg();
    cfg2.protocol = Protocol::Resp2;
    let c2 = core.open(&cfg2).unwrap();
    assert!(matches!(
        c2.call(&[b"HGETALL", b"rings:h"]).unwrap(),
        Value::Array(_)
    ));

    let mut big = standalone_cfg();
    big.request_timeout_ms = 20_000;
    let c3 = core.open(&big).unwrap();
    for size in [0usize, 1 << 20, 64 << 20] {
        let v: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        c3.call(&[b"SET", b"rings:big", &v]).unwrap();
        assert_eq!(
            c3.call(&[b"GET", b"rings:big"]).unwrap(),
            Value::Bulk(v),
            "size {size}"
        );
    }
    c3.call(&[b"DEL", b"rings:big"]).unwrap();
}

#[test]
fn cluster_multi_slot_and_fan_out_through_the_rings() {
    let core = EmbeddedCore::start(1).unwrap();
    let c = core.open(&cluster_cfg()).unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("rings:m:{i}")).collect();
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    for k in &keys {
        mset.push(k.as_bytes());
        mset.push(k.as_bytes());
    }
    c.call(&mset).unwrap();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(keys.iter().map(|k| k.as_bytes()));
    let Value::Array(vals) = c.call(&mget).unwrap() else {
        panic!("MGET not an array")
    };
    let want: Vec<Value> = keys.iter().map(|k| bulk(k.as_bytes())).collect();
    assert_eq!(vals, want);
    let Value::Int(n) = c
        .call_routed(&[b"DBSIZE"], &Route::AllPrimaries, None)
        .unwrap()
    else {
        panic!("DBSIZE not an integer")
    };
    assert!(n >= 30);
}
