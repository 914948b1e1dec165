//! Large replies on a shared backend (issue 13): a bulk reply of 256 KiB or more is received
//! straight into its own buffer and written into the completion ring around the value, not
//! through an archive copy. What every client must still see:
//!
//! * each large value comes back byte for byte, pipelined between small replies of the same
//!   client and of other clients, in both protocols;
//! * nothing around it shifts: every small reply matches its request.
//!
//! Only behaviour is asserted. Every wait is bounded; nothing is retried.

use std::thread;
use vshm_client::embedded::{EmbeddedClient, EmbeddedCore, EmbeddedOpen};
use vshm_core::config::Protocol;
use vshm_protocol::msg::{Completion, Route, Value};
use vshm_tests::shared_standalone;

mod support;
use support::{standalone_cfg, T};

/// A value whose bytes depend on their position and on `seed`: a shifted or mixed-up copy
/// does not compare equal.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

fn ok(c: &EmbeddedClient, args: &[&[u8]]) -> Value {
    c.call_routed(args, &Route::Auto, Some(T))
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(args[0])))
}

/// One client pipelines GETs of large values (around the 256 KiB threshold and well above)
/// between small GETs and PINGs, while three others run SET/GET pairs; every reply must be
/// the one its request asked for.
fn large_replies_between_small_ones(protocol: Protocol) {
    let server = shared_standalone();
    let core = EmbeddedCore::start(1).unwrap();
    let cfg = standalone_cfg(server.addr(), protocol);
    let big = core.open(&cfg).unwrap();
    let tag = format!("lv:{protocol:?}");
    let sizes = [
        256 << 10,
        (256 << 10) - 1,
        (256 << 10) + 1,
        1 << 20,
        3 << 20,
    ];
    let keys: Vec<String> = (0..sizes.len()).map(|i| format!("{tag}:big:{i}")).collect();
    for (i, (k, n)) in keys.iter().zip(sizes).enumerate() {
        ok(&big, &[b"SET", k.as_bytes(), &pattern(n, i as u8)]);
    }
    ok(&big, &[b"SET", format!("{tag}:small").as_bytes(), b"s"]);
    let others: Vec<EmbeddedClient> = (0..3).map(|_| core.open(&cfg).unwrap()).collect();

    let failures: Vec<String> = thread::scope(|s| {
        let workers: Vec<_> = others
            .iter()
            .enumerate()
            .map(|(w, c)| {
                let tag = &tag;
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for i in 0..300 {
                        let k = format!("{tag}:w{w}:{i}");
                        let v = format!("v{w}-{i}");
                        ok(c, &[b"SET", k.as_bytes(), v.as_bytes()]);
                        let got = ok(c, &[b"GET", k.as_bytes()]);
                        if got != Value::Bulk(v.into_bytes()) {
                            failures.push(format!("{k}: {got:?}"));
                        }
                    }
                    failures
                })
            })
            .collect();
        let mut failures = Vec::new();
        for round in 0..4 {
            // Submit everything first: the large replies arrive pipelined with the others.
            let mut want = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                let small = format!("{tag}:small");
                let reqs: [(Vec<&[u8]>, Value); 3] = [
                    (
                        vec![b"GET", k.as_bytes()],
                        Value::Bulk(pattern(sizes[i], i as u8)),
                    ),
                    (vec![b"GET", small.as_bytes()], Value::Bulk(b"s".to_vec())),
                    (vec![b"PING"], Value::Simple(b"PONG".to_vec())),
                ];
                for (args, v) in reqs {
                    let id = big.submit(&args, &Route::Auto, Some(T)).expect("submit");
                    want.push((id, format!("round {round}, {i}: {:?}", args[0]), v));
                }
            }
            for (id, what, v) in want {
                match big.wait(id, Some(T)) {
                    Ok(Completion::Ok(got)) if got == v => {}
                    Ok(Completion::Ok(Value::Bulk(got))) => failures.push(format!(
                        "{what}: a bulk of {} bytes, not the one asked for",
                        got.len()
                    )),
                    other => failures.push(format!("{what}: {other:?}")),
                }
            }
        }
        for w in workers {
            failures.extend(w.join().expect("worker panicked"));
        }
        failures
    });
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    for k in &keys {
        ok(&big, &[b"DEL", k.as_bytes()]);
    }
}

#[test]
fn large_replies_between_small_ones_resp3() {
    large_replies_between_small_ones(Protocol::Resp3);
}

#[test]
fn large_replies_between_small_ones_resp2() {
    large_replies_between_small_ones(Protocol::Resp2);
}
