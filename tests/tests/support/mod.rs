//! Helpers shared by several test files. Cluster operations (`pubsub.rs`, `resilience.rs`)
//! live in `vshm_tests::cluster_ops` (the soak driver uses them too) and are re-exported
//! here; the standalone config of the per-request path tests (`fastpath.rs`,
//! `large_values.rs`, `reply_limit.rs`) and their load helpers are below.

#![allow(unused_imports, dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use vshm_client::embedded::{EmbeddedClient, EmbeddedCore, EmbeddedOpen};
use vshm_core::config::{Mode, Protocol};
use vshm_core::Config;
use vshm_protocol::msg::{ClientError, Route, Value};
use vshm_tests::RedisServer;

pub use vshm_tests::cluster_ops::{migrate_slot, node_id, wait_slot_owner, wait_slots_settled};

/// Generous bound for requests: the machine is shared and slow; only timeout tests use a
/// short one.
pub const T: Duration = Duration::from_secs(20);

/// A standalone backend at `addr` speaking `protocol`, with [`T`] as its request timeout.
pub fn standalone_cfg(addr: String, protocol: Protocol) -> Config {
    Config {
        addresses: vec![addr],
        mode: Mode::Standalone,
        protocol,
        request_timeout_ms: T.as_millis() as u32,
        ..Config::default()
    }
}

pub fn ok_value() -> Value {
    Value::Simple(b"OK".to_vec())
}

pub fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

pub fn call(c: &EmbeddedClient, args: &[&[u8]]) -> Result<Value, ClientError> {
    c.call_routed(args, &Route::Auto, Some(T))
}

/// `n` clients of one backend (same config => same pooled backend).
pub fn clients(core: &EmbeddedCore, cfg: &Config, n: usize) -> Vec<EmbeddedClient> {
    (0..n)
        .map(|_| core.open(cfg).expect("open a client"))
        .collect()
}

/// `SET k v` then `GET k` `n` times with distinct keys and values; every failure or wrong
/// value as a line of text.
pub fn set_get_load(c: &EmbeddedClient, prefix: &str, n: usize) -> Vec<String> {
    let mut failures = Vec::new();
    for i in 0..n {
        let k = format!("{prefix}:{i}");
        let v = format!("{prefix}-v{i}");
        match call(c, &[b"SET", k.as_bytes(), v.as_bytes()]) {
            Ok(r) if r == ok_value() => {}
            other => failures.push(format!("SET {k}: {other:?}")),
        }
        match call(c, &[b"GET", k.as_bytes()]) {
            Ok(r) if r == bulk(&v) => {}
            other => failures.push(format!("GET {k}: {other:?}, wanted {v:?}")),
        }
    }
    failures
}

pub fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} failures, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Ids of the server's client connections, except the `CLIENT LIST` caller's own.
pub fn connection_ids(server: &RedisServer) -> BTreeSet<u64> {
    server
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("id="))
                .and_then(|id| id.parse().ok())
        })
        .collect()
}

/// Run [`set_get_load`] (`n` rounds, keys `"{prefix}:{w}:..."`) on each of `others` in its own
/// thread while this thread calls `step(i)` for i = 0, 1, ...: at least `min` times, then
/// until a worker has finished or `max` calls were made. Returns the steps' results and every
/// worker failure.
pub fn while_others_load<R>(
    others: &[EmbeddedClient],
    prefix: &str,
    n: usize,
    (min, max): (usize, usize),
    mut step: impl FnMut(usize) -> R,
) -> (Vec<R>, Vec<String>) {
    use vshm_protocol::sync::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let workers: Vec<_> = others
            .iter()
            .enumerate()
            .map(|(w, c)| {
                let done = &done;
                s.spawn(move || {
                    let f = set_get_load(c, &format!("{prefix}:{w}"), n);
                    // Release: pairs with the Acquire load in the loop below.
                    done.store(true, Ordering::Release);
                    f
                })
            })
            .collect();
        let mut results = Vec::new();
        // Acquire: pairs with the workers' Release store above.
        while results.len() < min || (!done.load(Ordering::Acquire) && results.len() < max) {
            results.push(step(results.len()));
        }
        let failures: Vec<String> = workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker panicked"))
            .collect();
        (results, failures)
    })
}
